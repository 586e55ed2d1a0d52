"""Hypergradient descent on step sizes: the fixed points it drifts toward on quadratics.

SGD-HD (Baydin et al., ICLR 2018) moves alpha along h_t = g_t^T g_{t-1}, which is zero when consecutive gradients
are orthogonal, i.e. at the exact line-search step. Alpha-MAML (Behl, Baydin, Torr, 2019) applies the same rule
to MAML's inner step; on quadratic tasks the post-adaptation loss is quadratic in alpha. THEORY.md §12 and
§14 items 26-27 [derived].
"""

from __future__ import annotations

import numpy as np

from ..types import InvalidArgumentError
from . import _validate as v

__all__ = ["hd_line_search_step", "hd_hypergradient", "alpha_maml_optimal_step", "hd_relaxation_rate",
           "hd_freeze_step"]


def hd_line_search_step(g, H) -> float:
    """Exact line-search step along a gradient g of a quadratic with SPD Hessian H: alpha = g^T g / g^T H g.

    At this alpha the next gradient is orthogonal to g (the SGD-HD fixed point); it lies in [1/L, 1/mu] for
    spec(H) in [mu, L].

    Reference: THEORY.md §12.1, §14 item 26 [derived]. Constants: exact.

    >>> hd_line_search_step([1.0, 0.0], [[2.0, 0.0], [0.0, 5.0]])
    0.5
    """
    g = v.vector("g", g)
    H = v.sym_matrix("H", H)
    if H.shape[0] != g.shape[0]:
        raise InvalidArgumentError(f"H has shape {H.shape}; it must be ({g.shape[0]}, {g.shape[0]})")
    if np.linalg.eigvalsh(H)[0] <= 0:
        raise InvalidArgumentError("H is not positive definite; its eigenvalues must be > 0")
    gg = float(g @ g)
    if gg == 0.0:
        raise InvalidArgumentError("g = 0 is invalid; the line-search step needs a nonzero gradient")
    return gg / float(g @ H @ g)


def hd_hypergradient(g_t, g_prev) -> float:
    """Derivative of f(theta_t) in alpha for theta_t = theta_{t-1} - alpha g_{t-1}: -g_t^T g_{t-1}.

    SGD-HD ascends h_t = g_t^T g_{t-1}: alpha_t = alpha_{t-1} + beta_hyp h_t.

    Reference: Baydin et al. (ICLR 2018); THEORY.md §12.1 [derived]. Constants: exact.
    """
    g_t = v.vector("g_t", g_t)
    g_prev = v.vector("g_prev", g_prev)
    if g_t.shape != g_prev.shape:
        raise InvalidArgumentError(f"g_prev has shape {g_prev.shape}; it must match g_t's shape {g_t.shape}")
    return -float(g_t @ g_prev)


def alpha_maml_optimal_step(theta, A, a, C=None, b=None) -> float:
    """Inner step minimising the one-step MAML post-adaptation loss on quadratic tasks (Alpha-MAML's fixed point).

    alpha* = E_i[g_i^T C_i (theta - b_i)] / E_i[g_i^T C_i g_i], g_i = A_i (theta - a_i): the minimiser of
    E_i 1/2 (theta - alpha g_i - b_i)^T C_i (theta - alpha g_i - b_i). C defaults to A, b to a.

    Reference: THEORY.md §12.2, §14 item 27 [derived]; Behl, Baydin, Torr (2019). Constants: exact.
    """
    A, a, C, b = v.task_quadratics(A, a, C, b)
    d = A.shape[1]
    theta = v.vector("theta", theta)
    if theta.shape[0] != d:
        raise InvalidArgumentError(f"theta has shape {theta.shape}; it must be ({d},)")
    g = np.einsum("bij,bj->bi", A, theta - a)
    Cg = np.einsum("bij,bj->bi", C, g)
    den = float(np.mean(np.sum(Cg * g, axis=1)))
    if den <= 0:
        raise InvalidArgumentError(
            f"E[g^T C g] = {den:g} is invalid; it must be > 0 (the loss must curve in alpha)"
        )
    return float(np.mean(np.sum(Cg * (theta - b), axis=1))) / den


def hd_relaxation_rate(g, H, beta_hyp) -> float:
    """Rate r = beta_hyp g^T H g at which one SGD-HD step moves alpha toward the line-search step along g.

    On a quadratic with Hessian H the next gradient is g_t = (I - alpha_{t-1} H) g_{t-1}, so
    h_t = g_t^T g_{t-1} = g^T H g (alpha_ls(g) - alpha_{t-1}) with alpha_ls = :func:`hd_line_search_step`, and
    alpha_t - alpha_ls = (1 - r)(alpha_{t-1} - alpha_ls) exactly (g = g_{t-1}): alpha relaxes toward alpha_ls for
    0 < r < 1, overshoots for 1 < r < 2 and is pushed away (oscillation / divergence) for r > 2.

    Reference: Baydin et al. (ICLR 2018); THEORY.md §12.1, §14 item 26 [derived]. Constants: exact.

    >>> hd_relaxation_rate([1.0, 0.0], [[2.0, 0.0], [0.0, 5.0]], 0.25)
    0.5
    """
    g = v.vector("g", g)
    H = v.sym_matrix("H", H)
    if H.shape[0] != g.shape[0]:
        raise InvalidArgumentError(f"H has shape {H.shape}; it must be ({g.shape[0]}, {g.shape[0]})")
    return v.nonnegative("beta_hyp", beta_hyp) * float(g @ H @ g)


def hd_freeze_step(alpha0, beta_hyp, f_gap) -> float:
    """Step size at which SGD-HD freezes on a quadratic when it stays below the line-search range:
    alpha_inf = sqrt(alpha0^2 + 2 beta_hyp (f(theta_0) - f*)).

    While alpha << 1/L, h_t = g_t^T g_{t-1} ~ ||g||^2 and each step lowers f by ~ alpha ||g||^2, so in the
    small-step limit d(alpha) = beta_hyp ||g||^2 dt and df = -alpha ||g||^2 dt, i.e. alpha d(alpha) = -beta_hyp df.
    The gradients vanish with a finite total drift, so alpha stops there; when this value reaches ~1/L the
    assumption fails and alpha freezes inside [1/L, 1/mu] instead (THEORY.md §14 item 26's "drifts into the range"
    holds only then).

    Reference: THEORY.md §12.1, §14 item 26 [derived here; continuous-time approximation]. Constants:
    approximate (the discrete iteration gives alpha_T within ~5% of it for alpha_inf <= 1/(2L) on the quadratic
    families of the predictions table).

    >>> hd_freeze_step(0.3, 0.5, 0.07)
    0.4
    """
    a0 = v.nonnegative("alpha0", alpha0)
    return float(np.sqrt(a0**2 + 2.0 * v.nonnegative("beta_hyp", beta_hyp) * v.nonnegative("f_gap", f_gap)))
