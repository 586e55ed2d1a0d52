"""Step-size schedule, sample accounting and complexity orders of the stochastic bilevel solvers stocBiO, MRBO, VRBO
and ESJ-S (THEORY.md §10-11; Yang, Ji, Liang, "Provably faster algorithms for bilevel optimization", NeurIPS 2021,
arXiv 2106.04692; Sow, Ji, Liang 2021).

- :func:`mrbo_eta`, :func:`mrbo_momentum`: MRBO's schedule (Algorithm 1 and Theorem 1 of Yang et al.):
  :math:`\\eta_k=t/(m+k)^{1/3}`, momentum weights :math:`\\alpha_{k+1}=c_1\\eta_k^2` (hypergradient) and
  :math:`\\beta_{k+1}=c_2\\eta_k^2` (inner gradient). The form is the paper's; t, m, c1, c2 are free settings
  (the theorem's lower bounds on m, c1, c2 involve unknown-tightness constants).
- ``*_samples_per_step``: per-sample oracle evaluations one step spends (a minibatch of n samples evaluated once
  counts n; evaluated at two points, as the recursive estimators do, 2n). Exact accounting of the solvers in
  :mod:`convtheory.solvers.bilevel` (tests count the draws).
- :func:`sample_complexity_exponent`: the order in 1/eps of the samples needed to reach
  :math:`\\mathbb E\\|\\nabla\\Phi\\|^2\\le\\epsilon` (upper bounds, log factors dropped): stocBiO 2, MRBO and
  VRBO 1.5 (Yang et al., Theorems 1-2), ESJ-S 2 (THEORY.md §11, not verified).
"""

from __future__ import annotations

from ..types import InvalidArgumentError
from . import _validate as v

__all__ = [
    "mrbo_eta", "mrbo_momentum", "stocbio_samples_per_step", "mrbo_samples_per_step", "vrbo_samples_per_step",
    "esjs_samples_per_step", "sample_complexity_exponent", "SAMPLE_COMPLEXITY_EXPONENT",
]

#: Order in 1/eps of the sample complexity to E||grad Phi||^2 <= eps (upper bounds; logs dropped).
SAMPLE_COMPLEXITY_EXPONENT = {"stocbio": 2.0, "mrbo": 1.5, "vrbo": 1.5, "esj-s": 2.0}


def mrbo_eta(k: int, t: float, m: float) -> float:
    """MRBO's step factor :math:`\\eta_k=t/(m+k)^{1/3}` (Yang et al. 2021, Algorithm 1, Theorem 1). Exact.

    Reference: Yang, Ji, Liang (NeurIPS 2021), Algorithm 1, Theorem 1.
    Constants: exact (the schedule's form); t and m are free settings.

    >>> round(mrbo_eta(6, 2.0, 2.0), 12)
    1.0
    """
    k = v.count("k", k)
    t, m = v.positive("t", t), v.positive("m", m)
    return t / (m + k) ** (1.0 / 3.0)


def mrbo_momentum(k: int, c: float, t: float, m: float, name: str = "c") -> float:
    """The momentum weight :math:`c\\,\\eta_{k-1}^2` used to form estimate k >= 1 (Yang et al. 2021, Algorithm 1:
    :math:`v_{k}=\\hat\\nabla\\Phi(x_{k})+(1-c_1\\eta_{k-1}^2)(v_{k-1}-\\hat\\nabla\\Phi(x_{k-1}))`). Must lie in
    [0, 1]: raises if :math:`c\\eta_{k-1}^2>1` (the message calls c ``name``).

    Reference: Yang, Ji, Liang (NeurIPS 2021), Algorithm 1.
    Constants: exact (the schedule's form); c is a free setting.

    >>> mrbo_momentum(1, 0.5, 1.0, 1.0)
    0.5
    """
    k = v.count("k", k, minimum=1)
    c = v.nonnegative(name, c)
    w = c * mrbo_eta(k - 1, t, m) ** 2
    if w > 1.0:
        raise InvalidArgumentError(f"momentum weight {name} * eta_{k - 1}^2 = {w:g} > 1 ({name} = {c:g}, t = {t:g}, "
                                   f"m = {m:g}); need {name} * t^2 / (m + {k - 1})^(2/3) <= 1: lower {name} or t, or "
                                   "raise m")
    return w


def stocbio_samples_per_step(N: int, Q: int, S: int, D: int, D_H: int) -> int:
    """stocBiO: N inner batches of S, D for grad F, D for the mixed derivative, Q Hessian batches of D_H. Exact.

    Reference: Ji, Yang, Liang (ICML 2021), Algorithm 2 (stocBiO); THEORY.md §10.
    Constants: exact (counting the solver's draws).
    """
    return v.count("N", N) * v.count("S", S, 1) + 2 * v.count("D", D, 1) + v.count("Q", Q) * v.count("D_H", D_H, 1)


def mrbo_samples_per_step(k: int, Q: int, S: int, D: int, D_H: int) -> int:
    """MRBO step k: one Neumann estimate (2D + Q D_H) and one inner gradient (S) at (x_k, y_k); for k >= 1 the same
    batches again at (x_{k-1}, y_{k-1}) (the recursive correction). Exact.

    Reference: Yang, Ji, Liang (NeurIPS 2021), Algorithm 1 (MRBO).
    Constants: exact (counting the solver's draws).
    """
    one = v.count("S", S, 1) + 2 * v.count("D", D, 1) + v.count("Q", Q) * v.count("D_H", D_H, 1)
    return one if v.count("k", k) == 0 else 2 * one


def vrbo_samples_per_step(k: int, N: int, Q: int, q: int, S1: int, S2: int) -> int:
    """VRBO step k: a large batch S1 for every oracle when k mod q = 0 ((Q + 3) S1: grad F, mixed derivative,
    Q Hessians, inner gradient), then N + 1 recursive corrections, each evaluating a fresh small batch S2 at two
    points (2 (Q + 3) S2). Exact.

    Reference: Yang, Ji, Liang (NeurIPS 2021), Algorithm 2 (VRBO).
    Constants: exact (counting the solver's draws).
    """
    Q, S1, S2 = v.count("Q", Q), v.count("S1", S1, 1), v.count("S2", S2, 1)
    refresh = v.count("k", k) % v.count("q", q, 1) == 0
    return (Q + 3) * S1 * refresh + 2 * (v.count("N", N) + 1) * (Q + 3) * S2


def esjs_samples_per_step(N: int, Q: int, S: int, D: int) -> int:
    """ESJ-S: N inner batches of S, each evaluated by the base run and the Q perturbed runs, and D for grad F.

    Reference: Sow, Ji, Liang (2021), ESJ with minibatches; THEORY.md §11.
    Constants: exact (counting the solver's draws).
    """
    return (v.count("Q", Q, 1) + 1) * v.count("N", N) * v.count("S", S, 1) + v.count("D", D, 1)


def sample_complexity_exponent(method: str) -> float:
    """a in O(eps^-a): samples to reach E||grad Phi||^2 <= eps (upper bounds; Ji et al. 2021 for stocBiO, Yang et
    al. 2021 Theorems 1-2 for MRBO and VRBO, THEORY.md §11 for ESJ-S). In terms of a gradient-norm target tau
    (eps = tau^2) the samples grow like tau^(-2a).

    Reference: Ji, Yang, Liang (ICML 2021); Yang, Ji, Liang (NeurIPS 2021), Theorems 1-2; THEORY.md §11.
    Constants: upper-bound orders only (log factors dropped); ESJ-S's is not verified.
    """
    if method not in SAMPLE_COMPLEXITY_EXPONENT:
        raise InvalidArgumentError(f"method = {method!r} is unknown; valid: {', '.join(SAMPLE_COMPLEXITY_EXPONENT)}")
    return SAMPLE_COMPLEXITY_EXPONENT[method]
