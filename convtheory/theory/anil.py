"""ANIL (inner loop on the head only): head meta-curvature, predicted iterations and cost, and the choice of N.

Ji, Lee, Liang, Poor (NeurIPS 2020) show that N helps with a strongly convex head (rate improves with N, cost is
smallest at a moderate N) and hurts with a nonconvex head (small N is best). Their step sizes and complexity
constants were not found (THEORY.md §7, §16), so this module states the [derived] quadratic-head facts exactly
and leaves the rest to measured inputs (L_meta(N) measured on the problem).
"""

from __future__ import annotations

import math
from typing import Mapping

from ..types import InvalidArgumentError
from . import _validate as v
from .quadratic import gd_contraction

__all__ = [
    "head_hessian_bound_strongly_convex", "head_hessian_lower_bound_nonconvex", "predicted_iterations",
    "predicted_cost", "saturation_N", "recommended_N", "predicted_oracle_calls",
]


def head_hessian_bound_strongly_convex(alpha: float, N: int, mu: float, L: float,
                                       L_query: float | None = None) -> float:
    """Upper bound on the head block of the ANIL meta-Hessian with a strongly convex quadratic head.

    ||E_i[P_i^N C_i P_i^N]|| <= L_query q^{2N}, q = max(|1 - alpha mu|, |1 - alpha L|) (= 1 - alpha mu for
    alpha <= 1/L), with the inner head Hessians' spectra in [mu, L] and ||C_i|| <= L_query (default L).

    Reference: THEORY.md §7 "Why", §14 item 13 [derived]; Ji, Lee, Liang, Poor (NeurIPS 2020) for the claim.
    Constants: exact (attained when A_i = mu I and C_i = L_query I, alpha <= 1/L).
    """
    q = gd_contraction(alpha, mu, L)
    N = v.count("N", N)
    Lq = float(L) if L_query is None else v.positive("L_query", L_query)
    return Lq * q ** (2 * N)


def head_hessian_lower_bound_nonconvex(alpha: float, N: int, ell: float, c: float) -> float:
    """Lower bound on the ANIL meta smoothness with a nonconvex head: L_meta(N) >= c (1 + alpha ell)^{2N}.

    Holds when every task's head Hessian has eigenvalue -ell < 0 on a common unit eigenvector e and the query
    Hessians weigh it by c = E_i[e^T C_i e] > 0 (Rayleigh quotient of E[P^N C P^N] at e).

    Reference: THEORY.md §1.2, §14 item 14 [derived]; Ji, Lee, Liang, Poor (NeurIPS 2020) abstract.
    Constants: exact.
    """
    alpha = v.positive("alpha", alpha)
    N = v.count("N", N)
    ell = v.positive("ell", ell)
    c = v.positive("c", c)
    return c * (1.0 + alpha * ell) ** (2 * N)


def predicted_iterations(L_meta: float, delta0: float, eps: float) -> float:
    """Outer GD iterations to reach min_k ||grad L_meta||^2 <= eps with beta = 1/L_meta: K = 2 L_meta Delta0 / eps.

    Delta0 = L(theta_0) - inf L; eps is a bound on the squared gradient norm.

    Reference: THEORY.md §14 item 13 [derived from the descent lemma]. Constants: exact (a worst-case count).
    """
    L_meta = v.positive("L_meta", L_meta)
    delta0 = v.nonnegative("delta0", delta0)
    eps = v.positive("eps", eps)
    return 2.0 * L_meta * delta0 / eps


def predicted_cost(N: int, L_meta: float, delta0: float, eps: float, overhead: float = 0.0) -> float:
    """Predicted total inner-step cost (N + overhead) K(N, eps), K = 2 L_meta(N) Delta0 / eps.

    ``overhead`` is the per-iteration cost outside the inner loop in units of one inner step (0 in THEORY.md).

    Reference: THEORY.md §14 item 13 [derived]. Constants: exact given L_meta(N).
    """
    N = v.count("N", N)
    overhead = v.nonnegative("overhead", overhead)
    return (N + overhead) * predicted_iterations(L_meta, delta0, eps)


def saturation_N(alpha: float, mu: float, L: float, tol: float) -> int:
    """Smallest N with q^N <= tol, q = max(|1-alpha mu|, |1-alpha L|): beyond it more inner steps barely help.

    N = ceil(ln(tol) / ln q) ~ kappa ln(1/tol) at alpha = 1/L; the "moderate N" of the strongly convex case.

    Reference: THEORY.md §7 "Why" [derived]. Constants: exact.
    """
    q = gd_contraction(alpha, mu, L)
    tol = v.unit_open("tol", tol)
    if q >= 1:
        raise InvalidArgumentError(f"alpha = {alpha:g} is invalid; it must be < 2/L = {2 / L:g} so that q < 1")
    if q == 0:
        return 1
    n = math.ceil(math.log(tol) / math.log(q) - 1e-12)
    while q**n > tol:  # guard against round-off in the logarithms
        n += 1
    while n > 0 and q ** (n - 1) <= tol:
        n -= 1
    return max(n, 0)


def recommended_N(L_meta_by_N: Mapping[int, float], delta0: float, eps: float, overhead: float = 0.0) -> int:
    """The N among the candidates that minimises the predicted cost (N + overhead) * 2 L_meta(N) Delta0 / eps.

    With a strongly convex head L_meta(N) falls then saturates, so the minimum is at a moderate N; with a
    nonconvex head L_meta(N) grows like (1 + alpha ell)^{2N}, so the smallest N wins. Ties go to the smaller N.

    Reference: THEORY.md §7, §14 items 13-14 [derived]; Ji, Lee, Liang, Poor (NeurIPS 2020) for the guideline.
    Constants: exact given measured L_meta(N).
    """
    if not isinstance(L_meta_by_N, Mapping) or len(L_meta_by_N) == 0:
        raise InvalidArgumentError("L_meta_by_N must be a non-empty mapping N -> L_meta(N)")
    costs = {v.count("N", n): predicted_cost(n, lm, delta0, eps, overhead) for n, lm in L_meta_by_N.items()}
    return min(sorted(costs), key=lambda n: costs[n])


def predicted_oracle_calls(N: int, L_meta: float, delta0: float, eps: float, B: int) -> float:
    """Predicted oracle calls to reach eps: B (2N + 1) K(N, eps), K = 2 L_meta(N) Delta0 / eps.

    One ANIL meta-gradient over B tasks costs B (N + 1) gradients (N head steps and the query gradient) and B N
    Hessian-vector products (back through the head steps), the accounting of
    :func:`convtheory.hypergrad.meta_gradient`; so this is 2B :func:`predicted_cost` with overhead 1/2. With a
    strongly convex head it is U-shaped in N (K falls and saturates, the per-iteration cost grows linearly).

    Reference: THEORY.md §14 item 13 [derived]. Constants: exact given L_meta(N) (K is a worst-case count).
    """
    B = v.count("B", B, minimum=1)
    return 2.0 * B * predicted_cost(N, L_meta, delta0, eps, overhead=0.5)
