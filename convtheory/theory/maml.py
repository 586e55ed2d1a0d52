"""MAML, FO-MAML, HF-MAML and Reptile: step-size conditions, inner-loop growth, and exact fixed points.

Step-size rules of Ji, Yang, Liang (JMLR 2022, multi-step MAML) and Fallah, Mokhtari, Ozdaglar (AISTATS 2020)
are known only in shape (THEORY.md §4-5 tag their constants [uncertain]), so every constant they leave
unverified is an explicit argument. The fixed points of FO-MAML and Reptile on quadratic tasks (§14 items 9-10)
are [derived] and exact. Quadratic task i: support loss 1/2 (w-a_i)^T A_i (w-a_i), query loss
1/2 (w-b_i)^T C_i (w-b_i), P_i = I - alpha A_i; task stacks are (B, d, d) matrices and (B, d) vectors.
"""

from __future__ import annotations

import math

import numpy as np

from ..types import InvalidArgumentError
from . import _validate as v

__all__ = [
    "ji_safe_inner_step", "inner_growth_factor", "safe_step_growth_bound", "ji_smoothness_estimate",
    "ji_outer_step", "fallah_inner_step_max", "fallah_local_smoothness", "fallah_outer_step",
    "hf_maml_fd_error_bound", "maml_quadratic_gradient", "fomaml_quadratic_direction", "maml_fixed_point",
    "fomaml_fixed_point", "fomaml_floor", "reptile_fixed_point", "linreg_maml_gradient", "linreg_shared_batch_bias",
    "linreg_finite_s_meta_hessian", "k2_expansions",
]


# ----------------------------------------------------------------------------- Ji, Yang, Liang (JMLR 2022)
def ji_safe_inner_step(N: int, L: float, c: float = 8.0) -> float:
    """Inner step that keeps N-step MAML provably convergent: alpha = 1 / (c N L).

    The 1/N scaling is the paper's; the constant c = 8 is recalled, not verified (THEORY.md §5, §14 item 6
    [uncertain]); pass ``c`` explicitly to use another.

    Reference: Ji, Yang, Liang, "Multi-step model-agnostic meta-learning" (JMLR 2022), step-size choice.
    Constants: shape only; c is unverified (default 8 is a recollection).
    """
    N = v.count("N", N, minimum=1)
    L = v.positive("L", L)
    c = v.positive("c", c)
    return 1.0 / (c * N * L)


def inner_growth_factor(alpha: float, N: int, L: float) -> float:
    """Worst-case growth of the N-step inner-loop Jacobian product, squared: (1 + alpha L)^{2N}.

    ||prod_j (I - alpha nabla^2 l(w_j))||^2 <= (1 + alpha L)^{2N} when ||nabla^2 l|| <= L; this factor multiplies
    the meta smoothness and the meta-gradient bias/variance. With fixed alpha it grows like e^{2 N alpha L}.

    Reference: THEORY.md §5, §14 item 6 [derived]. Constants: exact (attained by eigenvalue -L).
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    L = v.positive("L", L)
    return (1.0 + alpha * L) ** (2 * N)


def safe_step_growth_bound(c: float = 8.0) -> float:
    """Bound on (1 + alpha L)^{2N} at alpha = 1/(c N L), uniform in N: (1 + 1/(cN))^{2N} <= e^{2/c} (e^{1/4} for c = 8).

    Reference: THEORY.md §1.2, §14 item 6 [derived]. Constants: exact for the given c.
    """
    return math.exp(2.0 / v.positive("c", c))


def ji_smoothness_estimate(alpha: float, N: int, L: float, grad_norm: float, C_L: float) -> float:
    """Gradient-dependent meta smoothness of N-step MAML: L_w = (1 + alpha L)^{2N} L + C_L E_i||grad l_i(w)||.

    ``grad_norm`` estimates E_i||grad l_i(w)|| on an independent task batch; C_L (which depends on the Hessian
    Lipschitz constant rho, alpha and N in the paper) is not verified, so it is an explicit argument.

    Reference: Ji, Yang, Liang (JMLR 2022), adaptive meta step; THEORY.md §5 [uncertain].
    Constants: shape only; C_L is unspecified here.
    """
    growth = inner_growth_factor(alpha, N, L)
    grad_norm = v.nonnegative("grad_norm", grad_norm)
    C_L = v.nonnegative("C_L", C_L)
    return growth * float(L) + C_L * grad_norm


def ji_outer_step(alpha: float, N: int, L: float, grad_norm: float, C_L: float, *, c_beta: float) -> float:
    """Adaptive meta step of multi-step MAML: beta = 1 / (c_beta L_w), L_w from :func:`ji_smoothness_estimate`.

    Reference: Ji, Yang, Liang (JMLR 2022); THEORY.md §5 [uncertain].
    Constants: shape only; c_beta and C_L are unspecified in the sources read, so both are explicit.
    """
    c_beta = v.positive("c_beta", c_beta)
    return 1.0 / (c_beta * ji_smoothness_estimate(alpha, N, L, grad_norm, C_L))


# ------------------------------------------------------------------ Fallah, Mokhtari, Ozdaglar (AISTATS 2020)
def fallah_inner_step_max(L: float, c: float = 6.0) -> float:
    """Largest inner step of one-step MAML / FO-MAML / HF-MAML in Fallah et al.: alpha in (0, 1/(c L)], c = 6.

    Reference: Fallah, Mokhtari, Ozdaglar (AISTATS 2020), main theorems; THEORY.md §4 [uncertain].
    Constants: shape only; c = 6 is recalled, not verified.
    """
    return 1.0 / (v.positive("c", c) * v.positive("L", L))


def fallah_local_smoothness(L: float, rho: float, alpha: float, mean_grad_norm: float) -> float:
    """Local smoothness of the one-step MAML objective: L(w) = 4 L + 2 rho alpha E_i||grad f_i(w)||.

    Reference: Fallah et al. (AISTATS 2020), smoothness lemma; THEORY.md §4 [uncertain].
    Constants: shape only; the factors 4 and 2 are recalled, not verified.
    """
    L = v.positive("L", L)
    rho = v.nonnegative("rho", rho)
    alpha = v.positive("alpha", alpha)
    g = v.nonnegative("mean_grad_norm", mean_grad_norm)
    return 4.0 * L + 2.0 * rho * alpha * g


def fallah_outer_step(L_local: float, c: float = 12.0) -> float:
    """Meta step of Fallah et al.: beta_k = 1 / (c L~(w_k)), c = 12, with L~ an independent-batch estimate of L(w_k).

    Reference: Fallah et al. (AISTATS 2020); THEORY.md §4 [uncertain].
    Constants: shape only; c = 12 is recalled, not verified.
    """
    return 1.0 / (v.positive("c", c) * v.positive("L_local", L_local))


def hf_maml_fd_error_bound(rho: float, delta: float, v_norm: float) -> float:
    """Error of the central-difference Hessian-vector product of HF-MAML: <= rho delta ||v||^2.

    d = (grad f(w + delta v) - grad f(w - delta v)) / (2 delta); ||d - nabla^2 f(w) v|| <= rho delta ||v||^2 when the
    Hessian is rho-Lipschitz (a Taylor argument gives the sharper rho delta ||v||^2 / 2). Zero on quadratics.

    Reference: Fallah et al. (AISTATS 2020), HF-MAML; THEORY.md §4, §14 item 12 [secondary].
    Constants: as restated by a secondary source; a valid (loose by 2) upper bound.
    """
    rho = v.nonnegative("rho", rho)
    delta = v.positive("delta", delta)
    v_norm = v.nonnegative("v_norm", v_norm)
    return rho * delta * v_norm**2


# ------------------------------------------------------------------ quadratic tasks: exact fixed points
def _family(alpha, N, A, a, C, b):
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    A, a, C, b = v.task_quadratics(A, a, C, b)
    d = A.shape[1]
    PN = np.linalg.matrix_power(np.eye(d) - alpha * A, N)
    return PN, C, a, b


def _solve(M: np.ndarray, r: np.ndarray, what: str) -> np.ndarray:
    cond = np.linalg.cond(M)
    if not np.isfinite(cond) or cond > 1e14:
        raise InvalidArgumentError(f"{what} is singular (condition number {cond:g}); the fixed point is not unique")
    return np.linalg.solve(M, r)


def maml_quadratic_gradient(theta, alpha: float, N: int, A, a, C=None, b=None) -> np.ndarray:
    """Exact N-step MAML meta-gradient on quadratic tasks: E_i[P_i^N C_i (a_i - b_i + P_i^N (theta - a_i))].

    C defaults to A and b to a (query = support loss).

    Reference: THEORY.md §1.2, §14 item 2 [derived]. Constants: exact.
    """
    PN, C, a, b = _family(alpha, N, A, a, C, b)
    theta = v.vector("theta", theta)
    if theta.shape[0] != a.shape[1]:
        raise InvalidArgumentError(f"theta has shape {theta.shape}; it must be ({a.shape[1]},)")
    w = a + np.einsum("bij,bj->bi", PN, theta - a)
    return np.mean(np.einsum("bji,bj->bi", PN, np.einsum("bij,bj->bi", C, w - b)), axis=0)


def fomaml_quadratic_direction(theta, alpha: float, N: int, A, a, C=None, b=None) -> np.ndarray:
    """Expected FO-MAML direction on quadratic tasks (the query gradient at the adapted point w_N).

    E_i[C_i (a_i + P_i^N (theta - a_i) - b_i)].

    Reference: THEORY.md §3, §14 item 9 [derived]. Constants: exact.
    """
    PN, C, a, b = _family(alpha, N, A, a, C, b)
    theta = v.vector("theta", theta)
    if theta.shape[0] != a.shape[1]:
        raise InvalidArgumentError(f"theta has shape {theta.shape}; it must be ({a.shape[1]},)")
    w = a + np.einsum("bij,bj->bi", PN, theta - a)
    return np.mean(np.einsum("bij,bj->bi", C, w - b), axis=0)


def maml_fixed_point(alpha: float, N: int, A, a, C=None, b=None) -> np.ndarray:
    """Minimiser of the exact N-step MAML objective on quadratic tasks.

    theta*_MAML = (E[P^N C P^N])^{-1} E[P^N C (P^N a - a + b)].

    Reference: THEORY.md §14 item 10 [derived]. Constants: exact.
    """
    PN, C, a, b = _family(alpha, N, A, a, C, b)
    M = np.mean(PN @ C @ PN, axis=0)
    r = np.mean(np.einsum("bji,bj->bi", PN, np.einsum("bij,bj->bi", C, np.einsum("bij,bj->bi", PN, a) - a + b)), 0)
    return _solve(M, r, "E[P^N C P^N]")


def fomaml_fixed_point(alpha: float, N: int, A, a, C=None, b=None) -> np.ndarray:
    """Point where the expected FO-MAML direction vanishes (its limit under decaying beta) on quadratic tasks.

    theta*_FO = (E[C P^N])^{-1} E[C (P^N a - a + b)].

    Reference: THEORY.md §14 item 9 [derived]; non-vanishing error: Fallah et al. (AISTATS 2020) abstract.
    Constants: exact.
    """
    PN, C, a, b = _family(alpha, N, A, a, C, b)
    M = np.mean(C @ PN, axis=0)
    r = np.mean(np.einsum("bij,bj->bi", C, np.einsum("bij,bj->bi", PN, a) - a + b), axis=0)
    return _solve(M, r, "E[C P^N]")


def fomaml_floor(alpha: float, N: int, A, a, C=None, b=None) -> float:
    """FO-MAML error floor: the MAML meta-gradient norm at the FO-MAML fixed point, ||grad L(theta*_FO)||.

    Positive in general; zero when all A_i coincide, all C_i coincide and they commute; O(alpha) as alpha -> 0;
    independent of the batch size.

    Reference: THEORY.md §14 item 9 [derived]; Fallah et al. (AISTATS 2020) abstract. Constants: exact.
    """
    theta = fomaml_fixed_point(alpha, N, A, a, C, b)
    return float(np.linalg.norm(maml_quadratic_gradient(theta, alpha, N, A, a, C, b)))


def reptile_fixed_point(alpha: float, k: int, A, a) -> np.ndarray:
    """Fixed point of Reptile (k inner GD steps on the support losses) on quadratic tasks.

    The expected Reptile direction is E_i[(I - P_i^k)(theta - a_i)], zero at
    theta*_Rep = (E[I - P^k])^{-1} E[(I - P^k) a]; it differs from theta*_MAML unless the A_i are equal.

    Reference: THEORY.md §14 item 10 [derived]; Reptile: Nichol, Achiam, Schulman (2018). Constants: exact.
    """
    k = v.count("k", k, minimum=1)
    Pk, _, a, _ = _family(alpha, k, A, a, None, None)
    M = np.eye(a.shape[1]) - Pk
    return _solve(np.mean(M, axis=0), np.mean(np.einsum("bij,bj->bi", M, a), axis=0), "E[I - P^k]")


# ------------------------------------------------------- Gaussian linear regression: one-step MAML estimators
def _linreg(theta, alpha, Sigma, m):
    alpha = v.positive("alpha", alpha)
    Sigma = v.sym_matrix("Sigma", Sigma)
    theta, m = v.vector("theta", theta), v.vector("m", m)
    if theta.shape != m.shape or theta.shape[0] != Sigma.shape[0]:
        raise InvalidArgumentError(f"theta {theta.shape}, m {m.shape} and Sigma {Sigma.shape} disagree on d")
    return alpha, Sigma, theta - m


def linreg_maml_gradient(theta, alpha: float, Sigma, m) -> np.ndarray:
    """Exact one-step MAML gradient of Fallah et al.'s objective E_i f_i(theta - alpha grad f_i(theta)) on Gaussian
    linear-regression tasks with population losses: (I - alpha Sigma) Sigma (I - alpha Sigma) (theta - m).

    Task i: x ~ N(0, Sigma), y = x^T w_i + noise, w_i with mean m, f_i(w) = E (x^T w - y)^2 / 2, so grad f_i(w) =
    Sigma (w - w_i); the gradient is linear in w_i, so the task average only needs m. It is also the expectation of
    the stochastic MAML estimator (I - alpha H_{D_H}) grad f(w_1; D), w_1 = theta - alpha grad f(theta; S), when the
    S, D_H and D batches are independent (THEORY.md §1.2, §14 item 8).

    Reference: THEORY.md §1.2, §14 item 8 [derived]; independent batches: Fallah, Mokhtari, Ozdaglar (2020).
    Constants: exact.
    """
    alpha, Sigma, u = _linreg(theta, alpha, Sigma, m)
    P = np.eye(len(u)) - alpha * Sigma
    return P @ Sigma @ P @ u


def linreg_shared_batch_bias(theta, alpha: float, S: int, Sigma, m) -> np.ndarray:
    """Bias of the one-step MAML estimator when its Hessian uses the inner step's S samples (shared batch).

    With A_S = X^T X / S of S Gaussian samples, E[(I - alpha A_S) Sigma (I - alpha A_S)] exceeds the independent
    value by alpha^2 (E[A_S Sigma A_S] - Sigma^3), and Isserlis' theorem (E[x x^T M x x^T] = 2 Sigma M Sigma +
    tr(M Sigma) Sigma for symmetric M) gives E[A_S Sigma A_S] = Sigma^3 + (Sigma^3 + tr(Sigma^2) Sigma) / S, so

        bias = alpha^2 / S (Sigma^3 + tr(Sigma^2) Sigma) (theta - m)

    (the label noise drops out: it is independent of X with mean 0). It does not depend on D or on how many
    estimates are averaged; it vanishes as S -> infinity.

    Reference: THEORY.md §1.2, §14 item 8 [derived]. Constants: exact (Gaussian features).
    """
    alpha, Sigma, u = _linreg(theta, alpha, Sigma, m)
    S = v.count("S", S, minimum=1)
    S3 = Sigma @ Sigma @ Sigma
    return alpha**2 / S * (S3 + np.trace(Sigma @ Sigma) * Sigma) @ u


def linreg_finite_s_meta_hessian(alpha: float, S: int, Sigma) -> np.ndarray:
    """Hessian of the resampling-regime one-step MAML objective E ell_D(theta - alpha grad ell_S(theta)) with S
    Gaussian support samples per task (the objective whose gradient the shared-batch estimator is unbiased for):

        H_S = (I - alpha Sigma) Sigma (I - alpha Sigma) + alpha^2 / S (Sigma^3 + tr(Sigma^2) Sigma),

    its gradient is H_S (theta - m) and its minimiser is m (see :func:`linreg_shared_batch_bias`).

    Reference: THEORY.md §1.2, §14 items 7, 28 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    Sigma = v.sym_matrix("Sigma", Sigma)
    S = v.count("S", S, minimum=1)
    P = np.eye(Sigma.shape[0]) - alpha * Sigma
    S3 = Sigma @ Sigma @ Sigma
    H = P @ Sigma @ P + alpha**2 / S * (S3 + np.trace(Sigma @ Sigma) * Sigma)
    return 0.5 * (H + H.T)


def k2_expansions(alpha: float, avg_grad, avg_grad_inner) -> dict[str, np.ndarray]:
    """Nichol et al.'s second-order expansions of the expected k = 2 directions (two steps on distinct batches):

    MAML ~ AvgGrad - 2 alpha AvgGradInner, FO-MAML ~ AvgGrad - alpha AvgGradInner,
    Reptile ~ 2 AvgGrad - alpha AvgGradInner, each with an O(alpha^2) remainder; AvgGrad = E[g_1],
    AvgGradInner = E[H_2 g_1] = E[H_1 g_2] (g_j, H_j gradient and Hessian of batch j at theta).
    Derivation: phi_1 = theta - alpha g_1; g_2(phi_1) = g_2 - alpha H_2 g_1 + O(alpha^2); MAML multiplies by
    (I - alpha H_1); Reptile adds g_1. On quadratic batches the FO-MAML and Reptile remainders are exactly 0 and
    MAML's is exactly alpha^2 E[H_1 H_2 g_1].

    Reference: Nichol, Achiam, Schulman (2018), Taylor analysis; THEORY.md §3, §14 item 11 [uncertain recall,
    re-derived here]. Constants: exact coefficients.
    """
    alpha = v.positive("alpha", alpha)
    g, gi = v.vector("avg_grad", avg_grad), v.vector("avg_grad_inner", avg_grad_inner)
    if g.shape != gi.shape:
        raise InvalidArgumentError(f"avg_grad {g.shape} and avg_grad_inner {gi.shape} must have the same shape")
    return {"maml": g - 2 * alpha * gi, "fomaml": g - alpha * gi, "reptile": 2 * g - alpha * gi}
