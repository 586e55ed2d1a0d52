"""Hold a measured trace against a theoretical bound, or a fitted rate against a predicted one, and give a verdict.

A :class:`Verdict` says whether the bound holds, the first iteration where it fails, and how tight it is: the
tightness of a row is measured / bound (1 means the bound is attained, small means loose). The tolerance is
relative: row ``i`` violates the bound when :math:`m_i > b_i(1+\\text{rtol}) + \\text{atol}`, so bounds that are
exact in float64 ([derived] statements of THEORY.md) can be checked with ``rtol`` near machine precision.
A diverged row (``diverged`` column true, or a non-finite measured value) is always a violation: a run that
diverges does not satisfy a convergence bound (DESIGN.md: a diverging run is recorded, not dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Union

import numpy as np
import pandas as pd

from ..types import InvalidArgumentError, InvalidTypeError, check_choice, check_positive

__all__ = ["Verdict", "check", "check_rate", "compare_slope"]

#: What ``check`` accepts as a bound: a vectorized callable of the x values, a column name, an array with one
#: entry per row, or a constant (a number, or anything with ``__float__`` such as :class:`convtheory.theory.Bound`).
BoundLike = Union[Callable[[np.ndarray], Any], str, np.ndarray, float]


@dataclass(frozen=True)
class Verdict:
    """The result of a check.

    ``holds``: whether every row satisfies the bound (and nothing diverged); ``first_violation``: the smallest x
    (iteration) at which a row violates the bound or diverges, None if it holds; ``worst_tightness``,
    ``median_tightness``: max and median of measured / bound over the finite, non-diverged rows (NaN if none);
    ``n``: rows (or points) checked; ``detail``: a sentence saying what happened.
    """

    holds: bool
    first_violation: float | int | None
    worst_tightness: float
    median_tightness: float
    n: int
    detail: str

    def __bool__(self) -> bool:
        return bool(self.holds)


def _x_value(v: Any) -> float | int:
    v = float(v)
    return int(v) if v.is_integer() else v


def _bound_values(bound: Any, trace: pd.DataFrame, xs: np.ndarray) -> np.ndarray:
    """The bound evaluated at each row, as float64 of shape (n,)."""
    n = xs.size
    if isinstance(bound, str):
        if bound not in trace.columns:
            raise InvalidArgumentError(f"bound column {bound!r} not in the trace; available: {list(trace.columns)}")
        vals = trace[bound].to_numpy(np.float64)
    elif callable(bound):
        vals = bound(xs)
    elif isinstance(bound, Real) or (hasattr(bound, "__float__") and not hasattr(bound, "__len__")):
        vals = float(bound)
    else:
        vals = bound
    try:
        arr = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"bound must give real numbers, got {type(vals).__name__}")
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise InvalidArgumentError(f"bound has shape {arr.shape}; it must have one value per row, shape ({n},)")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        i = int(np.argmax(np.isnan(arr) | (arr < 0)))
        raise InvalidArgumentError(f"bound = {arr[i]!r} at x = {xs[i]:g} is invalid; a bound must be in [0, inf]")
    return arr


def check(trace: pd.DataFrame, bound: BoundLike, value: str = "grad_norm", x: str = "iteration", rtol: float = 1e-9,
          *, atol: float = 0.0) -> Verdict:
    """Check that ``trace[value] <= bound(trace[x])`` on every row, and report the first failure and the tightness.

    Row ``i`` with measured :math:`m_i` and bound :math:`b_i` violates when :math:`m_i > b_i(1+\\text{rtol}) +
    \\text{atol}`, or when the row diverged (``diverged`` column true) or :math:`m_i` is not finite. Tightness
    :math:`t_i = m_i / b_i` (:math:`0/0 := 1`, the bound attained; :math:`m/\\infty := 0`); the verdict reports
    :math:`\\max_i t_i` and the median over finite, non-diverged rows. With several seeds in the trace every row
    is checked and ``first_violation`` is the smallest x among failing rows. ``bound``: a vectorized callable of
    the x values, a column name, an array (one value per row) or a constant.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"iteration": [0, 1, 2], "grad_norm": [1.0, 0.5, 0.3]})
    >>> v = check(t, lambda k: 0.5 ** k)
    >>> v.holds, v.first_violation, round(v.worst_tightness, 12)
    (False, 2, 1.2)
    """
    if not isinstance(trace, pd.DataFrame):
        raise InvalidTypeError(f"trace must be a pandas DataFrame, got {type(trace).__name__}")
    if trace.empty:
        raise InvalidArgumentError("cannot check an empty trace (0 rows)")
    missing = [c for c in (x, value) if c not in trace.columns]
    if missing:
        raise InvalidArgumentError(f"column(s) {missing} not in the trace; available: {list(trace.columns)}")
    rtol = check_positive("rtol", rtol, allow_zero=True)
    atol = check_positive("atol", atol, allow_zero=True)
    xs = trace[x].to_numpy(np.float64)
    if not np.all(np.isfinite(xs)):
        raise InvalidArgumentError(f"column {x!r} has a non-finite value; x must be finite")
    meas = trace[value].to_numpy(np.float64)
    b = _bound_values(bound, trace, xs)
    n = xs.size

    diverged = ~np.isfinite(meas)
    if "diverged" in trace.columns:
        diverged |= trace["diverged"].astype("boolean").fillna(False).to_numpy(bool)
    ok = ~diverged
    with np.errstate(invalid="ignore", over="ignore"):
        exceeds = ok & (meas > b * (1.0 + rtol) + atol)
        tight = np.where(b > 0, meas / np.where(b > 0, b, 1.0), np.where(meas == 0, 1.0, np.inf))
        tight = np.where(np.isinf(b), 0.0, tight)
    bad = exceeds | diverged
    tt = tight[ok]
    worst = float(np.max(tt)) if tt.size else math.nan
    median = float(np.median(tt)) if tt.size else math.nan
    seed = trace["seed"].to_numpy() if "seed" in trace.columns else None

    def where(mask: np.ndarray) -> tuple[float | int, str]:
        idx = np.nonzero(mask)[0]
        i = int(idx[np.argmin(xs[idx])])
        at = f"{x} = {_x_value(xs[i])}" + (f" (seed {seed[i]})" if seed is not None else "")
        return _x_value(xs[i]), at

    if not bad.any():
        detail = (f"{value} <= bound on all {n} rows (rtol={rtol:g}); tightness worst {worst:.4g}, "
                  f"median {median:.4g}")
        return Verdict(True, None, worst, median, n, detail)
    first, _ = where(bad)
    parts = []
    if diverged.any():
        _, at = where(diverged)
        parts.append(f"diverged at {at} ({int(diverged.sum())} row(s) diverged or not finite)")
    if exceeds.any():
        _, at = where(exceeds)
        i = np.nonzero(exceeds)[0]
        j = int(i[np.argmin(xs[i])])
        parts.append(f"{value} exceeds the bound first at {at}: {meas[j]:.6g} > {b[j]:.6g} "
                     f"({int(exceeds.sum())} of {n} rows violate, rtol={rtol:g})")
    return Verdict(False, first, worst, median, n, "; ".join(parts))


# ------------------------------------------------------------------------------------------------ rates
def _predicted(name: str, predicted: Any, attr: str) -> float:
    if not isinstance(predicted, Real) and hasattr(predicted, attr):
        predicted = getattr(predicted, attr)
        if predicted is None:
            raise InvalidArgumentError(f"{name} has no {attr} (the theorem gives no {attr} here)")
    try:
        v = float(predicted)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a real number, got {type(predicted).__name__}")
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} = {v!r} is invalid; it must be finite")
    return v


def _compare(what: str, measured: float, lo: float, hi: float, predicted: float, tol: float, side: str,
             n: int) -> Verdict:
    """Two-sided: prediction inside [lo, hi] or |measured - predicted| <= tol. Upper: lo <= predicted + tol."""
    if not math.isfinite(measured):
        raise InvalidArgumentError(f"fitted {what} = {measured!r} is not finite")
    has_ci = math.isfinite(lo) and math.isfinite(hi)
    ci = f"[{lo:.6g}, {hi:.6g}]" if has_ci else "(no interval)"
    if side == "two-sided":
        holds = (has_ci and lo <= predicted <= hi) or abs(measured - predicted) <= tol
        how = f"predicted {predicted:.6g} vs fitted {measured:.6g}, CI {ci}, tol {tol:g}"
    else:
        low_end = lo if has_ci else measured
        holds = low_end <= predicted + tol
        how = (f"fitted {measured:.6g} (CI {ci}) {'is not' if holds else 'is'} significantly above the predicted "
               f"bound {predicted:.6g} (tol {tol:g})")
    tight = measured / predicted if predicted != 0 else (1.0 if measured == 0 else math.inf)
    detail = f"{what} {'agrees with' if holds else 'disagrees with'} theory: {how}"
    return Verdict(bool(holds), None, tight, tight, int(n), detail)


def check_rate(fit: Any, predicted_rate: Any, tol: float = 0.0, *, side: str = "two-sided") -> Verdict:
    """Whether a fitted rate matches a predicted one: inside the fit's confidence interval, or within ``tol``.

    ``fit``: a :class:`~convtheory.analysis.rates.Fit` or :class:`~convtheory.analysis.rates.SeedFits` (anything
    with ``rate``, ``ci_low``, ``ci_high``, ``n``); ``predicted_rate``: a number or an object with a ``rate``
    (a :class:`convtheory.theory.Bound`). ``side="two-sided"``: holds iff
    :math:`r_{pred}\\in[\\text{ci\\_low},\\text{ci\\_high}]` or :math:`|r_{fit}-r_{pred}|\\le\\text{tol}` (use
    ``tol`` for noise-free fits, whose interval has zero width). ``side="upper"`` (the theorem is an upper bound
    on the rate): holds iff :math:`\\text{ci\\_low}\\le r_{pred}+\\text{tol}`, i.e. the run is not significantly
    slower than predicted. Tightness is :math:`r_{fit}/r_{pred}`.
    """
    tol = check_positive("tol", tol, allow_zero=True)
    side = check_choice("side", side, ("two-sided", "upper"))
    pred = _predicted("predicted_rate", predicted_rate, "rate")
    return _compare("rate", float(fit.rate), float(fit.ci_low), float(fit.ci_high), pred, tol, side, fit.n)


def compare_slope(fit: Any, predicted_slope: Any, tol: float = 0.0, *, side: str = "two-sided") -> Verdict:
    """Whether a fitted slope (log-log exponent of a sublinear rate, or log of a geometric rate) matches theory.

    Same rule as :func:`check_rate`, on the slope :math:`s` and its interval ``slope_ci_low``,
    ``slope_ci_high``: two-sided holds iff :math:`s_{pred}` is in the interval or :math:`|s-s_{pred}|\\le`
    ``tol``; ``side="upper"`` holds iff ``slope_ci_low`` :math:`\\le s_{pred}+\\text{tol}` (a decay at least as
    fast as predicted, e.g. the upper-bound :math:`\\kappa`-exponents of THEORY.md §14 item 24). Tightness is
    :math:`s/s_{pred}`.
    """
    tol = check_positive("tol", tol, allow_zero=True)
    side = check_choice("side", side, ("two-sided", "upper"))
    pred = _predicted("predicted_slope", predicted_slope, "slope")
    return _compare("slope", float(fit.slope), float(fit.slope_ci_low), float(fit.slope_ci_high), pred, tol, side,
                    fit.n)
