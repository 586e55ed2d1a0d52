"""Warm versus cold starts of the inner problem in deterministic bilevel optimisers (THEORY.md §10, §14 item 23).

On the quadratic family of THEORY.md §1.3 (:math:`g=\\tfrac12y^\\top Hy-y^\\top(Bx+b)`,
:math:`f=\\tfrac12\\|y-\\bar y\\|^2+\\tfrac\\gamma2\\|x\\|^2`, :math:`S=H^{-1}`, :math:`P=I-\\alpha H`) an outer step
:math:`x\\leftarrow x-\\beta\\hat g(x)` with a fixed number D of inner GD steps has an exact limit:

- **AID, cold start** (every inner run restarts at the same :math:`y_0`, exact linear solve): the estimate is affine,
  :math:`\\hat g(x)=A_Dx+r_D`, so the iterates converge to :math:`x_\\infty=-A_D^{-1}r_D` where
  :math:`\\nabla\\Phi(x_\\infty)=B^\\top SP^D(y^*(x_\\infty)-y_0)\\ne0`: a plateau of :math:`\\|\\nabla\\Phi\\|^2`
  proportional to :math:`(1-\\alpha\\mu)^{2D}` once the slowest eigen-direction dominates;
- **ITD, warm start**: at a joint fixed point :math:`y=y^*(x)`, and reverse mode through the D steps gives
  :math:`\\hat g=\\nabla\\Phi-B^\\top P^DS(y^*-\\bar y)`, so the limit has
  :math:`\\nabla\\Phi(x_\\infty)=B^\\top P^DS(y^*(x_\\infty)-\\bar y)`, bounded by :math:`(LM/\\mu)(1-\\alpha\\mu)^D`
  (the warm-start-independent term of Ji et al.'s ITD bound, :func:`.bilevel.itd_error_bound`);
- **AID, warm start** (y and the linear-system solution carried over): the fixed point is the stationary point
  :math:`x^*`, so :math:`\\frac1K\\sum_{k<K}\\|\\nabla\\Phi(x_k)\\|^2` keeps falling like 1/K.

All closed forms here are [derived] and exact on the family (float64 linear algebra); the proportionality to
:math:`(1-\\alpha\\mu)^{2D}` is asymptotic in D (fitted); the paper's claim is the warm-start benefit
(Ji, Yang, Liang, ICML 2021, abstract) and the ITD term is [secondary] (Huang et al., Thm 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..types import InvalidArgumentError, InvalidTypeError
from . import _validate as v
from .bound import Bound

__all__ = [
    "QuadraticBilevelData", "hypergradient_quadratic", "aid_cold_start_limit", "aid_cold_start_plateau",
    "itd_warm_start_limit", "itd_warm_start_plateau", "itd_warm_start_plateau_bound", "plateau_ratio",
]


class QuadraticBilevelData(NamedTuple):
    """The matrices of the quadratic bilevel family (THEORY.md §1.3) as float64 numpy arrays, validated."""

    H: np.ndarray
    B: np.ndarray
    b: np.ndarray
    ybar: np.ndarray
    gamma: float


def _data(H, B, b, ybar, gamma) -> QuadraticBilevelData:
    H = v.sym_matrix("H", H)
    if np.linalg.eigvalsh(H)[0] <= 0:
        raise InvalidArgumentError("H is not positive definite; its eigenvalues must be > 0")
    d = H.shape[0]
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != d or not np.all(np.isfinite(B)):
        raise InvalidArgumentError(f"B has shape {B.shape}; it must be a finite ({d}, p) matrix")
    b, ybar = v.vector("b", b), v.vector("ybar", ybar)
    if b.shape[0] != d or ybar.shape[0] != d:
        raise InvalidArgumentError(f"b and ybar must have shape ({d},); got {b.shape} and {ybar.shape}")
    return QuadraticBilevelData(H, B, b, ybar, v.nonnegative("gamma", gamma))


def _inner(alpha, D, H) -> tuple[np.ndarray, np.ndarray]:
    """(H^{-1}, P^D) with P = I - alpha H, through the eigendecomposition of H (stable for large D)."""
    alpha = v.positive("alpha", alpha)
    D = v.count("D", D)
    lam, U = np.linalg.eigh(H)
    S = (U / lam) @ U.T
    PD = (U * (1.0 - alpha * lam) ** D) @ U.T
    return S, PD


def hypergradient_quadratic(x, H, B, b, ybar, gamma) -> np.ndarray:
    """Exact hypergradient :math:`\\nabla\\Phi(x)=\\gamma x+B^\\top H^{-1}(y^*(x)-\\bar y)`,
    :math:`y^*(x)=H^{-1}(Bx+b)`.

    Reference: THEORY.md §1.3 [derived]. Constants: exact.
    """
    m = _data(H, B, b, ybar, gamma)
    x = v.vector("x", x)
    if x.shape[0] != m.B.shape[1]:
        raise InvalidArgumentError(f"x has shape {x.shape}; it must be ({m.B.shape[1]},)")
    ys = np.linalg.solve(m.H, m.B @ x + m.b)
    return m.gamma * x + m.B.T @ np.linalg.solve(m.H, ys - m.ybar)


def _solve_limit(A: np.ndarray, r: np.ndarray) -> np.ndarray:
    if np.linalg.eigvalsh(0.5 * (A + A.T))[0] <= 0:
        raise InvalidArgumentError("the limit map is not positive definite (gamma = 0 with a rank-deficient B?); "
                                   "the outer iteration has no unique limit: use gamma > 0")
    return -np.linalg.solve(A, r)


def aid_cold_start_limit(alpha, D: int, H, B, b, ybar, gamma, y0) -> np.ndarray:
    """Limit :math:`x_\\infty` of AID with a cold start (every inner run from ``y0``, D GD steps of size alpha, exact
    linear solve) and outer GD with a convergent step.

    :math:`\\hat g(x)=\\gamma x+B^\\top S(y_D(x)-\\bar y)`, :math:`y_D=(I-P^D)y^*(x)+P^Dy_0`, so
    :math:`\\hat g=A_Dx+r_D` with :math:`A_D=\\gamma I+B^\\top S(I-P^D)SB`,
    :math:`r_D=B^\\top S((I-P^D)Sb+P^Dy_0-\\bar y)`, and :math:`x_\\infty=-A_D^{-1}r_D`. Outer GD reaches it when
    :math:`\\beta<2/\\lambda_{\\max}(A_D)`.

    Reference: THEORY.md §1.3, §10, §14 item 23 [derived]. Constants: exact.
    """
    m = _data(H, B, b, ybar, gamma)
    y0 = v.vector("y0", y0)
    if y0.shape[0] != m.H.shape[0]:
        raise InvalidArgumentError(f"y0 has shape {y0.shape}; it must be ({m.H.shape[0]},)")
    S, PD = _inner(alpha, D, m.H)
    I = np.eye(m.H.shape[0])
    A = m.gamma * np.eye(m.B.shape[1]) + m.B.T @ S @ (I - PD) @ S @ m.B
    r = m.B.T @ S @ ((I - PD) @ S @ m.b + PD @ y0 - m.ybar)
    return _solve_limit(A, r)


def aid_cold_start_plateau(alpha, D: int, H, B, b, ybar, gamma, y0) -> float:
    """Plateau :math:`\\|\\nabla\\Phi(x_\\infty)\\|^2` of cold-started AID (limit of :func:`aid_cold_start_limit`).

    :math:`\\nabla\\Phi(x_\\infty)=B^\\top SP^D(y^*(x_\\infty)-y_0)`: it falls like :math:`(1-\\alpha\\mu)^{2D}` for
    large D (:func:`plateau_ratio`), but never reaches 0 however many outer steps are taken.

    Reference: THEORY.md §1.3, §14 item 23 [derived]. Constants: exact.
    """
    x = aid_cold_start_limit(alpha, D, H, B, b, ybar, gamma, y0)
    g = hypergradient_quadratic(x, H, B, b, ybar, gamma)
    return float(g @ g)


def itd_warm_start_limit(alpha, D: int, H, B, b, ybar, gamma) -> np.ndarray:
    """Limit :math:`x_\\infty` of warm-started ITD (reverse mode through D GD steps from the previous inner iterate).

    At the joint fixed point :math:`y=y^*(x)`, so :math:`\\hat g(x)=\\gamma x+B^\\top(I-P^D)S(y^*(x)-\\bar y)
    =A x+r` with :math:`A=\\gamma I+B^\\top(I-P^D)S^2B`, :math:`r=B^\\top(I-P^D)S(Sb-\\bar y)`; independent of the
    starting point.

    Reference: THEORY.md §1.3, §10, §14 item 23 [derived]. Constants: exact.
    """
    m = _data(H, B, b, ybar, gamma)
    S, PD = _inner(alpha, D, m.H)
    J = (np.eye(m.H.shape[0]) - PD) @ S
    A = m.gamma * np.eye(m.B.shape[1]) + m.B.T @ J @ S @ m.B
    r = m.B.T @ J @ (S @ m.b - m.ybar)
    return _solve_limit(A, r)


def itd_warm_start_plateau(alpha, D: int, H, B, b, ybar, gamma) -> float:
    """Plateau :math:`\\|\\nabla\\Phi(x_\\infty)\\|^2=\\|B^\\top P^DS(y^*(x_\\infty)-\\bar y)\\|^2` of warm-started ITD.

    Reference: THEORY.md §1.3, §14 item 23 [derived]. Constants: exact.
    """
    x = itd_warm_start_limit(alpha, D, H, B, b, ybar, gamma)
    g = hypergradient_quadratic(x, H, B, b, ybar, gamma)
    return float(g @ g)


def itd_warm_start_plateau_bound(alpha, D: int, L, mu, M) -> Bound:
    """Bound :math:`(LM/\\mu)^2(1-\\alpha\\mu)^{2D}` on the warm-started ITD plateau :math:`\\|\\nabla\\Phi\\|^2`.

    The square of the last term of Ji et al.'s ITD error bound, the one no warm start removes. ``L`` must bound
    :math:`\\|\\nabla_x\\nabla_yg\\|` and ``M`` bound :math:`\\|\\nabla_yf\\|` at the limit; alpha <= 1/L_g. On the
    quadratic family :math:`\\|B^\\top P^DS(y^*-\\bar y)\\|\\le\\|B\\|(1-\\alpha\\mu)^D\\|y^*-\\bar y\\|/\\mu` makes it
    exact as an upper bound [derived]; its tightness depends on how much of :math:`y^*-\\bar y` lies on the
    mu eigenvector.

    Reference: Ji, Yang, Liang (ICML 2021) via Huang et al., Thm 1; THEORY.md §10, §14 item 23 [secondary].
    Constants: exact as an upper bound on the quadratic family (given L >= ||B||); the paper's constant otherwise.
    """
    mu = v.positive("mu", mu)
    alpha = v.positive("alpha", alpha)
    if alpha * mu > 1:
        raise InvalidArgumentError(f"alpha mu = {alpha * mu:g} is invalid; it must be <= 1 (alpha <= 1/L)")
    D = v.count("D", D)
    q = 1.0 - alpha * mu
    value = (v.nonnegative("L", L) * v.nonnegative("M", M) / mu) ** 2 * q ** (2 * D)
    return Bound(value=value, rate=q**2, exact=False,
                 source="Ji, Yang, Liang (ICML 2021) via Huang et al. Thm 1; THEORY.md §10, §14 item 23")


def plateau_ratio(alpha, mu, dD: int) -> float:
    """Predicted ratio :math:`P(D+\\Delta D)/P(D)=(1-\\alpha\\mu)^{2\\Delta D}` of two plateaus (cold-start AID or
    warm-start ITD) whose D differ by dD (negative dD: the inverse).

    Asymptotic in D: exact once the slowest eigen-direction (eigenvalue mu) dominates
    :math:`P^D`; the contamination from the next eigenvalue :math:`\\lambda_2` decays like
    :math:`((1-\\alpha\\lambda_2)/(1-\\alpha\\mu))^{2D}`. Reference: THEORY.md §14 item 23 [derived]. Constants: fitted
    (shape in D).
    """
    mu = v.positive("mu", mu)
    alpha = v.positive("alpha", alpha)
    if not 0 < alpha * mu < 1:
        raise InvalidArgumentError(f"alpha mu = {alpha * mu:g} is invalid; it must be in (0, 1)")
    if isinstance(dD, bool) or not isinstance(dD, (int, np.integer)):
        raise InvalidTypeError(f"dD must be an integer, got {dD!r}")
    return float((1.0 - alpha * mu) ** (2 * int(dD)))
