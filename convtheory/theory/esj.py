"""ESJ (evolution-strategies Jacobian): mean-squared error of the zeroth-order hypergradient on quadratics.

The ESJ estimate replaces J_N^T v (v = grad_y f at y_N) by (1/Q) sum_j u_j u_j^T a with a = J_N^T v, since on a
quadratic inner problem y_N(x) is affine and the finite difference (y_N(x + delta u) - y_N(x))/delta = J_N u holds
for every delta. Three direction laws (THEORY.md §1.3, §11, §14 item 25 [derived]):
``"gaussian"`` u ~ N(0, I_p); ``"sphere_scaled"`` u uniform on the unit sphere, times p (unbiased);
``"sphere"`` unit sphere without the factor p (the authors' meta-learning script; mean shrunk by 1/p).
p = dim x, Q = number of directions. Sow, Ji, Liang (arXiv 2110.07004).
"""

from __future__ import annotations

import math

from ..types import InvalidArgumentError
from . import _validate as v

__all__ = ["DIRECTIONS", "esj_mse", "esj_bias", "esj_total_mse", "esj_directions_for_mse", "esj_complexity",
           "esj_directions_slope"]

DIRECTIONS = ("gaussian", "sphere_scaled", "sphere")


def _check(a_norm, p, Q, directions):
    a_norm = v.nonnegative("a_norm", a_norm)
    p = v.count("p", p, minimum=1)
    Q = v.count("Q", Q, minimum=1)
    if directions not in DIRECTIONS:
        raise InvalidArgumentError(f"directions = {directions!r} is unknown; valid: {', '.join(DIRECTIONS)}")
    return a_norm, p, Q


def esj_mse(a_norm: float, p: int, Q: int, directions: str = "gaussian") -> float:
    """E||(1/Q) sum_j u_j u_j^T a - a||^2: the ES error against the ITD hypergradient.

    gaussian: (p + 1) ||a||^2 / Q; sphere_scaled: (p - 1) ||a||^2 / Q;
    sphere: (1 - 1/p)^2 ||a||^2 + (p - 1) ||a||^2 / (p^2 Q)  (squared bias plus variance).

    Reference: THEORY.md §1.3, §14 item 25 [derived]. Constants: exact.

    >>> esj_mse(1.0, 3, 2)
    2.0
    """
    a_norm, p, Q = _check(a_norm, p, Q, directions)
    a2 = a_norm**2
    if directions == "gaussian":
        return (p + 1) * a2 / Q
    if directions == "sphere_scaled":
        return (p - 1) * a2 / Q
    return (1.0 - 1.0 / p) ** 2 * a2 + (p - 1) * a2 / (p**2 * Q)


def esj_bias(a_norm: float, p: int, directions: str = "gaussian") -> float:
    """Norm of E[ESJ] - ITD hypergradient: 0 for gaussian and sphere_scaled, (1 - 1/p) ||a|| for sphere.

    Reference: THEORY.md §1.3, §14 item 25 [derived]. Constants: exact.
    """
    a_norm, p, _ = _check(a_norm, p, 1, directions)
    return (1.0 - 1.0 / p) * a_norm if directions == "sphere" else 0.0


def esj_total_mse(itd_error_norm: float, a_norm: float, p: int, Q: int, directions: str = "gaussian") -> float:
    """E||g_ESJ - grad Phi||^2 = ||e_ITD(N)||^2 + ES variance, for the unbiased direction laws.

    The cross term vanishes because the ES estimate is unbiased for the ITD hypergradient; ``itd_error_norm``
    is ||g_ITD - grad Phi|| (e.g. from :func:`convtheory.theory.bilevel.itd_error_quadratic`).

    Reference: THEORY.md §14 item 25 [derived]. Constants: exact.
    """
    if directions == "sphere":
        raise InvalidArgumentError("directions = 'sphere' is biased; the split needs 'gaussian' or 'sphere_scaled'")
    return v.nonnegative("itd_error_norm", itd_error_norm) ** 2 + esj_mse(a_norm, p, Q, directions)


def esj_directions_for_mse(a_norm: float, p: int, eps: float, directions: str = "gaussian") -> int:
    """Fewest directions Q with ES MSE <= eps: Q = ceil((p + 1) ||a||^2 / eps) (gaussian), (p - 1) for sphere_scaled.

    Reference: THEORY.md §14 item 25 [derived]. Constants: exact.
    """
    a_norm, p, _ = _check(a_norm, p, 1, directions)
    eps = v.positive("eps", eps)
    if directions == "sphere":
        raise InvalidArgumentError("directions = 'sphere' has a bias that more directions cannot remove")
    k = (p + 1) if directions == "gaussian" else (p - 1)
    return max(1, math.ceil(k * a_norm**2 / eps - 1e-12))


def esj_complexity(p: int, eps: float, c: float) -> float:
    """ESJ complexity shape c p eps^-2 log(1/eps) (as stated in the project brief, not found in the paper).

    Reference: Sow, Ji, Liang (arXiv 2110.07004); THEORY.md §11, §16 [not verified].
    Constants: shape only; c is unspecified.
    """
    p = v.count("p", p, minimum=1)
    eps = v.unit_open("eps", eps)
    return v.positive("c", c) * p * eps**-2 * math.log(1.0 / eps)


def esj_directions_slope(ps, directions: str = "gaussian") -> float:
    """Least-squares slope of log Q_eps(p) on log p over the dimensions ``ps``, Q_eps = k(p) ||a||^2 / eps.

    k(p) = p + 1 (gaussian) or p - 1 (sphere_scaled) is the per-direction variance factor of
    :func:`esj_mse`, so directions for a fixed relative MSE grow like k(p): the slope is below 1 at small p and
    tends to 1, the p-linear factor of the O(p eps^-2 log(1/eps)) complexity (:func:`esj_complexity`). eps and
    ||a|| cancel. Needs at least two distinct p (p >= 2 for sphere_scaled).

    Reference: THEORY.md §1.3, §14 item 25 [derived]; seed 000 for the complexity shape. Constants: exact.

    >>> round(esj_directions_slope([1, 3]), 9)  # log(4 / 2) / log 3
    0.630929754
    """
    import numpy as np

    if directions not in ("gaussian", "sphere_scaled"):
        raise InvalidArgumentError(f"directions = {directions!r}; valid: gaussian, sphere_scaled "
                                   "(the unscaled sphere has a bias that more directions cannot remove)")
    lo = 1 if directions == "gaussian" else 2
    ps = [v.count("p", p, minimum=lo) for p in ps]
    if len(set(ps)) < 2:
        raise InvalidArgumentError(f"ps = {ps}; the slope needs at least two distinct dimensions")
    x = np.log(np.asarray(ps, np.float64))
    k = np.asarray(ps, np.float64) + (1.0 if directions == "gaussian" else -1.0)
    return float(np.polyfit(x, np.log(k), 1)[0])
