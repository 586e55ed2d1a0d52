"""Exact results on quadratic tasks: GD contraction, N-step MAML meta-curvature, divergence thresholds, SGD floors.

Everything here is THEORY.md §1.1-1.5 and §14 items 1, 3-5, 7: linear algebra done for the synthetic quadratic
families, so the constants are exact and tests check them to float64 precision. Symbols: alpha (inner step),
beta (outer step), N (inner steps), B (tasks per batch); a task has support Hessian A and query Hessian C.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from ..types import InvalidArgumentError
from . import _validate as v
from .bound import Bound

__all__ = [
    "gd_contraction", "spectral_contraction", "optimal_gd_step", "optimal_gd_contraction", "inner_step_max",
    "inner_error_bound", "meta_hessian", "meta_smoothness", "meta_strong_convexity", "meta_smoothness_shared",
    "meta_smoothness_interval", "meta_smoothness_peak", "meta_smoothness_peak_location", "beta_max",
    "alpha_crit_nonconvex", "alpha_crit_nonconvex_asymptotic", "alpha_crit_convex", "sgd_stationary_covariance",
    "sgd_noise_floor", "sgd_noise_floor_lyapunov", "sgd_nonconvex_bound",
]


# ------------------------------------------------------------------------------------------ §1.1 inner GD
def gd_contraction(alpha: float, mu: float, L: float) -> float:
    """Contraction factor of gradient descent on a quadratic with spectrum in [mu, L].

    q(alpha) = max(|1 - alpha mu|, |1 - alpha L|); q = 1 - alpha mu when alpha <= 1/L; q < 1 iff alpha < 2/L.

    Reference: THEORY.md §1.1 [derived]. Constants: exact (attained along the extreme eigenvectors).

    >>> gd_contraction(0.1, 1.0, 10.0)
    0.9
    """
    alpha = v.positive("alpha", alpha)
    mu, L = v.mu_le_L(mu, L)
    return max(abs(1.0 - alpha * mu), abs(1.0 - alpha * L))


def spectral_contraction(alpha: float, eigenvalues) -> float:
    """Spectral radius of P = I - alpha A for a symmetric A with the given eigenvalues (any sign).

    q = max_j |1 - alpha lambda_j|; ||P^N x|| <= q^N ||x|| with equality along the maximising eigenvector.

    Reference: THEORY.md §1.1 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    lam = v.vector("eigenvalues", eigenvalues)
    return float(np.max(np.abs(1.0 - alpha * lam)))


def optimal_gd_step(mu: float, L: float) -> float:
    """Step minimising the GD contraction on [mu, L]: alpha* = 2 / (mu + L).

    Reference: THEORY.md §1.1 [derived]. Constants: exact.
    """
    mu, L = v.mu_le_L(mu, L)
    return 2.0 / (mu + L)


def optimal_gd_contraction(mu: float, L: float) -> float:
    """Best GD contraction on [mu, L]: q(2/(mu+L)) = (kappa - 1)/(kappa + 1), kappa = L/mu.

    Reference: THEORY.md §1.1 [derived]. Constants: exact.
    """
    mu, L = v.mu_le_L(mu, L)
    return (L - mu) / (L + mu)


def inner_step_max(L: float) -> float:
    """Largest stable inner step on a PSD quadratic: GD diverges iff alpha > 2 / lambda_max = 2 / L.

    Reference: THEORY.md §1.1 [derived]. Constants: exact.
    """
    return 2.0 / v.positive("L", L)


def inner_error_bound(alpha: float, mu: float, L: float, N: int, dist0: float = 1.0) -> Bound:
    """Distance to the task optimum after N GD steps: ||w_N - w*|| <= q^N ||w_0 - w*||.

    q = max(|1 - alpha mu|, |1 - alpha L|); ``dist0`` = ||w_0 - w*||. Equality along the slowest eigenvector.

    Reference: THEORY.md §1.1, §14 item 1 [derived]. Constants: exact.
    """
    q = gd_contraction(alpha, mu, L)
    N = v.count("N", N)
    dist0 = v.nonnegative("dist0", dist0)
    return Bound(value=q**N * dist0, rate=q, exact=True, source="THEORY.md §1.1, §14 item 1 [derived]")


# ------------------------------------------------------------------------------- §1.2 MAML meta-curvature
def _task_powers(alpha: float, N: int, A: np.ndarray) -> np.ndarray:
    d = A.shape[-1]
    P = np.eye(d) - alpha * A
    return np.linalg.matrix_power(P, N)


def meta_hessian(alpha: float, N: int, A, C=None) -> np.ndarray:
    """Hessian of the exact N-step MAML meta-objective on quadratic tasks: H_N = E_i[P_i^N C_i P_i^N].

    P_i = I - alpha A_i; A_i (support Hessians) and C_i (query Hessians) are stacked (B, d, d), or one (d, d)
    matrix; C defaults to A (shared curvature). The expectation is the mean over the B tasks.

    Reference: THEORY.md §1.2 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    A = v.task_matrices("A", A)
    C = v.query_matrices(A, C)
    PN = _task_powers(alpha, N, A)
    H = np.mean(PN @ C @ PN, axis=0)
    return 0.5 * (H + H.T)


def meta_smoothness(alpha: float, N: int, A, C=None) -> float:
    """Meta smoothness L_meta(alpha, N) = lambda_max(E_i[P_i^N C_i P_i^N]) of N-step MAML on quadratic tasks.

    Reference: THEORY.md §1.2, §14 item 3 [derived]. Constants: exact.
    """
    return float(np.linalg.eigvalsh(meta_hessian(alpha, N, A, C))[-1])


def meta_strong_convexity(alpha: float, N: int, A, C=None) -> float:
    """Meta strong convexity mu_meta(alpha, N) = lambda_min(E_i[P_i^N C_i P_i^N]) on quadratic tasks.

    Reference: THEORY.md §1.2 [derived]. Constants: exact.
    """
    return float(np.linalg.eigvalsh(meta_hessian(alpha, N, A, C))[0])


def meta_smoothness_shared(alpha: float, N: int, eigenvalues) -> float:
    """L_meta for shared curvature A_i = C_i = A with spectrum Lambda.

    L_meta = max_{lambda in Lambda} lambda (1 - alpha lambda)^{2N}. Eigenvalues must be >= 0 (C is PSD).

    Reference: THEORY.md §1.2 [derived]. Constants: exact.

    >>> meta_smoothness_shared(0.1, 1, [1.0, 5.0])
    1.25
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    lam = v.vector("eigenvalues", eigenvalues)
    if np.any(lam < 0):
        raise InvalidArgumentError(f"eigenvalues min = {lam.min():g} is invalid; shared curvature needs all >= 0")
    return float(np.max(lam * (1.0 - alpha * lam) ** (2 * N)))


def _h(alpha: float, N: int, lam: float) -> float:
    return lam * (1.0 - alpha * lam) ** (2 * N)


def meta_smoothness_interval(alpha: float, N: int, mu: float, L: float) -> float:
    """Worst L_meta over shared spectra in [mu, L].

    max_{lambda in [mu, L]} h(lambda), h(lambda) = lambda (1 - alpha lambda)^{2N}. h' = 0 only at
    lambda = 1/alpha (a zero of h) and lambda^dagger = 1/(alpha(2N+1)), so the maximum is attained at mu, L or
    lambda^dagger (if inside). Valid for any alpha > 0 and 0 <= mu <= L.

    Reference: THEORY.md §1.2 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    L = v.positive("L", L)
    mu = v.nonnegative("mu", mu)
    if mu > L:
        raise InvalidArgumentError(f"mu = {mu:g} is invalid; it must satisfy 0 <= mu <= L = {L:g}")
    cands = [mu, L]
    peak = 1.0 / (alpha * (2 * N + 1))
    if mu <= peak <= L:
        cands.append(peak)
    return max(_h(alpha, N, lam) for lam in cands)


def meta_smoothness_peak_location(alpha: float, N: int) -> float:
    """Maximiser of h(lambda) = lambda (1 - alpha lambda)^{2N} on [0, 1/alpha]: lambda^dagger = 1/(alpha (2N + 1)).

    Reference: THEORY.md §1.2 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    return 1.0 / (alpha * (2 * N + 1))


def meta_smoothness_peak(alpha: float, N: int) -> float:
    """Bound on L_meta for shared spectra in [0, 1/alpha] (i.e. alpha <= 1/L): h(lambda^dagger).

    h(lambda^dagger) = 1/(alpha(2N+1)) * (2N/(2N+1))^{2N} ~ 1/(e alpha (2N+1)): meta smoothness falls like 1/N.

    Reference: THEORY.md §1.2, §14 item 3 [derived]. Constants: exact (attained when lambda^dagger is an eigenvalue).

    >>> round(meta_smoothness_peak(1.0, 0), 12)
    1.0
    """
    lam = meta_smoothness_peak_location(alpha, N)
    return _h(float(alpha), int(N), lam)


def beta_max(L_meta: float) -> float:
    """Largest stable meta step of deterministic meta-GD on a quadratic meta-objective: beta_max = 2 / L_meta.

    Reference: THEORY.md §14 item 3 [derived]. Constants: exact (GD on a quadratic diverges iff beta > 2/L_meta).
    """
    return 2.0 / v.positive("L_meta", L_meta)


# ---------------------------------------------------------------------------- §14 items 4-5: thresholds
def _beta_c(beta: float, c: float, what: str) -> float:
    beta = v.positive("beta", beta)
    c = v.positive(what, c)
    if beta * c >= 2.0:
        raise InvalidArgumentError(
            f"beta * {what} = {beta * c:g} is invalid; it must be < 2 (else meta-GD diverges already at alpha = 0)"
        )
    return beta * c


def alpha_crit_nonconvex(N: int, beta: float, c: float, ell: float) -> float:
    """Inner step above which N-step meta-GD diverges along a negative-curvature direction.

    Inner eigenvalue -ell < 0 with outer weight c > 0 on the same eigenvector contributes c (1 + alpha ell)^{2N}
    to the meta-Hessian; meta-GD with step beta diverges iff c (1 + alpha ell)^{2N} > 2/beta, i.e.
    alpha_crit(N) = ((2/(beta c))^{1/(2N)} - 1) / ell (needs beta c < 2). N = 0 gives inf (alpha plays no role).
    N alpha_crit -> ln(2/(beta c)) / (2 ell): the alpha ~ 1/N rule.

    Reference: THEORY.md §14 item 4 [derived]; 1/N scaling: Ji, Yang, Liang (JMLR 2022) abstract.
    Constants: exact (when this direction dominates the meta-Hessian).
    """
    N = v.count("N", N)
    bc = _beta_c(beta, c, "c")
    ell = v.positive("ell", ell)
    if N == 0:
        return math.inf
    return math.expm1(math.log(2.0 / bc) / (2 * N)) / ell


def alpha_crit_nonconvex_asymptotic(N: int, beta: float, c: float, ell: float) -> float:
    """Large-N form of alpha_crit_nonconvex: ln(2/(beta c)) / (2 N ell).

    Reference: THEORY.md §14 item 4 [derived]. Constants: exact as N -> inf (a lower bound on alpha_crit for
    every N >= 1, since e^x - 1 >= x).
    """
    N = v.count("N", N, minimum=1)
    bc = _beta_c(beta, c, "c")
    ell = v.positive("ell", ell)
    return math.log(2.0 / bc) / (2 * N * ell)


def alpha_crit_convex(N: int, beta: float, L: float) -> float:
    """Inner step above which N-step meta-GD diverges along the top eigenvector of a convex shared-curvature family.

    With A_i = C_i and top eigenvalue L, that direction has meta-curvature L (alpha L - 1)^{2N} for alpha > 1/L;
    it exceeds 2/beta iff alpha > alpha_crit = (1 + (2/(beta L))^{1/(2N)}) / L, which tends to 2/L (no 1/N
    shrinkage). For beta L <= 2 it is >= 2/L. N = 0 gives inf.

    Reference: THEORY.md §14 item 5 [derived]. Constants: exact (upper threshold along the top eigenvector).
    """
    N = v.count("N", N)
    beta = v.positive("beta", beta)
    L = v.positive("L", L)
    if N == 0:
        return math.inf
    return (1.0 + (2.0 / (beta * L)) ** (1.0 / (2 * N))) / L


# --------------------------------------------------------------------------------------- §1.5 SGD floor
def _check_batch(B) -> int:
    return v.count("B", B, minimum=1)


def sgd_stationary_covariance(beta: float, H, Sigma, B: int = 1) -> np.ndarray:
    """Stationary covariance of theta - theta* under SGD with noise covariance Sigma/B on a quadratic with Hessian H.

    Solves C = (I - beta H) C (I - beta H) + beta^2 Sigma / B (discrete Lyapunov equation); needs the spectral
    radius of I - beta H below 1, i.e. 0 < beta h_j < 2 for every eigenvalue h_j of H.

    Reference: THEORY.md §1.5 [derived]. Constants: exact.
    """
    beta = v.positive("beta", beta)
    H = v.sym_matrix("H", H)
    Sigma = v.sym_matrix("Sigma", Sigma)
    B = _check_batch(B)
    if Sigma.shape != H.shape:
        raise InvalidArgumentError(f"Sigma has shape {Sigma.shape}; it must match H's shape {H.shape}")
    h = np.linalg.eigvalsh(H)
    if h[0] <= 0 or beta * h[-1] >= 2:
        raise InvalidArgumentError(
            f"beta * eig(H) spans [{beta * h[0]:g}, {beta * h[-1]:g}]; it must lie in (0, 2) for a stationary law"
        )
    P = np.eye(H.shape[0]) - beta * H
    C = scipy.linalg.solve_discrete_lyapunov(P, beta**2 * Sigma / B)
    return 0.5 * (C + C.T)


def sgd_noise_floor(beta: float, h, s, B: int = 1) -> float:
    """Stationary E||grad L||^2 of constant-step SGD on a quadratic, commuting case.

    lim_k E||grad L(theta_k)||^2 = sum_j beta h_j s_j / (B (2 - beta h_j)), with (h_j, e_j) the eigenpairs of
    the Hessian H, s_j = e_j^T Sigma e_j, noise covariance Sigma / B; needs 0 <= beta h_j < 2.

    Reference: THEORY.md §1.5, §14 item 7 [derived]. Constants: exact.
    """
    beta = v.positive("beta", beta)
    h = v.vector("h", h)
    s = v.vector("s", s)
    B = _check_batch(B)
    if h.shape != s.shape:
        raise InvalidArgumentError(f"s has shape {s.shape}; it must match h's shape {h.shape}")
    if np.any(h < 0) or np.any(beta * h >= 2):
        raise InvalidArgumentError(
            f"beta * h spans [{beta * h.min():g}, {beta * h.max():g}]; it must lie in [0, 2) for a stationary law"
        )
    if np.any(s < 0):
        raise InvalidArgumentError(f"s min = {s.min():g} is invalid; noise variances must be >= 0")
    return float(np.sum(beta * h * s / (B * (2.0 - beta * h))))


def sgd_noise_floor_lyapunov(beta: float, H, Sigma, B: int = 1) -> float:
    """Stationary E||grad L||^2 of constant-step SGD on a quadratic, general (non-commuting) case: tr(H^2 C).

    C solves C = (I - beta H) C (I - beta H) + beta^2 Sigma / B. Equals :func:`sgd_noise_floor` when H and
    Sigma commute.

    Reference: THEORY.md §1.5 [derived]. Constants: exact.
    """
    C = sgd_stationary_covariance(beta, H, Sigma, B)
    H = np.asarray(H, dtype=np.float64)
    return float(np.trace(H @ C @ H))


def sgd_nonconvex_bound(beta: float, K: int, gap: float, L_meta: float, sigma2: float = 0.0, B: int = 1) -> float:
    """Generic SGD bound on an L_meta-smooth objective.

    min_{k<K} E||grad L||^2 <= 2 gap/(beta K) + beta L_meta sigma2 / B;
    gap = L(theta_0) - L*; sigma2 = variance of one stochastic gradient (B of them averaged); needs beta <= 1/L_meta.

    Reference: THEORY.md §1.5 (the textbook bound used by all the papers) [derived]. Constants: exact.
    """
    beta = v.positive("beta", beta)
    K = v.count("K", K, minimum=1)
    gap = v.nonnegative("gap", gap)
    L_meta = v.positive("L_meta", L_meta)
    sigma2 = v.nonnegative("sigma2", sigma2)
    B = _check_batch(B)
    v.below("beta", beta, 1.0 / L_meta, "1/L_meta")
    return 2.0 * gap / (beta * K) + beta * L_meta * sigma2 / B


# ------------------------------------------------------------------- §14 item 3: beta_max lower bound
def beta_max_shared_bound(alpha: float, N: int) -> float:
    """Lower bound on the largest stable meta step of N-step MAML, shared curvature A_i = C_i, spectrum in [0, 1/alpha].

    L_meta(alpha, N) <= h(lambda^dagger) = 1/(alpha(2N+1)) (2N/(2N+1))^{2N} (:func:`meta_smoothness_peak`), so
    beta_max = 2/L_meta >= 2 alpha (2N+1) ((2N+1)/(2N))^{2N} ~ 2 e alpha (2N+1): it grows (at least) linearly in N.
    Equality when lambda^dagger = 1/(alpha(2N+1)) is an eigenvalue.

    Reference: THEORY.md §1.2, §14 item 3 [derived]. Constants: exact.

    >>> round(beta_max_shared_bound(1.0, 0), 12)
    2.0
    """
    return beta_max(meta_smoothness_peak(alpha, N))


__all__ += ["beta_max_shared_bound"]
