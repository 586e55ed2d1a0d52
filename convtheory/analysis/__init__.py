"""Checks: rate fits, trace-versus-bound verdicts, and guideline verification on grids.

``rates``: geometric (log-linear) and sublinear (log-log) fits with confidence intervals over seeds.
``check``: :func:`check` a trace against a bound (holds, first violation, tightness); :func:`check_rate` and
:func:`compare_slope` a fitted rate against a predicted one. ``guidelines``: :func:`guideline_grid` puts the region
theory admits next to the region that converges. Inputs are DataFrames, arrays and callables; this layer does not
import the solvers.
"""

from .check import Verdict, check, check_rate, compare_slope
from .guidelines import CLASSES, classify, conservativeness, converged_from, guideline_grid
from .rates import FIT_KINDS, Fit, SeedFits, fit_geometric, fit_over_seeds, fit_power

__all__ = [
    "Fit", "SeedFits", "FIT_KINDS", "fit_geometric", "fit_power", "fit_over_seeds",
    "Verdict", "check", "check_rate", "compare_slope",
    "CLASSES", "classify", "converged_from", "guideline_grid", "conservativeness",
]
