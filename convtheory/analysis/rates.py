"""Rate fits: geometric (log-linear) and sublinear (log-log slope), per run and with confidence intervals over seeds.

A geometric rate is read from :math:`y_k \\approx C\\,r^{k}`: least squares of :math:`\\log y` on :math:`x` gives the
slope :math:`s=\\log r`, so :math:`r=e^{s}` (THEORY.md §14 item 1: the error of GD on a quadratic has slope
:math:`\\log q`). A sublinear rate is read from :math:`y_k \\approx C\\,k^{p}`: least squares of :math:`\\log y` on
:math:`\\log x` gives the exponent :math:`p` directly (e.g. :math:`p=-1` for the batch-size floor of §14 item 7).

**Window rule** (``window="auto"``, the default). Floating-point traces stop decaying at a round-off plateau, and
an exact solver can hit exactly zero; both would bend a log fit. ``"auto"`` sorts the points by ``x`` and keeps the
*leading run* of points whose value exceeds ``floor * max|y|`` (``floor=1e-13`` by default, i.e. a floor relative to
the largest value of the series): the first point at or below that level and every point after it are dropped.
For power fits ``"auto"`` first drops points with ``x <= 0`` (iteration 0 has no logarithm). ``window=None`` fits
every point and raises on any non-positive value; ``window=(lo, hi)`` fits the points with ``lo <= x <= hi`` and
raises on any non-positive value among them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..types import InvalidArgumentError, InvalidTypeError, check_choice, check_positive

__all__ = ["Fit", "SeedFits", "fit_geometric", "fit_power", "fit_over_seeds", "FIT_KINDS"]

FIT_KINDS = ("geometric", "power")


@dataclass(frozen=True)
class Fit:
    """One least-squares line through :math:`(u_i, \\log y_i)`, with ``u = x`` (geometric) or ``u = log x`` (power).

    ``kind``: ``"geometric"`` or ``"power"``; ``slope``, ``intercept``: the line :math:`\\log y = a + s u`;
    ``rate``: :math:`e^{s}` (per-unit-of-x factor) for geometric fits, the exponent :math:`s` for power fits;
    ``stderr``: the ordinary-least-squares standard error of ``slope`` (NaN with 2 points);
    ``ci_low``, ``ci_high``: the two-sided ``level`` confidence interval of ``rate`` (t with n-2 degrees of
    freedom on the slope, mapped through :math:`e^{s}` for geometric fits); ``slope_ci_low``, ``slope_ci_high``:
    the same interval on the slope; ``r2``: coefficient of determination (1 for a perfect line);
    ``n``: points used; ``x_first``, ``x_last``: the window actually fitted.
    """

    kind: str
    rate: float
    slope: float
    intercept: float
    stderr: float
    ci_low: float
    ci_high: float
    r2: float
    n: int
    slope_ci_low: float = math.nan
    slope_ci_high: float = math.nan
    level: float = 0.95
    x_first: float = math.nan
    x_last: float = math.nan

    def predict(self, x: Any) -> np.ndarray:
        """Fitted values :math:`e^{a + s u(x)}` at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        u = x if self.kind == "geometric" else np.log(x)
        return np.exp(self.intercept + self.slope * u)


@dataclass(frozen=True, eq=False)
class SeedFits:
    """Per-seed fits and their mean slope with a t-based confidence interval over seeds.

    ``per_seed``: one row per group (``by`` column, ``rate``, ``slope``, ``intercept``, ``stderr``, ``r2``, ``n``,
    ``ci_low``, ``ci_high``); ``slope``: mean of the per-seed slopes :math:`\\bar s`; ``stderr``:
    :math:`\\mathrm{sd}(s)/\\sqrt{m}` over the ``m`` seeds; ``slope_ci_low``, ``slope_ci_high``:
    :math:`\\bar s \\mp t_{m-1,(1+\\text{level})/2}\\,\\mathrm{stderr}` (NaN when ``m = 1``); ``rate``, ``ci_low``,
    ``ci_high``: the same mapped to a rate (:math:`e^{s}` for geometric fits, :math:`s` for power fits);
    ``intercept``: mean intercept; ``n``: number of seeds ``m``.
    """

    kind: str
    per_seed: pd.DataFrame
    rate: float
    slope: float
    intercept: float
    stderr: float
    ci_low: float
    ci_high: float
    slope_ci_low: float
    slope_ci_high: float
    n: int
    level: float = 0.95


# ------------------------------------------------------------------------------------------------ helpers
def _as_vector(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{name} must be a sequence of real numbers, got a string {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a sequence of real numbers, got {type(value).__name__}")
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _level(level: Any) -> float:
    lv = check_positive("level", level)
    if not lv < 1.0:
        raise InvalidArgumentError(f"level = {lv:g} is invalid; it must be in (0, 1)")
    return lv


def _window(x: np.ndarray, y: np.ndarray, kind: str, window: Any, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Apply the window rule of the module docstring; return the (x, y) to fit, sorted by x."""
    if x.size == 0:
        raise InvalidArgumentError("cannot fit a rate to an empty series (x and y have no points)")
    if x.shape != y.shape:
        raise InvalidArgumentError(f"x and y must have the same length, got {x.size} and {y.size}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError(f"x has a non-finite value at position {int(np.argmin(np.isfinite(x)))}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if isinstance(window, str):
        check_choice("window", window, ("auto",))
        if kind == "power":
            keep = x > 0
            x, y = x[keep], y[keep]
        if x.size and not np.all(np.isfinite(y)):
            bad = int(np.argmin(np.isfinite(y)))
            raise InvalidArgumentError(f"y is not finite at x = {x[bad]:g} ({y[bad]!r}); drop diverged points first")
        level = floor * (float(np.max(np.abs(y))) if y.size else 0.0)
        below = np.nonzero(~(y > level))[0]
        stop = int(below[0]) if below.size else y.size
        return x[:stop], y[:stop]
    if window is not None:
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"window = {window!r} is invalid; use None, 'auto' or a pair (lo, hi)")
        if not lo <= hi:
            raise InvalidArgumentError(f"window = ({lo:g}, {hi:g}) is invalid; it needs lo <= hi")
        keep = (x >= lo) & (x <= hi)
        x, y = x[keep], y[keep]
    if not np.all(np.isfinite(y)):
        bad = int(np.argmin(np.isfinite(y)))
        raise InvalidArgumentError(f"y is not finite at x = {x[bad]:g} ({y[bad]!r}); drop diverged points first")
    if np.any(y <= 0):
        bad = int(np.argmax(y <= 0))
        raise InvalidArgumentError(
            f"y = {y[bad]:g} at x = {x[bad]:g} is not positive; a log fit needs y > 0 (use window='auto' to stop "
            f"at a floor)")
    if kind == "power" and np.any(x <= 0):
        bad = int(np.argmax(x <= 0))
        raise InvalidArgumentError(
            f"x = {x[bad]:g} is not positive; a power (log-log) fit needs x > 0 (use window='auto' or start at 1)")
    return x, y


def _line(u: np.ndarray, v: np.ndarray, level: float) -> tuple[float, float, float, float, float, float]:
    """OLS of v on u: (slope, intercept, stderr, slope_ci_low, slope_ci_high, r2), centred for accuracy."""
    n = u.size
    um, vm = u.mean(), v.mean()
    du, dv = u - um, v - vm
    sxx = float(du @ du)
    if not sxx > 0:
        raise InvalidArgumentError(f"cannot fit a slope: all {n} points share the same x = {u[0]:g}")
    slope = float(du @ dv) / sxx
    intercept = float(vm - slope * um)
    resid = dv - slope * du
    sse, sst = float(resid @ resid), float(dv @ dv)
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    if n > 2:
        stderr = math.sqrt(sse / (n - 2) / sxx)
        half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * stderr
    else:
        stderr = half = math.nan
    return slope, intercept, stderr, slope - half, slope + half, r2


def _to_rate(kind: str, s: float) -> float:
    return math.exp(s) if kind == "geometric" else s


def _fit(kind: str, x: Any, y: Any, window: Any, floor: Any, level: Any) -> Fit:
    kind = check_choice("kind", kind, FIT_KINDS)
    floor = check_positive("floor", floor, allow_zero=True)
    level = _level(level)
    xs, ys = _window(_as_vector("x", x), _as_vector("y", y), kind, window, floor)
    if xs.size < 2:
        raise InvalidArgumentError(
            f"a {kind} fit needs at least 2 points in the window, got {xs.size} (window={window!r}, floor={floor:g})")
    u = xs if kind == "geometric" else np.log(xs)
    s, a, se, lo, hi, r2 = _line(u, np.log(ys), level)
    return Fit(kind=kind, rate=_to_rate(kind, s), slope=s, intercept=a, stderr=se, ci_low=_to_rate(kind, lo),
               ci_high=_to_rate(kind, hi), r2=r2, n=int(xs.size), slope_ci_low=lo, slope_ci_high=hi, level=level,
               x_first=float(xs[0]), x_last=float(xs[-1]))


# ---------------------------------------------------------------------------------------------------- fits
def fit_geometric(x: Sequence[float], y: Sequence[float], *, window: Any = "auto", floor: float = 1e-13,
                  level: float = 0.95) -> Fit:
    """Geometric rate :math:`r` of :math:`y_k \\approx C r^{x_k}` by least squares of :math:`\\log y` on :math:`x`.

    :math:`\\log y = a + s\\,x`, :math:`r = e^{s}`; the confidence interval is the OLS t-interval on :math:`s`
    (n-2 degrees of freedom) mapped through :math:`e^{s}`. Exact (to round-off) on a noise-free geometric
    sequence. ``window``/``floor``: see the module docstring. Reference: THEORY.md §14 item 1.

    >>> round(fit_geometric([0, 1, 2, 3], [1.0, 0.5, 0.25, 0.125]).rate, 12)
    0.5
    """
    return _fit("geometric", x, y, window, floor, level)


def fit_power(x: Sequence[float], y: Sequence[float], *, window: Any = "auto", floor: float = 1e-13,
              level: float = 0.95) -> Fit:
    """Sublinear rate: the exponent :math:`p` of :math:`y \\approx C x^{p}` by least squares of log y on log x.

    :math:`\\log y = a + p\\log x`; ``rate`` is :math:`p` itself (e.g. :math:`-1` for an :math:`O(1/k)` rate), and
    the confidence interval is the OLS t-interval on :math:`p`. ``window``/``floor``: see the module docstring
    (``"auto"`` drops ``x <= 0``). Reference: THEORY.md §14 items 7 and 24 (log-log slopes).

    >>> round(fit_power([1, 2, 4, 8], [1.0, 0.5, 0.25, 0.125]).rate, 12)
    -1.0
    """
    return _fit("power", x, y, window, floor, level)


def fit_over_seeds(df: pd.DataFrame, x: str = "iteration", y: str = "grad_norm", kind: str = "geometric",
                   by: str | None = "seed", *, window: Any = "auto", floor: float = 1e-13,
                   level: float = 0.95) -> SeedFits:
    """Fit each seed's series, then average the slopes with a t-based confidence interval over seeds.

    For seeds :math:`j=1..m` with fitted slopes :math:`s_j`: :math:`\\bar s=\\frac1m\\sum_j s_j`,
    :math:`\\mathrm{se}=\\mathrm{sd}(s)/\\sqrt m` (sd with :math:`m-1` in the denominator), interval
    :math:`\\bar s\\pm t_{m-1,(1+\\text{level})/2}\\,\\mathrm{se}` (scipy.stats.t; NaN when :math:`m=1`). Seeds are
    independent runs, so this interval accounts for run-to-run variation that a single regression ignores.
    ``by=None`` treats the whole frame as one series. Rows are sorted by ``x`` within each seed; ``window`` and
    ``floor`` apply per seed (module docstring).
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidTypeError(f"df must be a pandas DataFrame (a Trace), got {type(df).__name__}")
    if df.empty:
        raise InvalidArgumentError("cannot fit rates to an empty trace (0 rows)")
    cols = [x, y] + ([by] if by is not None else [])
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InvalidArgumentError(f"column(s) {missing} not in the trace; available: {list(df.columns)}")
    kind = check_choice("kind", kind, FIT_KINDS)
    level = _level(level)
    groups = [(None, df)] if by is None else list(df.groupby(by, sort=True))
    rows = []
    for key, g in groups:
        try:
            f = _fit(kind, g[x].to_numpy(np.float64), g[y].to_numpy(np.float64), window, floor, level)
        except InvalidArgumentError as err:
            raise InvalidArgumentError(f"{by} = {key!r}: {err}" if by is not None else str(err)) from None
        row = {} if by is None else {by: key}
        row.update(rate=f.rate, slope=f.slope, intercept=f.intercept, stderr=f.stderr, r2=f.r2, n=f.n,
                   ci_low=f.ci_low, ci_high=f.ci_high)
        rows.append(row)
    per_seed = pd.DataFrame(rows)
    slopes = per_seed["slope"].to_numpy()
    m = slopes.size
    mean = float(slopes.mean())
    if m > 1:
        se = float(slopes.std(ddof=1)) / math.sqrt(m)
        half = float(stats.t.ppf(0.5 + level / 2, m - 1)) * se
    else:
        se = half = math.nan
    return SeedFits(kind=kind, per_seed=per_seed, rate=_to_rate(kind, mean), slope=mean,
                    intercept=float(per_seed["intercept"].mean()), stderr=se, ci_low=_to_rate(kind, mean - half),
                    ci_high=_to_rate(kind, mean + half), slope_ci_low=mean - half, slope_ci_high=mean + half,
                    n=m, level=level)
