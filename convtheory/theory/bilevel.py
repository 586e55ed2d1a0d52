"""Bilevel optimization: smoothness of the hyper-objective, ITD and AID hypergradient errors, solver steps, complexity.

min_x Phi(x) = f(x, y*(x)), y*(x) = argmin_y g(x, y), g mu-strongly convex and L-smooth in y; M bounds
||grad_y f||, tau and rho are the Lipschitz constants of nabla_x nabla_y g and nabla_y^2 g; kappa = L/mu.
Ji, Yang, Liang (ICML 2021) and Ghadimi & Wang (2018) constants are read in a secondary source (Huang et al.),
Grazzi et al. (ICML 2020) constants were not found, so those are shape only with explicit constants. The
quadratic family of THEORY.md §1.3 (g = 1/2 y^T H y - y^T (B x + b), f = 1/2||y - ybar||^2 + gamma/2 ||x||^2)
gives exact [derived] errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..types import InvalidArgumentError
from . import _validate as v
from .bound import Bound
from .quadratic import gd_contraction

__all__ = [
    "lower_level_lipschitz", "response_lipschitz", "hyperobjective_smoothness", "hyperobjective_smoothness_quadratic",
    "hyperobjective_smoothness_quadratic_bound", "itd_error_bound", "itd_error_quadratic",
    "itd_error_bound_quadratic", "aid_error_bound_quadratic", "grazzi_itd_error_bound", "grazzi_aid_error_bound",
    "fixed_point_error_bound", "cg_rate", "cg_error_bound", "fixed_point_steps", "cg_steps", "neumann_bias_bound",
    "ComplexityExponents", "BILEVEL_COMPLEXITY", "complexity",
]

_HUANG = "Huang et al. (Bregman bilevel), Lemmas 1-2, restating Ghadimi & Wang (2018); THEORY.md §10 [secondary]"


def _bilevel_constants(L, mu, M, tau, rho):
    mu, L = v.mu_le_L(mu, L)
    return L, mu, v.nonnegative("M", M), v.nonnegative("tau", tau), v.nonnegative("rho", rho)


# ------------------------------------------------------------------------------------------ smoothness
def lower_level_lipschitz(L: float, mu: float, M: float, tau: float, rho: float) -> float:
    """Lipschitz constant L_y of the surrogate hypergradient in y.

    ||grad_bar f(x, y) - grad Phi(x)|| <= L_y ||y*(x) - y||, with grad_bar f the hypergradient formula at y;
    L_y = L + L^2/mu + M tau/mu + rho M L/mu^2.

    Reference: Ghadimi & Wang (2018) via Huang et al., Lemma 1; THEORY.md §10 [secondary].
    Constants: as restated by a secondary source (unverified against the paper).
    """
    L, mu, M, tau, rho = _bilevel_constants(L, mu, M, tau, rho)
    return L + L**2 / mu + M * tau / mu + rho * M * L / mu**2


def response_lipschitz(L: float, mu: float) -> float:
    """Lipschitz constant of the lower-level solution map: ||y*(x1) - y*(x2)|| <= kappa ||x1 - x2||, kappa = L/mu.

    Reference: Ghadimi & Wang (2018) via Huang et al., Lemma 2; THEORY.md §10 [secondary].
    Constants: exact (||(nabla_y^2 g)^{-1} nabla_y nabla_x g|| <= L/mu).
    """
    mu, L = v.mu_le_L(mu, L)
    return L / mu


def hyperobjective_smoothness(L: float, mu: float, M: float, tau: float, rho: float) -> float:
    """Smoothness of Phi(x) = f(x, y*(x)) (Ghadimi-Wang form), Theta(kappa^3).

    L_Phi = L + (2 L^2 + tau M^2)/mu + (rho L M + L^3 + tau M L)/mu^2 + rho L^2 M / mu^3;
    for quadratic g (rho = tau = 0) this is L (1 + kappa)^2.

    Reference: Ghadimi & Wang (2018) via Huang et al., Lemma 2; THEORY.md §10, §14 item 22 [secondary].
    Constants: as restated by a secondary source (unverified against the paper).
    """
    L, mu, M, tau, rho = _bilevel_constants(L, mu, M, tau, rho)
    return (L + (2 * L**2 + tau * M**2) / mu + (rho * L * M + L**3 + tau * M * L) / mu**2
            + rho * L**2 * M / mu**3)


def hyperobjective_smoothness_quadratic(gamma: float, B, H) -> float:
    """Exact smoothness of Phi on the quadratic bilevel family: lambda_max(gamma I + B^T H^{-2} B).

    Reference: THEORY.md §1.3, §14 item 22 [derived]. Constants: exact.
    """
    gamma = v.nonnegative("gamma", gamma)
    H = _spd("H", H)
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != H.shape[0] or not np.all(np.isfinite(B)):
        raise InvalidArgumentError(f"B has shape {B.shape}; it must be a finite ({H.shape[0]}, p) matrix")
    X = np.linalg.solve(H, B)
    return float(gamma + np.linalg.eigvalsh(X.T @ X)[-1])


def hyperobjective_smoothness_quadratic_bound(gamma: float, B_norm: float, mu: float) -> float:
    """Upper bound on the smoothness of Phi on the quadratic bilevel family: gamma + ||B||^2 / mu^2.

    Reference: THEORY.md §1.3 [derived]. Constants: exact (attained when B's top singular vector meets mu).
    """
    return v.nonnegative("gamma", gamma) + v.nonnegative("B_norm", B_norm) ** 2 / v.positive("mu", mu) ** 2


def _spd(name, H) -> np.ndarray:
    H = v.sym_matrix(name, H)
    if np.linalg.eigvalsh(H)[0] <= 0:
        raise InvalidArgumentError(f"{name} is not positive definite; its eigenvalues must be > 0")
    return H


# ------------------------------------------------------------------------------------------- ITD error
def _term(coef: float, q: float, e: float) -> float:
    """coef * q**e with 0 * anything = 0 and 0**(negative) = inf (q = 0 happens when alpha = 1/L and kappa = 1)."""
    if coef == 0.0:
        return 0.0
    if q == 0.0:
        return math.inf if e < 0 else (coef if e == 0 else 0.0)
    return coef * q**e


def itd_error_bound(alpha: float, N: int, L: float, mu: float, M: float, tau: float, rho: float,
                    dist0: float) -> Bound:
    """Bound on the ITD hypergradient error after N inner GD steps (Ji et al. / Huang et al. form).

    ||df(x, y^N)/dx - grad Phi(x)|| <= (L(L+mu)/mu q^{N/2} + 2M(tau mu + L rho)/mu^2 q^{N/2-1}) ||y^0 - y*(x)||
    + (L M / mu) q^N, q = 1 - alpha mu, alpha <= 1/L. The last term ignores the initial distance: warm starts
    cannot remove it, so ITD needs N = Theta(kappa log(1/eps)).

    Reference: Ji, Yang, Liang (ICML 2021), ITD proposition, in the form of Huang et al., Theorem 1;
    THEORY.md §10, §14 item 18 [secondary; uncertain that it is verbatim]. Constants: shape only; as restated
    by a secondary source.
    """
    L, mu, M, tau, rho = _bilevel_constants(L, mu, M, tau, rho)
    alpha = v.positive("alpha", alpha)
    v.below("alpha", alpha, 1.0 / L, "1/L")
    N = v.count("N", N)
    dist0 = v.nonnegative("dist0", dist0)
    q = 1.0 - alpha * mu
    value = (_term(L * (L + mu) / mu * dist0, q, N / 2)
             + _term(2 * M * (tau * mu + L * rho) / mu**2 * dist0, q, N / 2 - 1)
             + _term(L * M / mu, q, N))
    return Bound(value=value, rate=math.sqrt(q), exact=False,
                 source="Ji, Yang, Liang (ICML 2021) ITD proposition via Huang et al. Thm 1; "
                        "THEORY.md §10 [secondary]")


def itd_error_quadratic(alpha: float, N: int, H, B, y0, x, b, ybar) -> np.ndarray:
    """Exact ITD hypergradient error vector on the quadratic bilevel family.

    y* = H^{-1}(B x + b), y_N = y* + P^N (y0 - y*), P = I - alpha H;
    e_ITD(N) = B^T H^{-1} P^N [(y0 - y*) - (y_N - ybar)]  (estimate minus truth).

    Reference: THEORY.md §1.3, §14 item 17 [derived]. Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    H = _spd("H", H)
    d = H.shape[0]
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != d or not np.all(np.isfinite(B)):
        raise InvalidArgumentError(f"B has shape {B.shape}; it must be a finite ({d}, p) matrix")
    x = v.vector("x", x)
    y0, b, ybar = (v.vector(n, z) for n, z in (("y0", y0), ("b", b), ("ybar", ybar)))
    if x.shape[0] != B.shape[1] or {y0.shape[0], b.shape[0], ybar.shape[0]} != {d}:
        raise InvalidArgumentError(f"x must be ({B.shape[1]},) and y0, b, ybar must be ({d},)")
    ystar = np.linalg.solve(H, B @ x + b)
    PN = np.linalg.matrix_power(np.eye(d) - alpha * H, N)
    yN = ystar + PN @ (y0 - ystar)
    return B.T @ np.linalg.solve(H, PN @ ((y0 - ystar) - (yN - ybar)))


def itd_error_bound_quadratic(alpha: float, N: int, mu: float, L: float, B_norm: float, dist0: float,
                              out_dist: float) -> Bound:
    """Bound on the ITD error on the quadratic bilevel family.

    ||e_ITD|| <= (||B||/mu) q^N (||y0 - y*|| + ||y_N - ybar||);
    q = max(|1 - alpha mu|, |1 - alpha L|); rate q^N with no polynomial prefactor (Jacobians are constant).
    ``dist0`` = ||y0 - y*||, ``out_dist`` = ||y_N - ybar||.

    Reference: THEORY.md §1.3, §14 item 17 [derived]. Constants: exact.
    """
    q = gd_contraction(alpha, mu, L)
    N = v.count("N", N)
    B_norm = v.nonnegative("B_norm", B_norm)
    dist0 = v.nonnegative("dist0", dist0)
    out_dist = v.nonnegative("out_dist", out_dist)
    return Bound(value=B_norm / float(mu) * q**N * (dist0 + out_dist), rate=q, exact=True,
                 source="THEORY.md §1.3, §14 item 17 [derived]")


def aid_error_bound_quadratic(mu: float, B_norm: float, solver_error: float, inner_error: float) -> float:
    """AID error on the quadratic family from its two parts: ||e_AID|| <= ||B|| ||v - v*_N|| + (||B||/mu) ||y_N - y*||.

    From e_AID = B^T (v - v*_N) + B^T H^{-1} (y_N - y*), v*_N = H^{-1}(y_N - ybar).

    Reference: THEORY.md §1.3 [derived]. Constants: exact.
    """
    mu = v.positive("mu", mu)
    B_norm = v.nonnegative("B_norm", B_norm)
    solver_error = v.nonnegative("solver_error", solver_error)
    inner_error = v.nonnegative("inner_error", inner_error)
    return B_norm * solver_error + B_norm / mu * inner_error


def grazzi_itd_error_bound(q: float, t: int, c1: float, c2: float) -> Bound:
    """ITD hypergradient error after t inner iterations of a q-contraction: (c1 + c2 t) q^t.

    c1, c2 depend on Lipschitz constants of the upper objective and the fixed-point map and on (1 - q)^{-1};
    their expressions were not found, so they are explicit arguments (fit them, or bound them per problem).

    Reference: Grazzi, Franceschi, Pontil, Salzo (ICML 2020), ITD theorem; THEORY.md §9, §14 item 18
    [uncertain]. Constants: shape only; c1, c2 are unspecified here.
    """
    q = v.unit_open("q", q) if q != 0 else 0.0
    t = v.count("t", t)
    c1, c2 = v.nonnegative("c1", c1), v.nonnegative("c2", c2)
    return Bound(value=(c1 + c2 * t) * q**t, rate=q, exact=False,
                 source="Grazzi et al. (ICML 2020) ITD bound; THEORY.md §9 [uncertain]")


def grazzi_aid_error_bound(c1: float, c2: float, inner_error: float, solver_error: float) -> float:
    """AID hypergradient error decomposition: c1 ||w_t - w(lambda)|| + c2 ||v_{t,k} - v_t*||.

    Reference: Grazzi et al. (ICML 2020), AID theorem; THEORY.md §9 [uncertain].
    Constants: shape only; c1, c2 are unspecified here.
    """
    return (v.nonnegative("c1", c1) * v.nonnegative("inner_error", inner_error)
            + v.nonnegative("c2", c2) * v.nonnegative("solver_error", solver_error))


# ----------------------------------------------------------------------------------- linear-system solvers
def fixed_point_error_bound(eta: float, mu: float, L: float, Q: int, v_star_norm: float = 1.0) -> Bound:
    """Error of Q fixed-point (Richardson) steps v <- v - eta (H v - r) from v_0 = 0: ||v_Q - v*|| <= q^Q ||v*||.

    q = max(|1 - eta mu|, |1 - eta L|) (= 1 - eta mu for eta <= 1/L), spec(H) in [mu, L]; equality along the
    slowest eigenvector. With r = y_N - ybar, ||v*|| <= ||y_N - ybar|| / mu.

    Reference: THEORY.md §1.3, §9, §14 item 20 [derived]. Constants: exact.
    """
    q = gd_contraction(eta, mu, L)
    Q = v.count("Q", Q)
    v_star_norm = v.nonnegative("v_star_norm", v_star_norm)
    return Bound(value=q**Q * v_star_norm, rate=q, exact=True, source="THEORY.md §1.3, §14 item 20 [derived]")


def cg_rate(kappa: float) -> float:
    """Per-step CG contraction factor r = (sqrt(kappa) - 1) / (sqrt(kappa) + 1).

    Reference: textbook CG bound; THEORY.md §1.3 [derived]. Constants: exact.
    """
    kappa = v.positive("kappa", kappa)
    if kappa < 1:
        raise InvalidArgumentError(f"kappa = {kappa:g} is invalid; a condition number must be >= 1")
    s = math.sqrt(kappa)
    return (s - 1.0) / (s + 1.0)


def cg_error_bound(kappa: float, Q: int, v_star_norm: float = 1.0, norm: str = "euclidean") -> Bound:
    """CG error after Q steps from v_0 = 0 on an SPD system with condition number kappa.

    ||v_Q - v*||_H <= 2 r^Q ||v*||_H (``norm="energy"``); ||v_Q - v*|| <= 2 sqrt(kappa) r^Q ||v*||
    (``norm="euclidean"``), r = (sqrt(kappa)-1)/(sqrt(kappa)+1). CG is also exact after (number of distinct
    eigenvalues) steps.

    Reference: textbook CG bound; THEORY.md §1.3, §9, §14 items 16, 20 [derived]. Constants: exact.
    """
    r = cg_rate(kappa)
    Q = v.count("Q", Q)
    v_star_norm = v.nonnegative("v_star_norm", v_star_norm)
    if norm not in ("euclidean", "energy"):
        raise InvalidArgumentError(f"norm = {norm!r} is unknown; valid: energy, euclidean")
    pre = 2.0 * (math.sqrt(float(kappa)) if norm == "euclidean" else 1.0)
    return Bound(value=pre * r**Q * v_star_norm, rate=r, exact=True,
                 source="textbook CG bound; THEORY.md §1.3, §14 item 20 [derived]")


def _smallest_power(rate: float, prefactor: float, eps: float) -> int:
    """Smallest integer Q >= 0 with prefactor * rate^Q <= eps."""
    if prefactor <= eps:
        return 0
    if rate == 0.0:
        return 1
    Q = max(0, math.ceil(math.log(eps / prefactor) / math.log(rate) - 1e-12))
    while prefactor * rate**Q > eps:
        Q += 1
    while Q > 0 and prefactor * rate ** (Q - 1) <= eps:
        Q -= 1
    return Q


def fixed_point_steps(eta: float, mu: float, L: float, eps: float) -> int:
    """Fewest fixed-point steps with relative error q^Q <= eps.

    Q_FP = ceil(ln(1/eps) / ln(1/q)) ~ kappa ln(1/eps) at eta = 1/L, q = max(|1 - eta mu|, |1 - eta L|).

    Reference: THEORY.md §9, §14 item 20 [derived]. Constants: exact.
    """
    q = gd_contraction(eta, mu, L)
    eps = v.positive("eps", eps)
    if q >= 1:
        raise InvalidArgumentError(f"eta = {eta:g} is invalid; it must be < 2/L = {2 / float(L):g} so that q < 1")
    return _smallest_power(q, 1.0, eps)


def cg_steps(kappa: float, eps: float) -> int:
    """Fewest CG steps whose Euclidean bound 2 sqrt(kappa) r^Q is <= eps (relative error).

    Q_CG ~ 1/2 sqrt(kappa) ln(2 sqrt(kappa)/eps).

    Reference: THEORY.md §9, §14 item 20 [derived]. Constants: exact (for the bound, not for CG itself).
    """
    r = cg_rate(kappa)
    eps = v.positive("eps", eps)
    return _smallest_power(r, 2.0 * math.sqrt(float(kappa)), eps)


def neumann_bias_bound(eta: float, mu: float, L: float, Q: int, grad_y_norm: float, jac_norm: float = 1.0) -> Bound:
    """Bias of the stocBiO Neumann estimator with terms q = 0..Q (independent unbiased Hessian batches).

    E[v_Q] = eta sum_{q=0}^{Q} (I - eta H)^q grad_y f, bias = -(I - eta H)^{Q+1} H^{-1} grad_y f, so
    ||bias of v|| <= (1 - eta mu)^{Q+1} ||grad_y f|| / mu (eta <= 1/L) and the hypergradient bias is at most
    ``jac_norm`` (= ||nabla_x nabla_y g||) times that. With exact Hessians (no noise) this is also the error of
    deterministic Neumann AID, which equals fixed point with Q + 1 steps (THEORY.md §14 item 19).

    Reference: THEORY.md §1.3, §14 item 21 [derived]; estimator: Ji, Yang, Liang (ICML 2021).
    Constants: exact.
    """
    mu, L = v.mu_le_L(mu, L)
    eta = v.positive("eta", eta)
    v.below("eta", eta, 1.0 / L, "1/L")
    Q = v.count("Q", Q)
    g = v.nonnegative("grad_y_norm", grad_y_norm)
    J = v.nonnegative("jac_norm", jac_norm)
    q = 1.0 - eta * mu
    return Bound(value=J * q ** (Q + 1) * g / mu, rate=q, exact=True, source="THEORY.md §1.3, §14 item 21 [derived]")


# ------------------------------------------------------------------------------------------ complexity
@dataclass(frozen=True)
class ComplexityExponents:
    """Exponents of O(kappa^kappa_exp eps^-eps_exp (log 1/eps)^log_exp) to reach ||grad Phi||^2 <= eps.

    ``kappa_exp`` None: an unspecified polynomial p(kappa).
    """

    kappa_exp: float | None
    eps_exp: float
    log_exp: float = 0.0


def _c(k, e, lg=0.0):
    return ComplexityExponents(k, e, lg)


#: Complexity table of Ji, Yang, Liang (ICML 2021) as restated by Huang et al., Tables 1-2 (THEORY.md §10,
#: §14 item 24 [secondary]); accuracy is on the squared gradient norm. Oracles: Gc_f, Gc_g (gradients of f, g),
#: JV_g, HV_g (Jacobian- and Hessian-vector products of g); "iterations": outer iterations. The log factors of
#: ITD-BiO and stocBiO HV entries are [uncertain]. TTSA's kappa dependence p(kappa) is unspecified (None).
BILEVEL_COMPLEXITY: dict[str, dict[str, ComplexityExponents]] = {
    "aid-bio-ghadimi-wang": {"Gc_f": _c(4, 1), "Gc_g": _c(5, 1.25), "JV_g": _c(4, 1), "HV_g": _c(4.5, 1)},
    "aid-bio": {"iterations": _c(3, 1), "Gc_f": _c(3, 1), "Gc_g": _c(4, 1), "JV_g": _c(3, 1), "HV_g": _c(3.5, 1)},
    "itd-bio": {"iterations": _c(3, 1), "Gc_f": _c(3, 1), "Gc_g": _c(4, 1, 1), "JV_g": _c(4, 1),
                "HV_g": _c(4, 1, 1)},
    "bsa": {"Gc_f": _c(6, 2), "Gc_g": _c(9, 3), "JV_g": _c(6, 2), "HV_g": _c(6, 2)},
    "ttsa": {"Gc_f": _c(None, 2.5), "Gc_g": _c(None, 2.5), "JV_g": _c(None, 2.5), "HV_g": _c(None, 2.5)},
    "stocbio": {"iterations": _c(3, 1), "Gc_f": _c(5, 2), "Gc_g": _c(9, 2), "JV_g": _c(5, 2), "HV_g": _c(6, 2, 1)},
}


def complexity(method: str, oracle: str, kappa: float, eps: float, c: float) -> float:
    """Predicted oracle count c kappa^a eps^-b (log(1/eps))^l from :data:`BILEVEL_COMPLEXITY`.

    Reference: Ji, Yang, Liang (ICML 2021) via Huang et al., Tables 1-2; THEORY.md §10, §14 item 24
    [secondary]. Constants: shape only; c is unspecified in the paper (fit it).
    """
    if method not in BILEVEL_COMPLEXITY:
        raise InvalidArgumentError(f"method = {method!r} is unknown; valid: {', '.join(sorted(BILEVEL_COMPLEXITY))}")
    row = BILEVEL_COMPLEXITY[method]
    if oracle not in row:
        raise InvalidArgumentError(f"oracle = {oracle!r} is unknown for {method}; valid: {', '.join(sorted(row))}")
    e = row[oracle]
    if e.kappa_exp is None:
        raise InvalidArgumentError(f"{method} has an unspecified kappa dependence p(kappa); no count can be formed")
    kappa = v.positive("kappa", kappa)
    if kappa < 1:
        raise InvalidArgumentError(f"kappa = {kappa:g} is invalid; a condition number must be >= 1")
    eps = v.unit_open("eps", eps)
    c = v.positive("c", c)
    return c * kappa**e.kappa_exp * eps ** (-e.eps_exp) * math.log(1.0 / eps) ** e.log_exp


# ------------------------------------------------------------------- explicit ITD constants, joint smoothness
def grazzi_itd_constants(alpha: float, mu: float, L: float, rho: float, tau: float, Lxy: float, M: float,
                         Lf: float, dist0: float) -> tuple[float, float]:
    """Explicit (c1, c2) of Grazzi's ITD shape ||e_ITD(N)|| <= (c1 + c2 N) q^N, q = max(|1-alpha mu|, |1-alpha L|).

    For N GD steps from y0 (independent of x) on a g that is mu-strongly convex and L-smooth in y, with
    ||nabla_y^2 g(x, y) - nabla_y^2 g(x, y*)|| <= rho ||y - y*||, ||nabla_x nabla_y g(x, y) - (same at y*)|| <=
    tau ||y - y*||, ||nabla_x nabla_y g|| <= Lxy at y*, grad f Lf-Lipschitz in y and ||nabla_y f(x, y_N)|| <= M:
    the Jacobian Z_t = dy_t/dx obeys Z_{t+1} - Z* = (I - alpha K_t)(Z_t - Z*) - alpha (K_t - K*) Z* -
    alpha (J_t - J*), so ||Z_N - Z*|| <= q^N Lxy/mu + N alpha dist0 (rho Lxy/mu + tau) q^{N-1}, and

    c1 = Lf dist0 (1 + Lxy/mu) + M Lxy/mu,    c2 = M alpha dist0 (rho Lxy/mu + tau) / q,

    with dist0 = ||y0 - y*(x)||. The factor N comes from the Hessian moving along the path (rho, tau > 0); on
    quadratic g (rho = tau = 0) c2 = 0 and the rate is q^N with no prefactor (THEORY.md §14 item 17).

    Reference: Grazzi, Franceschi, Pontil, Salzo (ICML 2020), ITD theorem, shape (c1 + c2 t) q^t; THEORY.md §9,
    §14 item 18 [derived here for these explicit constants]. Constants: exact (a certified bound, not tight).
    """
    mu, L = v.mu_le_L(mu, L)
    alpha = v.positive("alpha", alpha)
    q = gd_contraction(alpha, mu, L)
    if not 0.0 < q < 1.0:
        raise InvalidArgumentError(f"alpha = {alpha:g} gives q = {q:g}; it must be in (0, 1): 0 < alpha < 2/L, "
                                   f"alpha != 1/mu")
    rho, tau, Lxy, M, Lf, dist0 = (v.nonnegative(n, z) for n, z in (("rho", rho), ("tau", tau), ("Lxy", Lxy),
                                                                     ("M", M), ("Lf", Lf), ("dist0", dist0)))
    c1 = Lf * dist0 * (1.0 + Lxy / mu) + M * Lxy / mu
    c2 = M * alpha * dist0 * (rho * Lxy / mu + tau) / q
    return c1, c2


def itd_error_bound_explicit(alpha: float, N: int, mu: float, L: float, rho: float, tau: float, Lxy: float,
                             M: float, Lf: float, dist0: float) -> Bound:
    """Bound (c1 + c2 N) q^N on the ITD hypergradient error with the explicit constants of
    :func:`grazzi_itd_constants` (q = max(|1 - alpha mu|, |1 - alpha L|)).

    Reference: Grazzi et al. (ICML 2020), ITD theorem (shape); THEORY.md §9, §14 item 18 [derived constants].
    Constants: exact (certified for the stated Lipschitz constants).
    """
    c1, c2 = grazzi_itd_constants(alpha, mu, L, rho, tau, Lxy, M, Lf, dist0)
    b = grazzi_itd_error_bound(gd_contraction(alpha, mu, L), v.count("N", N), c1, c2)
    return Bound(value=b.value, rate=b.rate, exact=True,
                 source="Grazzi et al. (ICML 2020) ITD shape with constants derived in THEORY.md §14 item 18")


def bilevel_joint_smoothness_quadratic(gamma: float, B, H) -> float:
    """Joint gradient-Lipschitz constant L of Ji et al.'s assumptions on the quadratic bilevel family.

    g = 1/2 y^T H y - y^T (B x + b) has joint Hessian [[0, -B^T], [-B, H]] and f = 1/2 ||y - ybar||^2 +
    gamma/2 ||x||^2 has blockdiag(gamma I, I); L = max(||[[0, -B^T], [-B, H]]||_2, max(1, gamma)). This L (not
    lambda_max(H) alone) is the one that enters L_Phi = L (1 + kappa)^2 of :func:`hyperobjective_smoothness`.

    Reference: THEORY.md §1.3, §10 assumptions [derived]. Constants: exact.
    """
    gamma = v.nonnegative("gamma", gamma)
    H = _spd("H", H)
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != H.shape[0] or not np.all(np.isfinite(B)):
        raise InvalidArgumentError(f"B has shape {B.shape}; it must be a finite ({H.shape[0]}, p) matrix")
    p = B.shape[1]
    J = np.block([[np.zeros((p, p)), -B.T], [-B, H]])
    return float(max(np.abs(np.linalg.eigvalsh(J)).max(), 1.0, gamma))


__all__ += ["grazzi_itd_constants", "itd_error_bound_explicit", "bilevel_joint_smoothness_quadratic"]
