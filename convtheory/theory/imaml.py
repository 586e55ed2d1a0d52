"""iMAML: conditioning of the implicit system, CG accuracy, and the unrolled-versus-implicit Jacobian rate.

Inner problem G(phi; theta) = L_hat(phi) + lambda/2 ||phi - theta||^2 with Hessian H = nabla^2 L_hat(phi*) whose
eigenvalues lie in [h_min, h_max] (h_min may be negative as long as lambda + h_min > 0). The meta-gradient solves
(I + H/lambda) g = grad L_test(phi*) (Rajeswaran, Finn, Kakade, Levine, NeurIPS 2019); the formulas below are
THEORY.md §1.4, §8 and §14 items 15-16 [derived]. The paper's O~(sqrt(kappa) log(1/eps)) statement is [uncertain].
"""

from __future__ import annotations

import numpy as np

from ..types import InvalidArgumentError
from . import _validate as v
from .bilevel import cg_error_bound, cg_steps
from .bound import Bound

__all__ = [
    "condition_number", "implicit_jacobian", "cg_error_bound_imaml", "cg_steps_imaml", "unrolled_rate",
    "unrolled_jacobian_error", "unrolled_jacobian", "unrolled_jacobian_error_bound",
]


def _spectrum(lam, h_min, h_max) -> tuple[float, float, float]:
    lam = v.positive("lam", lam)
    h_min = v.real("h_min", h_min)
    h_max = v.real("h_max", h_max)
    if h_min > h_max:
        raise InvalidArgumentError(f"h_min = {h_min:g} is invalid; it must satisfy h_min <= h_max = {h_max:g}")
    if lam + h_min <= 0:
        raise InvalidArgumentError(
            f"lam + h_min = {lam + h_min:g} is invalid; it must be > 0 for the inner problem to be strongly convex"
        )
    return lam, h_min, h_max


def condition_number(lam: float, h_min: float, h_max: float) -> float:
    """Condition number of the iMAML CG system I + H/lambda: kappa_lambda = (lambda + h_max) / (lambda + h_min).

    Reference: THEORY.md §1.4, §14 item 16 [derived]. Constants: exact.

    >>> condition_number(2.0, 0.0, 8.0)
    5.0
    """
    lam, h_min, h_max = _spectrum(lam, h_min, h_max)
    return (lam + h_max) / (lam + h_min)


def implicit_jacobian(H, lam: float) -> np.ndarray:
    """Jacobian of the regularised inner solution: d phi*/d theta = lambda (H + lambda I)^{-1} = (I + H/lambda)^{-1}.

    Reference: THEORY.md §1.4, §14 item 15 [derived]. Constants: exact.
    """
    lam = v.positive("lam", lam)
    H = v.sym_matrix("H", H)
    h_min = np.linalg.eigvalsh(H)[0]
    if lam + h_min <= 0:
        raise InvalidArgumentError(f"lam + lambda_min(H) = {lam + h_min:g} is invalid; it must be > 0")
    return lam * np.linalg.inv(H + lam * np.eye(H.shape[0]))


def cg_error_bound_imaml(lam: float, h_min: float, h_max: float, Q: int, g_star_norm: float = 1.0) -> Bound:
    """CG accuracy for the iMAML meta-gradient: ||g_Q - g*|| <= 2 sqrt(kappa_lambda) r_lambda^Q ||g*||.

    r_lambda = (sqrt(kappa_lambda) - 1)/(sqrt(kappa_lambda) + 1), CG from g_0 = 0 on (I + H/lambda) g = grad L_test.

    Reference: THEORY.md §14 item 16 [derived]; Rajeswaran et al. (NeurIPS 2019) Theorem 1 for the
    sqrt(kappa) shape [uncertain]. Constants: exact (textbook CG bound).
    """
    return cg_error_bound(condition_number(lam, h_min, h_max), Q, g_star_norm, norm="euclidean")


def cg_steps_imaml(lam: float, h_min: float, h_max: float, eps: float) -> int:
    """Fewest CG steps with 2 sqrt(kappa_lambda) r_lambda^Q <= eps (relative error).

    Q ~ 1/2 sqrt(kappa_lambda) ln(2 sqrt(kappa_lambda)/eps).

    Larger lambda means smaller kappa_lambda and fewer CG steps.

    Reference: THEORY.md §14 item 16 [derived]. Constants: exact (for the bound).
    """
    return cg_steps(condition_number(lam, h_min, h_max), eps)


def unrolled_rate(alpha: float, lam: float, h_min: float, h_max: float) -> float:
    """Rate at which N unrolled GD steps on G approach the implicit Jacobian: max_h |1 - alpha (lambda + h)|.

    Equals 1 - alpha (lambda + h_min) when alpha <= 1/(lambda + h_max).

    Reference: THEORY.md §1.4, §14 item 15 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    lam, h_min, h_max = _spectrum(lam, h_min, h_max)
    return max(abs(1.0 - alpha * (lam + h_min)), abs(1.0 - alpha * (lam + h_max)))


def unrolled_jacobian_error(alpha: float, lam: float, eigenvalues, N: int) -> float:
    """Spectral-norm gap between the N-step unrolled and the implicit iMAML Jacobians on a quadratic L_hat.

    Unrolled from phi_0 = theta: J_N = (I - P^N)(I + H/lambda)^{-1} + P^N, P = I - alpha (H + lambda I), so
    J_N - J_* = P^N H (H + lambda I)^{-1} and ||J_N - J_*|| = max_j |1 - alpha(lambda + h_j)|^N |h_j| / (lambda + h_j).

    Reference: THEORY.md §1.4, §14 item 15 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    h = v.vector("eigenvalues", eigenvalues)
    lam, _, _ = _spectrum(lam, float(h.min()), float(h.max()))
    N = v.count("N", N)
    return float(np.max(np.abs(1.0 - alpha * (lam + h)) ** N * np.abs(h) / (lam + h)))


def unrolled_jacobian(H, lam: float, alpha: float, N: int) -> np.ndarray:
    """Jacobian d phi_N / d theta of N GD steps (step alpha) on G = L_hat + lambda/2 ||phi - theta||^2 from
    phi_0 = theta, on a quadratic L_hat with Hessian H (one (d, d) matrix or a stack (B, d, d)).

    J_N = (I - P^N)(I + H/lambda)^{-1} + P^N with P = I - alpha (H + lambda I): the unrolled iterate is affine in
    theta, phi_{t+1} = P phi_t + alpha (lambda theta + c), so J_{t+1} = P J_t + alpha lambda I, J_0 = I.

    Reference: THEORY.md §1.4, §14 item 15 [derived]. Constants: exact.
    """
    lam = v.positive("lam", lam)
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    single = np.ndim(H) == 2
    H = v.task_matrices("H", H)
    h, U = np.linalg.eigh(H)
    if (lam + h.min(axis=-1) <= 0).any():
        raise InvalidArgumentError(f"lam + lambda_min(H) = {float((lam + h.min(axis=-1)).min()):g} is invalid; "
                                   "it must be > 0")
    p = (1.0 - alpha * (lam + h)) ** N
    diag = (1.0 - p) * lam / (lam + h) + p  # eigenvalues of J_N
    J = (U * diag[..., None, :]) @ np.swapaxes(U, -1, -2)
    return J[0] if single else J


def unrolled_jacobian_error_bound(alpha: float, lam: float, h_min: float, h_max: float, N: int) -> float:
    """Bound on ||J_N - J_*|| from the spectrum ends: r^N max(|h_min|/(lambda + h_min), |h_max|/(lambda + h_max)),
    r = :func:`unrolled_rate`.

    |h|/(lambda + h) is monotone on each side of 0 for h > -lambda, so its maximum over [h_min, h_max] is at an
    end. With alpha < 2/(lambda + h_min + lambda + h_max) the slowest direction is h_min, so
    ||J_N - J_*|| / r^N -> |h_min|/(lambda + h_min) as N grows: the rate r is exact, the constant can be loose.

    Reference: THEORY.md §1.4, §14 item 15 [derived]. Constants: exact (an upper bound; its rate is tight).
    """
    r = unrolled_rate(alpha, lam, h_min, h_max)
    N = v.count("N", N)
    lam, h_min, h_max = _spectrum(lam, h_min, h_max)
    return float(r**N * max(abs(h_min) / (lam + h_min), abs(h_max) / (lam + h_max)))
