"""Bilevel problem families (min_x f(x, y*(x)), y*(x) = argmin_y g(x, y)) with exact oracles and constants.

- :class:`QuadraticBilevel` (``bilevel_quadratic.py``): quadratic g and f, everything in closed form, plus the
  exact answers of ITD, AID fixed point, Neumann and ESJ on it (THEORY.md §1.3).
- :class:`HyperCleaning` (``hypercleaning.py``): data hyper-cleaning of a softmax classifier on digits; exact
  oracles by Newton and a dense implicit-function solve (THEORY.md §10).
- :class:`HyperRepresentation` (``hyperrep.py``): a shared embedding under per-task ridge heads; exact oracles by
  a batched closed-form solve (THEORY.md §10-11).

Each family is a frozen config whose ``build(seed)`` returns a :class:`~convtheory.problems.base.BilevelProblem`.
"""

from .bilevel_quadratic import (
    ESJMoments,
    QuadraticBilevel,
    aid_fp_exact,
    esj_moments,
    fixed_point_v_exact,
    inner_iterate_exact,
    itd_error_exact,
    itd_hypergradient_exact,
    neumann_exact,
)
from .hypercleaning import HyperCleaning
from .hyperrep import HyperRepresentation

__all__ = [
    "ESJMoments",
    "HyperCleaning",
    "HyperRepresentation",
    "QuadraticBilevel",
    "aid_fp_exact",
    "esj_moments",
    "fixed_point_v_exact",
    "inner_iterate_exact",
    "itd_error_exact",
    "itd_hypergradient_exact",
    "neumann_exact",
]
