"""Shared helpers of the benchmark scripts (engines.py, memory.py), after ../shared/bench/peer_maml.py.

- :func:`environment`: what a number depends on (versions, threads, CPU model, load average, date, commit).
- :func:`time_interleaved` / :func:`summarize`: warm-up, then rounds that call every function once in a freshly
  shuffled order (slow drift of a shared machine hits all alike), a full GC before each round (untimed); medians.
- :func:`rel_err`: max|a - b| / max|b| over a tensor or a dict/list of tensors (the correctness-gate measure).
- :func:`md_table`, :func:`write_json`, :func:`write_text`: output.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import math
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import time
from typing import Callable, Iterable

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def _dist_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def optional_packages(names: Iterable[str] = ("torchopt", "higher")) -> dict[str, str]:
    """{name: version, or "<name> not installed"} without importing anything heavy."""
    out = {}
    for name in names:
        if importlib.util.find_spec(name) is None:
            out[name] = f"{name} not installed"
        else:
            out[name] = _dist_version(name) or "installed (version unknown)"
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _git_commit() -> str | None:
    """HEAD of the checkout (read-only query); None outside git. The tree may hold uncommitted edits."""
    with contextlib.suppress(Exception):
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def environment() -> dict:
    """The environment record every result file carries."""
    load = None
    with contextlib.suppress(OSError):
        load = [round(v, 2) for v in os.getloadavg()]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": _dist_version("numpy"),
        "convtheory": _dist_version("convtheory"),
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1_5_15": load,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "optional": optional_packages(),
    }


# ------------------------------------------------------------------------------------------------ timing
def time_interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int,
                     seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed calls each, then ``reps`` rounds; each round calls
    every function once in a freshly shuffled order, after an untimed full garbage collection."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order, rng = list(fns), random.Random(seed)
    for _ in range(reps):
        gc.collect()
        rng.shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def summarize(samples: list[float]) -> dict:
    """Median and quartiles in ms; drift = median of the later half over the earlier half of the rounds."""
    if len(samples) >= 2:
        q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    else:
        q1 = q3 = samples[0]
    half = len(samples) // 2
    drift = (statistics.median(samples[half:]) / statistics.median(samples[:half])) if half else 1.0
    return {"median_ms": 1e3 * statistics.median(samples), "p25_ms": 1e3 * q1, "p75_ms": 1e3 * q3,
            "reps": len(samples), "drift": drift}


def first_call(fn: Callable[[], object]) -> tuple[object, float]:
    """(result, seconds) of one call: for a compiled function, the compile time plus one run."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- correctness
def _leaves(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree) for t in _leaves(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _leaves(v)]
    raise TypeError(f"not a tensor tree: {type(tree).__name__}")


def rel_err(a, b) -> float:
    """max|a - b| / max|b| over all leaves (float64 arithmetic); inf on a shape mismatch or non-finite values."""
    la, lb = _leaves(a), _leaves(b)
    if len(la) != len(lb) or any(x.shape != y.shape for x, y in zip(la, lb)):
        return math.inf
    num = max(float((x.detach().double() - y.detach().double()).abs().max()) for x, y in zip(la, lb))
    den = max(float(y.detach().double().abs().max()) for y in lb)
    if not math.isfinite(num):
        return math.inf
    return num / den if den > 0 else num


# ------------------------------------------------------------------------------------------------ output
def fmt(v, spec: str = ".2f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def md_environment(env: dict) -> str:
    opt = ", ".join(f"{k}: {v}" for k, v in env.get("optional", {}).items())
    return (f"Environment: {env['date_utc']}, {env['cpu']} ({env['logical_cpus']} logical CPUs), load average "
            f"{env['load_average_1_5_15']}, Python {env['python']}, torch {env['torch']}, "
            f"{env['torch_threads']} torch thread(s), commit {env['git_commit']}; {opt}.")


def write_json(path: pathlib.Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")
    tmp.replace(path)


def write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
