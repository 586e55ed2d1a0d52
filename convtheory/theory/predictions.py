"""The checkable predictions of THEORY.md §14, one entry each, and the one runner that gives each a verdict.

A :class:`Prediction` names what measures it (an experiment: a grid of sweep runs, ``specs(profile)``), what it is
compared against (a theory function, with paper and theorem), whether its constants are ``"exact"`` (a closed form
or an exact bound: a failure is a failure of the code or the theory) or ``"fitted"``/``"bound"`` (a fitted constant,
or an upper bound whose tightness is reported but never asserted), a tolerance, and ``judge(table, profile)``, which
turns the runs' tidy table into an :class:`Outcome`. :func:`evaluate` runs the specs through the sweep store (runs
already there, e.g. from ``convtheory figures``, are not recomputed) and judges them.

Verdicts: **holds**; **fails** (``detail`` says where); **inconclusive** (``detail`` says why, e.g. a fitted
constant, or a measurement that cannot separate the cases at this profile). Tightness is measured / predicted, worst
(the largest ratio) and median over the points compared; for identities it is the ratio nearest to a failure.

The entries live in ``experiments/predictions/`` (they need the experiments' run functions); :func:`registry`
collects them by number.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..types import InvalidArgumentError

__all__ = ["Prediction", "Outcome", "VERDICTS", "CONSTANTS", "registry", "evaluate", "evaluate_all", "outcome_table",
           "holds_within", "ratio_stats"]

VERDICTS = ("holds", "fails", "inconclusive")
#: "exact": closed form or exact bound (failure exits 1); "bound": an upper bound of unknown tightness;
#: "fitted": a constant or exponent fitted to the data, or a shape claim without a constant.
CONSTANTS = ("exact", "bound", "fitted")


@dataclass(frozen=True)
class Outcome:
    """What one prediction measured, what theory predicted, and the verdict."""

    verdict: str
    measured: str
    predicted: str
    worst_tightness: float = math.nan
    median_tightness: float = math.nan
    detail: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise InvalidArgumentError(f"verdict = {self.verdict!r} is unknown; valid: {', '.join(VERDICTS)}")


@dataclass(frozen=True)
class Prediction:
    """One numbered prediction of THEORY.md §14.

    ``number`` (1-28), ``statement`` (one line), ``experiment`` (the experiment or figure that measures it),
    ``theory`` (the function compared against, ``module:function``), ``source`` (paper, theorem, THEORY.md tag),
    ``constants`` (one of :data:`CONSTANTS`), ``tolerance`` (relative, as the judge uses it), ``specs(profile)``
    (the sweep runs; ``"test"`` is the smallest size), ``judge(table, profile) -> Outcome``.
    """

    number: int
    statement: str
    experiment: str
    theory: str
    source: str
    constants: str
    tolerance: float
    specs: Callable[[str], list] = field(repr=False, compare=False)
    judge: Callable[[pd.DataFrame, str], Outcome] = field(repr=False, compare=False)

    def __post_init__(self):
        if not (isinstance(self.number, int) and 1 <= self.number <= 28):
            raise InvalidArgumentError(f"prediction number = {self.number!r}; valid: an integer in [1, 28]")
        if self.constants not in CONSTANTS:
            raise InvalidArgumentError(f"constants = {self.constants!r}; valid: {', '.join(CONSTANTS)}")


def registry() -> dict[int, Prediction]:
    """Every ``PREDICTIONS`` list of the modules of ``experiments.predictions``, keyed and sorted by number."""
    pkg = importlib.import_module("experiments.predictions")
    found: dict[int, Prediction] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        for p in getattr(importlib.import_module(f"{pkg.__name__}.{info.name}"), "PREDICTIONS", ()):
            if p.number in found:
                raise RuntimeError(f"prediction {p.number} is defined twice (second in {info.name})")
            found[p.number] = p
    return dict(sorted(found.items()))


def evaluate(prediction: Prediction, profile: str = "quick", results: str | Path = "results", *,
             executor: str = "local", workers: int | None = None, address: str | None = None,
             progress: bool = True) -> tuple[Outcome, dict[str, Any]]:
    """Run (or reuse) the prediction's sweep under ``results/<profile>`` and judge it.

    Returns the outcome and a summary of the sweep (runs ran, cached, diverged, seconds). A run that raises is an
    error of the code, not a verdict: it raises ``RuntimeError`` naming the run.
    """
    from ..sweep import run_sweep

    t0 = time.perf_counter()
    specs = prediction.specs(profile)
    res = run_sweep(specs, Path(results) / profile, executor=executor, workers=workers, address=address,
                    progress=progress)
    if res.failed:
        name, err = next(iter(res.failed.items()))
        raise RuntimeError(f"prediction {prediction.number}: {len(res.failed)} run(s) failed; first {name}: "
                           f"{err.strip().splitlines()[-1]}")
    outcome = prediction.judge(res.table, profile)
    if not isinstance(outcome, Outcome):
        raise TypeError(f"prediction {prediction.number}: judge returned {type(outcome).__name__}, not Outcome")
    return outcome, {"runs_ran": len(res.ran), "runs_cached": len(res.cached), "runs_diverged": len(res.diverged),
                     "seconds": round(time.perf_counter() - t0, 2)}


def evaluate_all(numbers=None, profile: str = "quick", results: str | Path = "results", *, executor: str = "local",
                 workers: int | None = None, address: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Evaluate the numbered predictions (all when ``numbers`` is empty); one tidy row per prediction."""
    reg = registry()
    numbers = list(numbers or reg)
    bad = [n for n in numbers if n not in reg]
    if bad:
        raise InvalidArgumentError(f"prediction number(s) {bad} unknown; valid: {min(reg)}-{max(reg)}"
                                   if reg else f"prediction number(s) {bad} unknown; none are registered")
    rows = []
    for n in numbers:
        p = reg[n]
        if progress:
            print(f"[prediction {n}] {p.statement}", file=sys.stderr)
        out, sweep = evaluate(p, profile, results, executor=executor, workers=workers, address=address,
                              progress=progress)
        rows.append({"number": n, "statement": p.statement, "measured": out.measured, "predicted": out.predicted,
                     "verdict": out.verdict, "worst_tightness": out.worst_tightness,
                     "median_tightness": out.median_tightness, "constants": p.constants, "tolerance": p.tolerance,
                     "experiment": p.experiment, "theory": p.theory, "source": p.source, "detail": out.detail,
                     "profile": profile, **sweep})
        if progress:
            print(f"[prediction {n}] {out.verdict}: {out.detail}", file=sys.stderr)
    return pd.DataFrame(rows)


def outcome_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The printed table: number, statement, measured, predicted, verdict, tightness (worst / median)."""
    def tight(r):
        w, m = r["worst_tightness"], r["median_tightness"]
        return "" if (isinstance(w, float) and math.isnan(w)) else f"{w:.3g} / {m:.3g}"

    out = rows[["number", "statement", "measured", "predicted", "verdict"]].copy()
    out["tightness"] = rows.apply(tight, axis=1)
    return out


def ratio_stats(measured, predicted) -> tuple[float, float]:
    """Worst (largest) and median of measured / predicted over the pairs with a positive finite prediction."""
    import numpy as np

    m, p = np.asarray(measured, np.float64).ravel(), np.asarray(predicted, np.float64).ravel()
    ok = np.isfinite(m) & np.isfinite(p) & (p > 0)
    if not ok.any():
        return math.nan, math.nan
    r = m[ok] / p[ok]
    return float(r.max()), float(np.median(r))


def holds_within(measured, predicted, rtol: float) -> tuple[bool, float, int]:
    """Whether every measured value equals its prediction to relative tolerance ``rtol``; the largest relative
    deviation and the index where it occurs."""
    import numpy as np

    m, p = np.asarray(measured, np.float64).ravel(), np.asarray(predicted, np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(m - p) / np.maximum(np.abs(p), np.finfo(np.float64).tiny)
    rel = np.where(np.isfinite(rel), rel, np.inf)
    i = int(np.argmax(rel))
    return bool(rel[i] <= rtol), float(rel[i]), i
