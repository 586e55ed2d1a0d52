"""Step sizes and inner-step counts that theory allows, per method, from a problem's constants.

Each ``*_guideline`` function returns a :class:`Guideline`: recommended alpha (inner step), beta (outer step),
N (inner steps), Q (linear-solver steps or ES directions), eta (linear-solver step), the admissible upper
bounds where the theory gives one, the conditions the values satisfy (as text, checked by the tests), whether
every constant used is exact, and the source. :func:`recommend` dispatches on a method name and reads the
constants from a :class:`convtheory.types.Constants` (or any object or mapping with fields L, mu, rho, M, tau).

Accuracy ``eps`` is a bound on the hypergradient error norm ||g_hat - grad Phi|| (bilevel methods, iMAML, ESJ:
RMS error), so it is not the squared-norm stationarity of the complexity tables (THEORY.md §0).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..types import InvalidArgumentError
from . import _validate as v
from .anil import saturation_N
from .bilevel import cg_steps, hyperobjective_smoothness, itd_error_bound, neumann_bias_bound
from .esj import esj_directions_for_mse
from .imaml import cg_steps_imaml, condition_number, unrolled_rate
from .maml import (
    fallah_inner_step_max, fallah_local_smoothness, fallah_outer_step, inner_growth_factor, ji_safe_inner_step,
    safe_step_growth_bound,
)

__all__ = [
    "Guideline", "maml_guideline", "fomaml_guideline", "anil_strongly_convex_guideline", "anil_nonconvex_guideline",
    "imaml_guideline", "aid_bio_guideline", "itd_bio_guideline", "stocbio_guideline", "esj_guideline", "GUIDELINES",
    "recommend",
]


@dataclass(frozen=True)
class Guideline:
    """Recommended and admissible hyperparameters of one method on one problem.

    ``alpha``, ``beta``, ``N``, ``Q``, ``eta``: recommended values (None where the theory says nothing);
    ``alpha_max``, ``beta_max``: admissible upper bounds; ``conditions``: the inequalities the values satisfy;
    ``exact``: True when every constant involved is exact ([derived]); False when some constant is recalled,
    secondary or a free choice; ``source``: paper + theorem or THEORY.md section.
    """

    method: str
    alpha: float | None = None
    beta: float | None = None
    N: int | None = None
    Q: int | None = None
    eta: float | None = None
    alpha_max: float | None = None
    beta_max: float | None = None
    conditions: tuple[str, ...] = ()
    exact: bool = False
    source: str = ""


def _first_n(pred: Callable[[int], bool], what: str, limit: int = 10**7) -> int:
    """Smallest n >= 0 with pred(n) true, pred monotone (doubling then bisection)."""
    if pred(0):
        return 0
    hi = 1
    while not pred(hi):
        hi *= 2
        if hi > limit:
            raise InvalidArgumentError(f"no {what} <= {limit} reaches the requested accuracy; loosen eps")
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------------------------ meta-learning
def maml_guideline(L: float, N: int, *, c: float = 8.0, L_meta: float | None = None, grad_norm: float = 0.0,
                   C_L: float = 0.0) -> Guideline:
    """N-step MAML (Ji, Yang, Liang): alpha = 1/(c N L), beta = 1/L_w with L_w = (1+alpha L)^{2N} L + C_L grad_norm.

    If a measured or exact ``L_meta`` is given, beta = 1/L_meta and beta_max = 2/L_meta (quadratic meta-objective).
    With C_L = 0 (quadratic tasks, rho = 0) L_w bounds ||E[P^N C P^N]|| exactly. c = 8 is [uncertain].

    Reference: Ji, Yang, Liang (JMLR 2022); THEORY.md §5, §14 item 6. Constants: shape only (c recalled).
    """
    N = v.count("N", N, minimum=1)
    alpha = ji_safe_inner_step(N, L, c)
    growth = inner_growth_factor(alpha, N, L)
    if L_meta is not None:
        L_meta = v.positive("L_meta", L_meta)
        beta, beta_max = 1.0 / L_meta, 2.0 / L_meta
    else:
        L_w = growth * float(L) + v.nonnegative("C_L", C_L) * v.nonnegative("grad_norm", grad_norm)
        beta, beta_max = 1.0 / L_w, None
    return Guideline(
        method="maml", alpha=alpha, beta=beta, N=N, alpha_max=alpha, beta_max=beta_max,
        conditions=("alpha = 1/(c N L)", f"(1 + alpha L)^(2N) <= e^(2/c) = {safe_step_growth_bound(c):.6g}",
                    "beta <= 1/L_meta"),
        exact=False, source="Ji, Yang, Liang (JMLR 2022), step-size choice; THEORY.md §5, §14 item 6 [uncertain c]",
    )


def fomaml_guideline(L: float, *, rho: float = 0.0, mean_grad_norm: float = 0.0, c_alpha: float = 6.0,
                     c_beta: float = 12.0) -> Guideline:
    """One-step MAML / FO-MAML / HF-MAML (Fallah et al.): alpha = 1/(6L), beta = 1/(12 L(w)), L(w) = 4L + 2 rho alpha g.

    FO-MAML keeps an error floor of order alpha (THEORY.md §14 item 9) that no batch size removes.

    Reference: Fallah, Mokhtari, Ozdaglar (AISTATS 2020); THEORY.md §4 [uncertain constants 6, 12, 4, 2].
    Constants: shape only.
    """
    alpha = fallah_inner_step_max(L, c_alpha)
    L_w = fallah_local_smoothness(L, rho, alpha, mean_grad_norm)
    beta = fallah_outer_step(L_w, c_beta)
    return Guideline(
        method="fomaml", alpha=alpha, beta=beta, N=1, alpha_max=alpha, beta_max=beta,
        conditions=("alpha <= 1/(c_alpha L)", "beta = 1/(c_beta (4 L + 2 rho alpha E||grad f_i||))"),
        exact=False, source="Fallah, Mokhtari, Ozdaglar (AISTATS 2020); THEORY.md §4 [uncertain]",
    )


def anil_strongly_convex_guideline(L: float, mu: float, *, tol: float = 1e-2, L_meta: float | None = None) -> Guideline:
    """ANIL with a strongly convex head: alpha = 1/L and the moderate N at which (1 - alpha mu)^N <= tol.

    N ~ kappa ln(1/tol): beyond it the head has converged and extra inner steps only add cost (the cost
    N K(N) is U-shaped). beta = 1/L_meta when a measured L_meta(N) is given.

    Reference: Ji, Lee, Liang, Poor (NeurIPS 2020) for the guideline; THEORY.md §7, §14 item 13 [derived rule].
    Constants: exact given tol (a free choice).
    """
    mu, L = v.mu_le_L(mu, L)
    alpha = 1.0 / L
    N = saturation_N(alpha, mu, L, tol)
    beta = None if L_meta is None else 1.0 / v.positive("L_meta", L_meta)
    return Guideline(
        method="anil-strongly-convex", alpha=alpha, beta=beta, N=N, alpha_max=1.0 / L,
        beta_max=None if L_meta is None else 2.0 / L_meta,
        conditions=("alpha <= 1/L", "(1 - alpha mu)^N <= tol < (1 - alpha mu)^(N-1)", "beta <= 1/L_meta"),
        exact=True, source="Ji, Lee, Liang, Poor (NeurIPS 2020); THEORY.md §7, §14 item 13 [derived]",
    )


def anil_nonconvex_guideline(L: float, *, N: int = 1, c: float = 8.0) -> Guideline:
    """ANIL with a nonconvex head: the smallest N (default 1), alpha = 1/(c N L), beta = 1/((1 + alpha L)^{2N} L).

    The head meta-curvature can grow like (1 + alpha ell)^{2N} (ell <= L); 1/((1+alpha L)^{2N} L) is an exact
    safe step for quadratic heads with ||A_i||, ||C_i|| <= L. The alpha ~ 1/(N L) order is recalled.

    Reference: Ji, Lee, Liang, Poor (NeurIPS 2020) abstract (small N); THEORY.md §7, §14 item 14.
    Constants: shape only (c recalled).
    """
    N = v.count("N", N, minimum=1)
    alpha = ji_safe_inner_step(N, L, c)
    beta = 1.0 / (inner_growth_factor(alpha, N, L) * float(L))
    return Guideline(
        method="anil-nonconvex", alpha=alpha, beta=beta, N=N, alpha_max=alpha, beta_max=beta,
        conditions=("N smallest", "alpha = 1/(c N L)", "beta (1 + alpha L)^(2N) L <= 1"),
        exact=False,
        source="Ji, Lee, Liang, Poor (NeurIPS 2020); THEORY.md §7, §14 item 14 [derived bound, c recalled]",
    )


def imaml_guideline(lam: float, h_min: float, h_max: float, *, eps: float = 1e-3) -> Guideline:
    """iMAML: inner GD on G with alpha = 1/(lambda + h_max) for N steps with q^N <= eps, and Q CG steps with
    2 sqrt(kappa_lambda) r_lambda^Q <= eps.

    q = 1 - (lambda + h_min)/(lambda + h_max) is the inner rate (also the unrolled-vs-implicit Jacobian rate).

    Reference: THEORY.md §1.4, §8, §14 items 15-16 [derived]; Rajeswaran et al. (NeurIPS 2019).
    Constants: exact.
    """
    kappa = condition_number(lam, h_min, h_max)
    eps = v.positive("eps", eps)
    alpha = 1.0 / (float(lam) + float(h_max))
    q = unrolled_rate(alpha, lam, h_min, h_max)
    N = _first_n(lambda n: q**n <= eps, "N")
    Q = cg_steps_imaml(lam, h_min, h_max, eps)
    return Guideline(
        method="imaml", alpha=alpha, N=N, Q=Q, alpha_max=2.0 / (float(lam) + float(h_max)),
        conditions=(f"q^N <= eps, q = {q:.6g}", f"2 sqrt(kappa_lambda) r^Q <= eps, kappa_lambda = {kappa:.6g}"),
        exact=True, source="THEORY.md §1.4, §8, §14 items 15-16 [derived]",
    )


# ------------------------------------------------------------------------------------------ bilevel
def _L_phi(L, mu, M, tau, rho, Lxy=None):
    """L_Phi with L the joint smoothness of f and g: Ji et al. assume grad f and grad g L-Lipschitz in (x, y), so the
    size of the mixed derivative (``Lxy`` >= ||grad_x grad_y g||, e.g. ||B|| on the quadratic family) counts too;
    the inner smoothness alone understates it when Lxy > L."""
    L_joint = float(L) if Lxy is None else max(float(L), v.nonnegative("Lxy", Lxy))
    return hyperobjective_smoothness(L_joint, mu, M, tau, rho)


def aid_bio_guideline(L: float, mu: float, M: float, tau: float, rho: float, *, eps: float = 1e-3,
                      c_D: float = 1.0, c_beta: float = 4.0, Lxy: float | None = None) -> Guideline:
    """AID-BiO (warm start): alpha = 1/L, N = ceil(c_D kappa) inner steps, Q CG steps with 2 sqrt(kappa) r^Q <= eps,
    beta = 1/(c_beta L_Phi).

    N = Theta(kappa) and beta proportional to 1/L_Phi are the shapes implied by the complexity table (c_D, c_beta
    unspecified; 1/(4 L_Phi) recalled); Q is the [derived] CG count for relative error eps.

    Reference: Ji, Yang, Liang (ICML 2021), AID-BiO theorem, via Huang et al.; THEORY.md §10 [secondary/uncertain].
    Constants: shape only; c_D and c_beta are unspecified in the paper.
    """
    mu, L = v.mu_le_L(mu, L)
    eps = v.positive("eps", eps)
    kappa = L / mu
    L_phi = _L_phi(L, mu, M, tau, rho, Lxy)
    N = max(1, math.ceil(v.positive("c_D", c_D) * kappa))
    Q = cg_steps(kappa, eps)
    beta = 1.0 / (v.positive("c_beta", c_beta) * L_phi)
    return Guideline(
        method="aid-bio", alpha=1.0 / L, beta=beta, N=N, Q=Q, alpha_max=2.0 / L, beta_max=1.0 / L_phi,
        conditions=("alpha <= 1/L", "N >= c_D kappa", "2 sqrt(kappa) r^Q <= eps", "beta <= 1/L_Phi"),
        exact=False, source="Ji, Yang, Liang (ICML 2021) via Huang et al. Tables 1-2; THEORY.md §10 [secondary]",
    )


def itd_bio_guideline(L: float, mu: float, M: float, tau: float, rho: float, *, eps: float = 1e-3,
                      dist0: float = 0.0, c_beta: float = 4.0, Lxy: float | None = None) -> Guideline:
    """ITD-BiO: alpha = 1/L, the smallest N whose ITD error bound is <= eps, and beta = 1/(c_beta L_Phi).

    The ITD bound is Ji et al.'s form (:func:`convtheory.theory.bilevel.itd_error_bound`).

    With dist0 = ||y^0 - y*|| = 0 only the warm-start-independent term (L M/mu)(1 - alpha mu)^N remains, whence
    N = Theta(kappa log(1/eps)).

    Reference: Ji, Yang, Liang (ICML 2021) via Huang et al. Thm 1; THEORY.md §10, §14 item 18 [secondary].
    Constants: shape only (secondary constants; c_beta unspecified).
    """
    mu, L = v.mu_le_L(mu, L)
    eps = v.positive("eps", eps)
    alpha = 1.0 / L
    N = _first_n(lambda n: itd_error_bound(alpha, n, L, mu, M, tau, rho, dist0).value <= eps, "N")
    L_phi = _L_phi(L, mu, M, tau, rho, Lxy)
    return Guideline(
        method="itd-bio", alpha=alpha, beta=1.0 / (v.positive("c_beta", c_beta) * L_phi), N=N, alpha_max=1.0 / L,
        beta_max=1.0 / L_phi, conditions=("alpha <= 1/L", "ITD error bound(N) <= eps", "beta <= 1/L_Phi"),
        exact=False, source="Ji, Yang, Liang (ICML 2021) via Huang et al. Thm 1; THEORY.md §10 [secondary]",
    )


def stocbio_guideline(L: float, mu: float, M: float, tau: float, rho: float, *, eps: float = 1e-3,
                      jac_norm: float | None = None, c_D: float = 1.0, c_beta: float = 4.0,
                      Lxy: float | None = None) -> Guideline:
    """stocBiO: inner step 2/(L + mu), N = ceil(c_D kappa), Neumann step eta = 1/L and the smallest Q whose bias
    ||nabla_x nabla_y g|| (1 - eta mu)^{Q+1} M / mu is <= eps; beta = 1/(c_beta L_Phi).

    ``jac_norm`` bounds ||nabla_x nabla_y g|| (default ``Lxy`` if given, else L). ``Lxy`` (all three bilevel
    guidelines): a bound on the mixed derivative, so L_Phi uses the joint smoothness max(L, Lxy). Batch sizes
    Theta(kappa^2/eps) are not returned (their constants are unspecified).

    Reference: Ji, Yang, Liang (ICML 2021); THEORY.md §10, §14 item 21 ([derived] bias, [uncertain] steps).
    Constants: shape only, except Q (exact).
    """
    mu, L = v.mu_le_L(mu, L)
    eps = v.positive("eps", eps)
    M = v.nonnegative("M", M)
    J = (float(L) if Lxy is None else float(Lxy)) if jac_norm is None else v.nonnegative("jac_norm", jac_norm)
    eta = 1.0 / L
    Q = _first_n(lambda n: neumann_bias_bound(eta, mu, L, n, M, J).value <= eps, "Q")
    L_phi = _L_phi(L, mu, M, tau, rho, Lxy)
    return Guideline(
        method="stocbio", alpha=2.0 / (L + mu), beta=1.0 / (v.positive("c_beta", c_beta) * L_phi),
        N=max(1, math.ceil(v.positive("c_D", c_D) * L / mu)), Q=Q, eta=eta, alpha_max=2.0 / L, beta_max=1.0 / L_phi,
        conditions=("eta <= 1/L", "jac_norm (1 - eta mu)^(Q+1) M / mu <= eps", "beta <= 1/L_Phi"),
        exact=False, source="Ji, Yang, Liang (ICML 2021); THEORY.md §10, §14 item 21",
    )


def esj_guideline(L: float, mu: float, M: float, p: int, *, eps: float = 1e-3, directions: str = "gaussian",
                  dist0: float = 0.0, tau: float = 0.0, rho: float = 0.0) -> Guideline:
    """ESJ: alpha = 1/L; N with ITD truncation <= eps/sqrt(2); Q directions with ES MSE <= eps^2/2 using
    ||a|| = ||J_N^T grad_y f|| <= kappa M, so the RMS hypergradient error is <= eps (exact on quadratic g).

    Reference: Sow, Ji, Liang (arXiv 2110.07004); THEORY.md §11, §14 item 25 ([derived] MSE, [secondary] ITD bound).
    Constants: shape only for N (secondary ITD bound), exact for Q.
    """
    mu, L = v.mu_le_L(mu, L)
    eps = v.positive("eps", eps)
    M = v.nonnegative("M", M)
    alpha = 1.0 / L
    target = eps / math.sqrt(2.0)
    N = _first_n(lambda n: itd_error_bound(alpha, n, L, mu, M, tau, rho, dist0).value <= target, "N")
    Q = esj_directions_for_mse((L / mu) * M, p, eps**2 / 2.0, directions)
    return Guideline(
        method="esj", alpha=alpha, N=N, Q=Q, alpha_max=1.0 / L,
        conditions=("ITD bound(N) <= eps/sqrt(2)", "ES MSE(kappa M, p, Q) <= eps^2/2"),
        exact=False, source="Sow, Ji, Liang (arXiv 2110.07004); THEORY.md §11, §14 item 25",
    )


#: method name -> guideline function.
GUIDELINES: dict[str, Callable[..., Guideline]] = {
    "maml": maml_guideline,
    "fomaml": fomaml_guideline,
    "anil-strongly-convex": anil_strongly_convex_guideline,
    "anil-nonconvex": anil_nonconvex_guideline,
    "imaml": imaml_guideline,
    "aid-bio": aid_bio_guideline,
    "itd-bio": itd_bio_guideline,
    "stocbio": stocbio_guideline,
    "esj": esj_guideline,
}

_FIELDS = ("L", "mu", "rho", "M", "tau", "sigma2")


def _read_constants(constants: Any) -> dict[str, float]:
    if constants is None:
        return {}
    if isinstance(constants, Mapping):
        out = dict(constants)
    else:
        out = {k: getattr(constants, k) for k in _FIELDS if hasattr(constants, k)}
        out.update(dict(getattr(constants, "extra", {}) or {}))
    return {k: val for k, val in out.items() if val is not None}


def recommend(method: str, constants: Any = None, **options: Any) -> Guideline:
    """Guideline for ``method`` from a problem's constants (a Constants, any object with fields L, mu, ..., or a
    mapping) and per-method options (``N``, ``eps``, ``lam``, ``p``, explicit constants ``c``, ...).

    Options override constants. For iMAML, h_max defaults to L and h_min to mu; for anil-nonconvex nothing
    beyond L is needed. Constants a method does not use are ignored; a missing required one raises.

    >>> recommend("imaml", {"L": 8.0, "mu": 0.0}, lam=2.0, eps=1e-2).Q
    7
    """
    if method not in GUIDELINES:
        raise InvalidArgumentError(f"method = {method!r} is unknown; valid: {', '.join(sorted(GUIDELINES))}")
    fn = GUIDELINES[method]
    values = _read_constants(constants)
    if method == "imaml":
        values.setdefault("h_max", values.get("L"))
        values.setdefault("h_min", values.get("mu"))
    values.update(options)
    params = inspect.signature(fn).parameters
    unknown = set(options) - set(params)
    if unknown:
        raise InvalidArgumentError(f"options {sorted(unknown)} are unknown for {method}; valid: {', '.join(params)}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and values.get(n) is None]
    if missing:
        raise InvalidArgumentError(f"{method} needs {', '.join(missing)}; pass them in constants or as options")
    return fn(**{n: values[n] for n in params if n in values and values[n] is not None})
