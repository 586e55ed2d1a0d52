"""Guideline verification: on a grid of hyperparameters, the region theory allows next to the region that converges.

For each grid point (e.g. ``(alpha, N)`` or ``(beta, B)``) a run gives the empirical verdict and a theory function
gives the admissible one; the table classifies each point:

==================  =========================  ==============================================================
classification      admissible / converged     reading
==================  =========================  ==============================================================
``"both"``          yes / yes                  the guideline is confirmed here
``"theory only"``   yes / no                   theory admits a run that fails: the theory (or its constants) is wrong
``"practice only"`` no / yes                   converges beyond what theory admits: the guideline is conservative
``"neither"``       no / no                    theory correctly rejects it
==================  =========================  ==============================================================

Reference: THEORY.md §14 (items 4-6: the step-size thresholds to verify) and DESIGN.md use 3.
"""

from __future__ import annotations

import itertools
import math
from numbers import Real
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..types import InvalidArgumentError, InvalidTypeError, check_int, check_positive

__all__ = ["CLASSES", "classify", "converged_from", "guideline_grid", "conservativeness"]

#: The four classifications, in (admissible, converged) order TT, TF, FT, FF.
CLASSES = ("both", "theory only", "practice only", "neither")

_RESULT_COLUMNS = ("admissible", "converged", "classification", "step_max", "final_ratio", "diverged")


def classify(admissible: bool, converged: bool) -> str:
    """The classification of one grid point: "both", "theory only", "practice only" or "neither" (table above)."""
    return CLASSES[(0 if admissible else 2) + (0 if converged else 1)]


def converged_from(result: Any, *, value: str = "grad_norm", x: str = "iteration",
                   tol: float = 1e-3) -> tuple[bool, float, Any]:
    """Empirical verdict of one run: ``(converged, final_ratio, diverged)``.

    ``result`` is a Trace (DataFrame), a bool, or a number. For a Trace, per seed (``seed`` column, if any) with
    rows sorted by ``x``: :math:`\\rho = v_{\\text{last}}/v_{\\text{first}}` of column ``value`` (:math:`0/0 := 0`);
    the run converged iff no row has ``diverged`` true, every value is finite, and :math:`\\rho\\le` ``tol`` for
    every seed; ``final_ratio`` is the largest :math:`\\rho` over seeds (inf for a diverged seed). A bool is taken
    as the verdict itself (``final_ratio`` NaN, ``diverged`` NA). A real number is read as :math:`\\rho` itself
    (converged iff finite and :math:`\\le` ``tol``; diverged iff not finite).
    """
    if isinstance(result, (bool, np.bool_)):
        return bool(result), math.nan, pd.NA
    if isinstance(result, Real):
        r = float(result)
        return bool(math.isfinite(r) and r <= tol), r, not math.isfinite(r)
    if not isinstance(result, pd.DataFrame):
        raise InvalidTypeError(f"run_fn must return a Trace (DataFrame), a bool or a number, got "
                               f"{type(result).__name__}")
    if result.empty:
        raise InvalidArgumentError("run_fn returned an empty trace (0 rows)")
    missing = [c for c in (x, value) if c not in result.columns]
    if missing:
        raise InvalidArgumentError(f"column(s) {missing} not in the trace; available: {list(result.columns)}")
    groups = result.groupby("seed", sort=True) if "seed" in result.columns else [(None, result)]
    worst, any_div = 0.0, False
    for _, g in groups:
        g = g.sort_values(x, kind="stable")
        v = g[value].to_numpy(np.float64)
        div = "diverged" in g.columns and bool(g["diverged"].astype("boolean").fillna(False).any())
        if div or not np.all(np.isfinite(v)):
            any_div, rho = True, math.inf
        elif v[0] == 0:
            rho = 0.0 if v[-1] == 0 else math.inf
        else:
            rho = abs(float(v[-1]) / float(v[0]))
        worst = max(worst, rho)
    return bool(not any_div and worst <= tol), worst, any_div


def _admissible(out: Any, point: Mapping[str, Any], step: str) -> tuple[bool, float]:
    """Theory verdict (admissible, step_max): a bool, a threshold on ``step``, or an object with ``<step>_max``."""
    if isinstance(out, (bool, np.bool_)):
        return bool(out), math.nan
    if not isinstance(out, Real):
        attr = f"{step}_max"
        if not hasattr(out, attr):
            raise InvalidTypeError(f"admissible_fn must return a bool, a threshold on {step!r}, or an object with "
                                   f"{attr!r} (a Guideline), got {type(out).__name__}")
        out = getattr(out, attr)
        if out is None:
            raise InvalidArgumentError(f"admissible_fn returned a guideline with {attr} = None at {dict(point)}; "
                                       f"theory gives no threshold on {step!r} there")
    t = float(out)
    if math.isnan(t):
        raise InvalidArgumentError(f"admissible_fn returned a NaN threshold at {dict(point)}")
    return bool(float(point[step]) <= t), t


def _grid_points(grid: Any) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(grid, Mapping):
        raise InvalidTypeError(f"grid must be a dict of parameter name -> list of values, got {type(grid).__name__}")
    if not grid:
        raise InvalidArgumentError("grid is empty; give at least one parameter with at least one value")
    keys = list(grid)
    for k in keys:
        if not isinstance(k, str):
            raise InvalidTypeError(f"grid keys must be parameter names (str), got {k!r}")
        if k in _RESULT_COLUMNS:
            raise InvalidArgumentError(f"grid parameter {k!r} clashes with a result column; rename it")
        vals = grid[k]
        if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
            raise InvalidTypeError(f"grid[{k!r}] must be a list of values, got {vals!r}")
        if len(list(vals)) == 0:
            raise InvalidArgumentError(f"grid[{k!r}] is empty; give at least one value")
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]
    return keys, points


def guideline_grid(run_fn: Callable[..., Any], admissible_fn: Callable[..., Any], grid: Mapping[str, list], *,
                   step: str | None = None, value: str = "grad_norm", x: str = "iteration", tol: float = 1e-3,
                   disable: bool | None = None, progress_min: int = 50) -> pd.DataFrame:
    """Run ``run_fn(**point)`` and ``admissible_fn(**point)`` on every grid point and classify each point.

    ``grid``: parameter name -> values; points are the Cartesian product (first key varies slowest).
    ``run_fn(**point)``: a Trace, a bool or a number, read by :func:`converged_from` (``value``, ``x``, ``tol``:
    converged iff no divergence and the final ``value`` is at most ``tol`` times the initial one).
    ``admissible_fn(**point)``: a bool, or a threshold :math:`t` on the ``step`` parameter (admissible iff
    ``point[step]`` :math:`\\le t`), or an object with a ``<step>_max`` attribute such as
    :class:`convtheory.theory.Guideline`; ``step`` defaults to the first grid key.
    Returns a tidy table: the grid parameters, ``admissible``, ``converged``, ``classification`` (one of
    :data:`CLASSES`), ``step_max`` (the threshold, NaN for a bool), ``final_ratio`` and ``diverged``; its
    ``attrs`` hold ``grid`` (the parameter names), ``step`` and ``tol`` for :func:`conservativeness`.
    A progress bar (tqdm) shows when the grid has at least ``progress_min`` points, unless ``disable`` says
    otherwise (``disable=True`` never shows it, ``False`` always does).
    """
    if not callable(run_fn) or not callable(admissible_fn):
        raise InvalidTypeError("run_fn and admissible_fn must be callables taking the grid parameters as keywords")
    keys, points = _grid_points(grid)
    step = keys[0] if step is None else step
    if step not in keys:
        raise InvalidArgumentError(f"step = {step!r} is not a grid parameter; valid: {', '.join(keys)}")
    tol = check_positive("tol", tol, allow_zero=True)
    progress_min = check_int("progress_min", progress_min, minimum=0)
    hide = len(points) < progress_min if disable is None else bool(disable)
    rows = []
    for point in tqdm(points, desc="guideline grid", disable=hide):
        adm, t = _admissible(admissible_fn(**point), point, step)
        conv, ratio, div = converged_from(run_fn(**point), value=value, x=x, tol=tol)
        rows.append({**point, "admissible": adm, "converged": conv, "classification": classify(adm, conv),
                     "step_max": t, "final_ratio": ratio, "diverged": div})
    table = pd.DataFrame(rows, columns=[*keys, *_RESULT_COLUMNS])
    table["diverged"] = table["diverged"].astype("boolean")
    table.attrs.update(grid=list(keys), step=step, tol=tol)
    return table


def conservativeness(table: pd.DataFrame, step: str | None = None, by: list[str] | str | None = None) -> pd.DataFrame:
    """How far the converging region reaches beyond the admissible one, per group (e.g. per N).

    For each group of ``by`` (default: the grid parameters other than ``step``): ``largest_admissible`` =
    :math:`\\max\\{s: \\text{admissible}\\}` and ``largest_converged`` = :math:`\\max\\{s: \\text{converged}\\}` over
    the grid values :math:`s` of ``step`` (NaN when none), ``ratio`` = largest_converged / largest_admissible
    (> 1: the guideline is conservative; < 1: theory admits steps that fail), ``step_max`` (the smallest
    theory threshold in the group, NaN if admissible_fn returned bools), ``ratio_to_step_max`` =
    largest_converged / step_max, and the counts ``n_theory_only``, ``n_practice_only``, ``n_points``.
    ``step`` defaults to the one recorded by :func:`guideline_grid` in ``table.attrs``.
    """
    if not isinstance(table, pd.DataFrame):
        raise InvalidTypeError(f"table must be a DataFrame from guideline_grid, got {type(table).__name__}")
    if table.empty:
        raise InvalidArgumentError("cannot summarise an empty table (0 rows)")
    step = table.attrs.get("step") if step is None else step
    if step is None:
        raise InvalidArgumentError("step is not recorded in table.attrs; pass step= (the step-size column)")
    if by is None:
        grid = table.attrs.get("grid") or [c for c in table.columns if c not in _RESULT_COLUMNS]
        by = [k for k in grid if k != step]
    elif isinstance(by, str):
        by = [by]
    missing = [c for c in (step, *by, "admissible", "converged", "classification") if c not in table.columns]
    if missing:
        raise InvalidArgumentError(f"column(s) {missing} not in the table; available: {list(table.columns)}")
    if step in by:
        raise InvalidArgumentError(f"step {step!r} cannot also be a grouping column (by = {by})")

    def summary(g: pd.DataFrame) -> dict[str, Any]:
        s = g[step].astype(np.float64)
        adm = s[g["admissible"].astype(bool)]
        conv = s[g["converged"].astype(bool)]
        la = float(adm.max()) if adm.size else math.nan
        lc = float(conv.max()) if conv.size else math.nan
        tmax = float(g["step_max"].min()) if "step_max" in g.columns and g["step_max"].notna().any() else math.nan
        cls = g["classification"]
        return {"largest_admissible": la, "largest_converged": lc,
                "ratio": lc / la if la > 0 else math.nan, "step_max": tmax,
                "ratio_to_step_max": lc / tmax if tmax > 0 else math.nan,
                "n_theory_only": int((cls == "theory only").sum()),
                "n_practice_only": int((cls == "practice only").sum()), "n_points": int(len(g))}

    if not by:
        return pd.DataFrame([summary(table)])
    rows = []
    for key, g in table.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **summary(g)})
    return pd.DataFrame(rows)
