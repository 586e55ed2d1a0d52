"""Run functions for the sweep tests (importable by spawned workers)."""

import time

import numpy as np
import pandas as pd

version = 1


def gd_run(params, seed):
    """Gradient descent on f(w) = L w^2 / 2 from a seeded start; optional sleep to widen kill windows."""
    time.sleep(params.get("sleep", 0.0))
    rng = np.random.default_rng(seed)
    w = w0 = rng.normal()
    L, alpha = params["L"], params["alpha"]
    rows = []
    for k in range(params.get("iterations", 20)):
        rows.append({"iteration": k, "grad_norm": abs(L * w), "diverged": not np.isfinite(w) or abs(w) > 100 * abs(w0)})
        w = w - alpha * L * w
    return pd.DataFrame(rows)


def failing_run(params, seed):
    raise RuntimeError(f"boom at alpha={params['alpha']}")


def die_once_run(params, seed):
    """Kills its worker process the first time it runs (a marker file remembers), then computes normally."""
    import os
    from pathlib import Path

    marker = Path(params["marker"])
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return gd_run(params, seed)
