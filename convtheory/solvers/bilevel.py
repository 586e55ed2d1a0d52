"""Bilevel solvers for :math:`\\min_x\\Phi(x)=f(x,y^*(x))`, :math:`y^*(x)=\\arg\\min_yg(x,y)`: AID-BiO (CG or
Neumann), ITD-BiO, stocBiO, the Hessian-free ESJ and its stochastic version ESJ-S, and the variance-reduced MRBO
and VRBO (Yang, Ji, Liang 2021), each a frozen config plus a step function.

Every step runs N inner steps on g from :math:`y_0` (the previous step's :math:`y_N` when warm-started, else the
problem's ``y0``), forms a hypergradient estimate :math:`\\hat\\nabla\\Phi(x_k)` and moves
:math:`x_{k+1}=x_k-\\beta\\hat\\nabla\\Phi(x_k)` (Ji, Yang, Liang 2021, THEORY.md §10; Sow, Ji, Liang 2021, §11).
MRBO and VRBO instead carry recursive estimates of the hypergradient and of :math:`\\nabla_yg` from step to step
(see their classes).
The Trace measures :math:`\\|\\nabla\\Phi(x_k)\\|` with the problem's exact ``hypergradient`` oracle (else the
engine's ``"exact"`` Newton solve, labelled an estimate), :math:`\\Phi(x_k)` as the training loss (the problem's
``extra["phi"]``, else :math:`f(x_k,y_k)`), and ``extra["test_loss"]`` at the inner iterate where the problem has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch.func import grad, jvp, vjp, vmap

from ..hypergrad import linsolve
from ..hypergrad.bilevel import hypergradient
from ..theory import stochastic_bilevel as _sb
from ..tree import flatten, tree_add, tree_dot, tree_map, tree_sub, unflatten
from ..types import InvalidTypeError, OracleCount, Params, check_choice, check_int
from .base import Metrics, StepInfo
from .meta import check_step
from .sources import BilevelSource

Fn = Callable[[Params, Params], torch.Tensor]


def _detach(tree: Params) -> Params:
    return tree_map(torch.detach, tree)


# ------------------------------------------------------------------------------------------------ estimators
def aid_hypergradient(f: Fn, g: Fn, x: Params, y0: Params, *, N: int, alpha, Q: int, linear_solver: str = "cg",
                      eta=None, v0: Params | None = None):
    """AID hypergradient with an optional warm start of the linear-system solution (AID-BiO, Ji et al. 2021).

    :math:`y_N` = N GD steps on :math:`g(x,\\cdot)` from :math:`y_0`; v from Q CG steps on
    :math:`\\nabla^2_yg(x,y_N)v=\\nabla_yf(x,y_N)` started at ``v0`` (zero if None), or the Neumann series with terms
    0..Q and step eta (default alpha; ``v0`` unused); :math:`\\hat g=\\nabla_xf(x,y_N)-\\nabla_x\\nabla_yg(x,y_N)v`
    (THEORY.md §10). Returns ``(hg, y_N, v, OracleCount)``: grad = N + 1, hvp = Q (+ 1 for a CG warm start's
    initial residual), jvp = 1. With ``v0=None`` it equals ``hypergradient(method="aid-cg" / "aid-neumann")``.
    """
    check_choice("linear_solver", linear_solver, ("cg", "neumann"))
    Gy = grad(g, argnums=1)
    y = y0
    for _ in range(N):
        y = tree_add(y, Gy(x, y), -alpha)
    y = _detach(y)
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)

    def hvp(v):
        return jvp(lambda yy: Gy(x, yy), (y,), (v,))[1]

    if linear_solver == "cg":
        v, _ = linsolve.cg(hvp, gyf, Q, x0=v0)
        n_hvp = Q + (0 if v0 is None else 1)
    else:
        v = linsolve.neumann(hvp, gyf, Q, alpha if eta is None else eta)
        n_hvp = Q
    _, pull = vjp(lambda xx: Gy(xx, y), x)
    (mixed,) = pull(v)
    return tree_sub(gxf, mixed), y, _detach(v), OracleCount(grad=N + 1, hvp=n_hvp, jvp=1)


def stocbio_hypergradient(F_out: Fn, G_jac: Fn, G_hess: Sequence[Fn], x: Params, y: Params, eta,
                          variant: str = "paper"):
    """stocBiO's hypergradient estimate at (x, y) from minibatch objectives (Ji, Yang, Liang 2021; THEORY.md §10).

    ``F_out`` = :math:`F(\\cdot;\\mathcal D_F)`, ``G_jac`` = :math:`G(\\cdot;\\mathcal D_G)`, ``G_hess`` = Q minibatch
    objectives :math:`G(\\cdot;\\mathcal B_j)`, j = 1..Q. With :math:`v_0=\\nabla_yF(x,y;\\mathcal D_F)` and
    :math:`\\hat H_j=\\nabla^2_yG(x,y;\\mathcal B_j)`:

    - ``"paper"``: :math:`v_Q=\\eta\\sum_{q=-1}^{Q-1}\\prod_{j=Q-q}^{Q}(I-\\eta\\hat H_j)v_0` (the q = -1 term is
      :math:`\\eta v_0`), so with independent batches :math:`\\mathbb Ev_Q=\\eta\\sum_{k=0}^{Q}(I-\\eta H)^kv_0
      =(I-(I-\\eta H)^{Q+1})H^{-1}v_0` (bias :math:`-(I-\\eta H)^{Q+1}H^{-1}v_0`, THEORY.md §1.3, exact);
    - ``"code"``: what the authors' code returns (JunjieYang97/stocBiO ``stocBiO.py``): one batch
      :math:`\\hat H=\\hat H_1` for all products and
      :math:`v_Q=\\eta(I-\\eta\\hat H)^Qv_0+\\sum_{q=1}^{Q}(I-\\eta\\hat H)^qv_0`
      (no eta on the sum, no q = 0 term): a different, generally much larger vector.

    :math:`\\hat\\nabla\\Phi=\\nabla_xF(x,y;\\mathcal D_F)-\\nabla_x\\nabla_yG(x,y;\\mathcal D_G)v_Q`. Returns
    ``(hg, v_Q, OracleCount)``: grad = 1, hvp = Q, jvp = 1.
    """
    check_choice("variant", variant, ("paper", "code"))
    Q = len(G_hess)
    gxF, v0 = grad(F_out, argnums=(0, 1))(x, y)

    def hvp(G, v):
        return jvp(lambda yy: grad(G, argnums=1)(x, yy), (y,), (v,))[1]

    r = v0
    if variant == "paper":
        acc = v0
        for G in reversed(list(G_hess)):  # apply (I - eta H_Q) first, (I - eta H_1) last
            r = tree_add(r, hvp(G, r), -eta)
            acc = tree_add(acc, r)
        v = tree_map(lambda t: eta * t, acc)
    else:
        acc = tree_map(torch.zeros_like, v0)
        for _ in range(Q):
            r = tree_add(r, hvp(G_hess[0], r), -eta)
            acc = tree_add(acc, r)
        v = tree_add(acc, r, eta)
    _, pull = vjp(lambda xx: grad(G_jac, argnums=1)(xx, y), x)
    (mixed,) = pull(v)
    return tree_sub(gxF, mixed), v, OracleCount(grad=1, hvp=Q, jvp=1)


# ------------------------------------------------------------------------------------------------ state
@dataclass(frozen=True)
class BilevelState:
    """Outer variable ``x``, the inner iterate ``y`` (warm start), and ``v`` (AID-BiO's warm-started solution)."""

    x: Params
    y: Params
    v: Params | None = None


# ------------------------------------------------------------------------------------------------ solvers
@dataclass(frozen=True)
class _BilevelSolver:
    """Shared settings and bookkeeping: inner step alpha, outer step beta, N inner steps, warm start of y."""

    alpha: Any = 0.1
    beta: Any = 0.1
    N: int = 10
    warm_start: bool = True

    name: ClassVar[str] = ""

    def __post_init__(self):
        check_step("alpha", self.alpha)
        check_step("beta", self.beta)
        check_int("N", self.N, minimum=0)
        if not isinstance(self.warm_start, bool):
            raise InvalidTypeError(f"warm_start must be a bool, got {self.warm_start!r}")

    @property
    def method(self) -> str:
        return self.name

    # -- what the loop calls
    def source(self, problem: Any, seed: int, eval_tasks: int) -> BilevelSource:
        return BilevelSource(problem, seed)

    def init(self, source: BilevelSource, seed: int) -> BilevelState:
        return BilevelState(x=source.problem.x0, y=source.problem.y0)

    def params(self, state: BilevelState) -> Params:
        return state.x

    def step_sizes(self, state: BilevelState) -> tuple[float, float]:
        return float(self.alpha), float(self.beta)

    def metrics(self, state: BilevelState, source: BilevelSource, iteration: int) -> Metrics:
        p = source.problem
        if p.hypergradient is not None:
            g, kind = p.hypergradient(state.x), "exact"
        else:
            g, _ = hypergradient(p.f, p.g, state.x, state.y, method="exact", inner_steps=0, inner_lr=1.0)
            kind = "estimate"
        phi = p.extra.get("phi")
        train = phi(state.x) if phi is not None else p.f(state.x, state.y)
        test_fn = p.extra.get("test_loss")
        test = float(test_fn(state.y)) if test_fn is not None else math.nan
        return Metrics(g, kind, float(train), test)

    def _y0(self, state: BilevelState, source: BilevelSource) -> Params:
        return state.y if self.warm_start else source.problem.y0

    def _move(self, state: BilevelState, hg: Params, y: Params, oracle: OracleCount, v: Params | None = None):
        x = _detach(tree_add(state.x, hg, -self.beta))
        return BilevelState(x=x, y=_detach(y), v=v), StepInfo(_detach(hg), oracle)


@dataclass(frozen=True)
class AIDBiO(_BilevelSolver):
    """AID-BiO (Ji, Yang, Liang 2021, THEORY.md §10): N inner GD steps (step alpha) from the previous
    :math:`y_N` (``warm_start``), Q CG steps on :math:`\\nabla^2_yg\\,v=\\nabla_yf` warm-started from the previous v
    (or the Neumann series with step eta, ``linear_solver="neumann"``), :math:`x\\leftarrow x-\\beta\\hat g`
    (:func:`aid_hypergradient`). Theory: N = Theta(kappa), Q = Theta(sqrt kappa), beta ~ 1/L_Phi."""

    Q: int = 10
    linear_solver: str = "cg"
    eta: Any = None

    name: ClassVar[str] = "aid-bio"

    def __post_init__(self):
        super().__post_init__()
        if self.eta is not None:
            check_step("eta", self.eta)
        check_int("Q", self.Q, minimum=0)
        check_choice("linear_solver", self.linear_solver, ("cg", "neumann"))

    @property
    def method(self) -> str:
        return "aid-bio" if self.linear_solver == "cg" else "aid-bio-neumann"

    def step(self, state: BilevelState, source: BilevelSource, gen: torch.Generator):
        p = source.problem
        v0 = state.v if (self.warm_start and self.linear_solver == "cg") else None
        hg, y, v, oracle = aid_hypergradient(p.f, p.g, state.x, self._y0(state, source), N=self.N,
                                             alpha=self.alpha, Q=self.Q, linear_solver=self.linear_solver,
                                             eta=self.eta, v0=v0)
        return self._move(state, hg, y, oracle, v)


@dataclass(frozen=True)
class AIDBiONeumann(AIDBiO):
    """AID-BiO with the Neumann series (terms 0..Q, step eta, default alpha) instead of CG; y warm-started."""

    linear_solver: str = "neumann"

    name: ClassVar[str] = "aid-bio-neumann"


@dataclass(frozen=True)
class ITDBiO(_BilevelSolver):
    """ITD-BiO (Ji, Yang, Liang 2021, THEORY.md §10): :math:`\\hat g=\\partial f(x,y_N(x))/\\partial x` by reverse
    mode through the N inner steps (``hypergradient(method="itd")``), then :math:`x\\leftarrow x-\\beta\\hat g`.
    ``warm_start=False`` (default) restarts every inner run at the problem's y0; its error then has a floor
    :math:`\\propto q^N` that warm starts do not remove (THEORY.md §14 item 23)."""

    warm_start: bool = False

    name: ClassVar[str] = "itd-bio"

    def step(self, state, source, gen):
        p = source.problem
        hg, info = hypergradient(p.f, p.g, state.x, self._y0(state, source), method="itd", inner_steps=self.N,
                                 inner_lr=self.alpha)
        return self._move(state, hg, info.inner, info.oracle)


@dataclass(frozen=True)
class ESJ(_BilevelSolver):
    """ESJ (Sow, Ji, Liang 2021, THEORY.md §11): Hessian-free; the response Jacobian of the N-step inner run is
    estimated by forward differences along Q random directions (``hypergradient(method="esj")``; Gaussian, or
    unit-sphere scaled by dim x with ``sphere=True``), :math:`x\\leftarrow x-\\beta\\hat g`. Both inner runs restart
    from the previous :math:`y_N` (``warm_start=True``, as the authors' code does). Directions come from the run's
    generator. Costs grad = (Q + 1)N + 1 per step."""

    Q: int = 1
    delta: float = 1e-3
    sphere: bool = False

    name: ClassVar[str] = "esj"

    def __post_init__(self):
        super().__post_init__()
        check_int("Q", self.Q, minimum=1)
        check_step("delta", self.delta)
        if not isinstance(self.sphere, bool):
            raise InvalidTypeError(f"sphere must be a bool, got {self.sphere!r}")

    def step(self, state, source, gen):
        p = source.problem
        hg, info = hypergradient(p.f, p.g, state.x, self._y0(state, source), method="esj", inner_steps=self.N,
                                 inner_lr=self.alpha, directions=self.Q, delta=self.delta, seed=gen,
                                 sphere=self.sphere)
        return self._move(state, hg, info.inner, info.oracle)


@dataclass(frozen=True)
class StocBiO(_BilevelSolver):
    """stocBiO (Ji, Yang, Liang 2021, THEORY.md §10): stochastic bilevel optimisation with minibatches.

    Per step: N SGD steps :math:`y\\leftarrow y-\\alpha\\nabla_yG(x,y;\\mathcal S_t)` with fresh batches of S
    samples, warm-started from the previous y; then :func:`stocbio_hypergradient` with an outer batch of D samples
    for :math:`\\nabla F`, another of D for the mixed derivative, and Q independent Hessian batches of ``D_H``
    samples (``variant="paper"``: the paper's formula; ``"code"``: the authors' implementation, one Hessian batch
    and a different sum, see :func:`stocbio_hypergradient`); :math:`x\\leftarrow x-\\beta\\hat g`. eta: Neumann
    step (default alpha). Samples come from the problem's :class:`~.sources.StochasticBilevel` (a plain problem gets
    noise-free draws, or minibatches for HyperCleaning). Each minibatch oracle counts one call: grad = N + 1,
    hvp = Q, jvp = 1 per step (multiply by the batch sizes for per-sample counts).
    """

    Q: int = 10
    eta: Any = None
    S: int = 32
    D: int = 32
    D_H: int = 32
    variant: str = "paper"

    name: ClassVar[str] = "stocbio"

    def __post_init__(self):
        super().__post_init__()
        check_int("Q", self.Q, minimum=0)
        if self.eta is not None:
            check_step("eta", self.eta)
        for n in ("S", "D", "D_H"):
            check_int(n, getattr(self, n), minimum=1)
        check_choice("variant", self.variant, ("paper", "code"))

    def step(self, state, source, gen):
        x = state.x
        y = self._y0(state, source)
        for _ in range(self.N):
            G = source.sample_g(self.S, gen)
            y = tree_add(y, grad(G, argnums=1)(x, y), -self.alpha)
        y = _detach(y)
        F_out = source.sample_f(self.D, gen)
        G_jac = source.sample_g(self.D, gen)
        if self.variant == "paper":
            G_hess = [source.sample_g(self.D_H, gen) for _ in range(self.Q)]
        else:
            G_hess = [source.sample_g(self.D_H, gen)] * self.Q
        eta = self.alpha if self.eta is None else self.eta
        hg, _, oracle = stocbio_hypergradient(F_out, G_jac, G_hess, x, y, eta, self.variant)
        return self._move(state, hg, y, oracle + OracleCount(grad=self.N))


# ------------------------------------------------------------------------------- recursive stochastic solvers
@dataclass(frozen=True)
class RecursiveState:
    """State of MRBO / VRBO: the iterate (x, y), the recursive estimates ``v`` (of the hypergradient) and ``u`` (of
    :math:`\\nabla_yg`) at the point they track, the step count ``k``, and MRBO's previous iterate ``x_prev``,
    ``y_prev`` (where its correction re-evaluates the new batches)."""

    x: Params
    y: Params
    v: Params | None = None
    u: Params | None = None
    k: int = 0
    x_prev: Params | None = None
    y_prev: Params | None = None


@dataclass(frozen=True)
class _NeumannBatches:
    """One draw of the minibatches of a stocBiO-type estimate: F batch, mixed-derivative batch, Q Hessian batches,
    and the batch of the inner gradient; :meth:`estimate` evaluates them at any (x, y), so that a recursive
    estimator can evaluate the same samples at two points."""

    F_out: Fn
    G_jac: Fn
    G_hess: tuple
    G_inner: Fn

    @staticmethod
    def draw(source: BilevelSource, gen: torch.Generator, D: int, D_H: int, S: int, Q: int) -> "_NeumannBatches":
        F_out = source.sample_f(D, gen)
        G_jac = source.sample_g(D, gen)
        G_hess = tuple(source.sample_g(D_H, gen) for _ in range(Q))
        return _NeumannBatches(F_out, G_jac, G_hess, source.sample_g(S, gen))

    def estimate(self, x: Params, y: Params, eta) -> tuple[Params, Params]:
        """(stocBiO's hypergradient estimate, the inner gradient estimate) at (x, y): grad 2, hvp Q, jvp 1."""
        hg, _, _ = stocbio_hypergradient(self.F_out, self.G_jac, self.G_hess, x, y, eta)
        return _detach(hg), _detach(grad(self.G_inner, argnums=1)(x, y))


def _one_estimate(Q: int) -> OracleCount:
    return OracleCount(grad=2, hvp=Q, jvp=1)


def _recursive(new: Params, weight, old_est: Params, new_at_old: Params) -> Params:
    """:math:`\\text{new}+(1-w)(\\text{old\\_est}-\\text{new\\_at\\_old})` (STORM with w in [0, 1]; SARAH: w = 0)."""
    return tree_add(new, tree_sub(old_est, new_at_old), 1.0 - weight)


@dataclass(frozen=True)
class _RecursiveBilevel:
    """Shared settings of MRBO and VRBO: inner step ``alpha``, outer step ``beta``, Neumann length ``Q`` and step
    ``eta`` (default alpha) of the stocBiO estimator they both use. The loop protocol (``source``, ``params``,
    ``metrics``) is the other bilevel solvers'; y is always carried from step to step (no warm-start switch)."""

    alpha: Any = 0.1
    beta: Any = 0.1
    Q: int = 10
    eta: Any = None

    name: ClassVar[str] = ""

    def __post_init__(self):
        check_step("alpha", self.alpha)
        check_step("beta", self.beta)
        check_int("Q", self.Q, minimum=0)
        if self.eta is not None:
            check_step("eta", self.eta)

    @property
    def method(self) -> str:
        return self.name

    @property
    def neumann_step(self):
        return self.alpha if self.eta is None else self.eta

    source = _BilevelSolver.source
    metrics = _BilevelSolver.metrics

    def init(self, source: BilevelSource, seed: int) -> RecursiveState:
        return RecursiveState(x=source.problem.x0, y=source.problem.y0)

    def params(self, state: RecursiveState) -> Params:
        return state.x


@dataclass(frozen=True)
class MRBO(_RecursiveBilevel):
    """MRBO (Yang, Ji, Liang, NeurIPS 2021, arXiv 2106.04692, Algorithm 1): single loop, STORM-type recursive
    momentum on both the hypergradient and the inner gradient.

    Step k draws fresh batches :math:`\\bar{\\mathcal B}_k` (D for F, D for the mixed derivative, Q Hessian batches
    of D_H: stocBiO's Neumann estimator :math:`\\hat\\nabla\\Phi`, :func:`stocbio_hypergradient`) and
    :math:`\\mathcal B_k` (S samples of G), and forms, with the same batches at the current and previous iterates,

    .. math:: v_k=\\hat\\nabla\\Phi(x_k,y_k;\\bar{\\mathcal B}_k)+(1-c_1\\eta_{k-1}^2)
              (v_{k-1}-\\hat\\nabla\\Phi(x_{k-1},y_{k-1};\\bar{\\mathcal B}_k)),

    .. math:: u_k=\\nabla_yG(x_k,y_k;\\mathcal B_k)+(1-c_2\\eta_{k-1}^2)
              (u_{k-1}-\\nabla_yG(x_{k-1},y_{k-1};\\mathcal B_k))

    (:math:`v_0,u_0` the plain estimates), then :math:`x_{k+1}=x_k-\\beta\\eta_kv_k`,
    :math:`y_{k+1}=y_k-\\alpha\\eta_ku_k` with :math:`\\eta_k=t/(m+k)^{1/3}` (the schedule of the paper's Theorem 1;
    paper letters: outer step beta, inner step lambda = our alpha). ``step_sizes`` reports
    :math:`(\\alpha\\eta_k,\\beta\\eta_k)`. Requires :math:`c_i\\eta_0^2\\le1` (momentum weights in [0, 1]).
    With noise-free samples :math:`v_k=\\hat\\nabla\\Phi(x_k,y_k)` and :math:`u_k=\\nabla_yg(x_k,y_k)` exactly, so
    MRBO is simultaneous gradient descent on (x, y) with steps :math:`\\beta\\eta_k`, :math:`\\alpha\\eta_k`.
    Oracle calls (one per minibatch evaluation): step 0 grad 2, hvp Q, jvp 1; later steps twice that. Samples:
    :func:`convtheory.theory.stochastic_bilevel.mrbo_samples_per_step`.
    """

    S: int = 32
    D: int = 32
    D_H: int = 32
    t: float = 1.0
    m: float = 2.0
    c1: float = 1.0
    c2: float = 1.0

    name: ClassVar[str] = "mrbo"

    def __post_init__(self):
        super().__post_init__()
        for n in ("S", "D", "D_H"):
            check_int(n, getattr(self, n), minimum=1)
        for n in ("c1", "c2"):
            _sb.mrbo_momentum(1, getattr(self, n), self.t, self.m, n)  # validates t, m, c and c * eta_0^2 <= 1

    def schedule(self, k: int) -> float:
        """:math:`\\eta_k=t/(m+k)^{1/3}`."""
        return _sb.mrbo_eta(k, self.t, self.m)

    def step_sizes(self, state: RecursiveState) -> tuple[float, float]:
        e = self.schedule(state.k)
        return float(self.alpha) * e, float(self.beta) * e

    def step(self, state: RecursiveState, source: BilevelSource, gen: torch.Generator):
        k, x, y = state.k, state.x, state.y
        batches = _NeumannBatches.draw(source, gen, self.D, self.D_H, self.S, self.Q)
        h, g = batches.estimate(x, y, self.neumann_step)
        oracle = _one_estimate(self.Q)
        if k == 0:
            v, u = h, g
        else:
            h_old, g_old = batches.estimate(state.x_prev, state.y_prev, self.neumann_step)
            e2 = self.schedule(k - 1) ** 2
            v = _recursive(h, self.c1 * e2, state.v, h_old)
            u = _recursive(g, self.c2 * e2, state.u, g_old)
            oracle = oracle * 2
        e = self.schedule(k)
        x_new = _detach(tree_add(x, v, -self.beta * e))
        y_new = _detach(tree_add(y, u, -self.alpha * e))
        new = RecursiveState(x=x_new, y=y_new, v=v, u=u, k=k + 1, x_prev=x, y_prev=y)
        return new, StepInfo(v, oracle)


@dataclass(frozen=True)
class VRBO(_RecursiveBilevel):
    """VRBO (Yang, Ji, Liang, NeurIPS 2021, arXiv 2106.04692, Algorithm 2): SARAH/SPIDER-type recursive estimates
    with a large batch every q outer steps and small batches in a nested inner loop.

    Outer step k: if k mod q = 0, :math:`v_k=\\hat\\nabla\\Phi(x_k,y_k;\\mathcal S_1)` and
    :math:`u_k=\\nabla_yG(x_k,y_k;\\mathcal S_1)` on fresh batches of S1 samples for every oracle (stocBiO's Neumann
    estimator, Q Hessian batches); otherwise the estimates the previous step ended with. Then
    :math:`x_{k+1}=x_k-\\beta v_k`; the estimates follow x with one correction on a fresh small batch
    :math:`\\mathcal S_2` (S2 samples per oracle) evaluated at both points,
    :math:`v\\leftarrow v+\\hat\\nabla\\Phi(x_{k+1},y_k;\\mathcal S_2)-\\hat\\nabla\\Phi(x_k,y_k;\\mathcal S_2)`
    (u alike);
    then N inner steps :math:`y_{t+1}=y_t-\\alpha u_t`, each followed by the correction
    :math:`v\\leftarrow v+\\hat\\nabla\\Phi(x_{k+1},y_{t+1};\\mathcal S_2)
    -\\hat\\nabla\\Phi(x_{k+1},y_t;\\mathcal S_2)`
    (u alike, fresh S2 each time); :math:`y_{k+1}=y_N`. Every correction keeps (v, u) estimates *at the current
    point* (the authors' code takes one extra y step after the last correction; we stop at the point the estimates
    track). With noise-free samples :math:`v_k=\\hat\\nabla\\Phi(x_k,y_k)` and :math:`u=\\nabla_yg` exactly: outer
    GD with N inner GD steps per step, warm-started. Oracle calls per step (one per minibatch evaluation):
    grad 4(N + 1) + 2r, hvp Q(2(N + 1) + r), jvp 2(N + 1) + r, r = [k mod q = 0]. Samples:
    :func:`convtheory.theory.stochastic_bilevel.vrbo_samples_per_step`.
    """

    N: int = 3
    q: int = 10
    S1: int = 256
    S2: int = 16

    name: ClassVar[str] = "vrbo"

    def __post_init__(self):
        super().__post_init__()
        check_int("N", self.N, minimum=0)
        check_int("q", self.q, minimum=1)
        check_int("S1", self.S1, minimum=1)
        check_int("S2", self.S2, minimum=1)

    def step_sizes(self, state: RecursiveState) -> tuple[float, float]:
        return float(self.alpha), float(self.beta)

    def step(self, state: RecursiveState, source: BilevelSource, gen: torch.Generator):
        k, x, y = state.k, state.x, state.y
        eta, Q, S2 = self.neumann_step, self.Q, self.S2
        one = _one_estimate(Q)
        oracle = OracleCount()
        if k % self.q == 0:
            v, u = _NeumannBatches.draw(source, gen, self.S1, self.S1, self.S1, Q).estimate(x, y, eta)
            oracle = oracle + one
        else:
            v, u = state.v, state.u
        direction = v
        x_new = _detach(tree_add(x, v, -self.beta))
        b = _NeumannBatches.draw(source, gen, S2, S2, S2, Q)
        (h1, g1), (h0, g0) = b.estimate(x_new, y, eta), b.estimate(x, y, eta)
        v, u = _recursive(h1, 0.0, v, h0), _recursive(g1, 0.0, u, g0)
        for _ in range(self.N):
            y_new = _detach(tree_add(y, u, -self.alpha))
            b = _NeumannBatches.draw(source, gen, S2, S2, S2, Q)
            (h1, g1), (h0, g0) = b.estimate(x_new, y_new, eta), b.estimate(x_new, y, eta)
            v, u = _recursive(h1, 0.0, v, h0), _recursive(g1, 0.0, u, g0)
            y = y_new
        oracle = oracle + one * (2 * (self.N + 1))
        return RecursiveState(x=x_new, y=y, v=v, u=u, k=k + 1), StepInfo(direction, oracle)


# ------------------------------------------------------------------------------------------------ ESJ-S
def esjs_hypergradient(F_out: Fn, G_inner: Sequence[Fn], x: Params, y0: Params, alpha, U: torch.Tensor, delta,
                       scale: float = 1.0):
    """Stochastic ES-Jacobian hypergradient (ESJ-S, Sow, Ji, Liang 2021; THEORY.md §11, §1.3).

    :math:`y_N(x)`: N steps :math:`y_{t+1}=y_t-\\alpha\\nabla_yG(x,y_t;\\mathcal S_t)` from y0 with the minibatch
    objectives ``G_inner`` (one per step); the Q perturbed runs at :math:`x+\\delta u_j` (rows of ``U``) use the
    *same* batches, so on a quadratic g the forward difference is :math:`\\hat J_Nu_j` exactly, with
    :math:`\\hat J_N` the Jacobian of the sampled run. With :math:`v=\\nabla_yF(x,y_N;\\mathcal D_F)`:
    :math:`\\hat g=\\nabla_xF(x,y_N;\\mathcal D_F)+\\frac{s}{Q}\\sum_j\\langle(y_N(x+\\delta u_j)-y_N(x))/\\delta,v
    \\rangle u_j` (s = ``scale``: p for unit-sphere directions, else 1). Returns ``(hg, y_N)``; cost grad =
    (Q + 1) N + 1. With G_inner all equal to g and F_out = f it is ``hypergradient(method="esj")`` with these U.
    """
    Q = U.shape[0]

    def run(xx):
        yy = y0
        for G in G_inner:
            yy = tree_add(yy, grad(G, argnums=1)(xx, yy), -alpha)
        return yy

    y = run(x)
    X = vmap(lambda row: unflatten(row, x))(flatten(x) + delta * U)
    Y = vmap(run)(X)
    Dq = tree_map(lambda a, b: (a - b) / delta, Y, y)
    y = _detach(y)
    gxf, gyf = grad(F_out, argnums=(0, 1))(x, y)
    coef = vmap(tree_dot, in_dims=(0, None))(Dq, gyf)
    jtv = (scale / Q) * (coef @ U)
    return unflatten(flatten(gxf) + jtv, x), y


@dataclass(frozen=True)
class StochasticESJ(ESJ):
    """ESJ-S (Sow, Ji, Liang 2021, THEORY.md §11: the stochastic version for large data sets): ESJ whose inner
    steps use fresh minibatches of S samples of G (shared by the base and the Q perturbed runs) and whose outer
    gradient :math:`\\nabla F` uses a minibatch of D samples (:func:`esjs_hypergradient`); directions drawn from the
    run's generator after the batches, as :class:`ESJ` draws them. With noise-free samples it is :class:`ESJ`.
    Oracle calls per step: grad = (Q + 1) N + 1 (minibatch evaluations). Samples:
    :func:`convtheory.theory.stochastic_bilevel.esjs_samples_per_step`."""

    S: int = 32
    D: int = 32

    name: ClassVar[str] = "esj-s"

    def __post_init__(self):
        super().__post_init__()
        check_int("S", self.S, minimum=1)
        check_int("D", self.D, minimum=1)

    def step(self, state, source, gen):
        x = state.x
        G_inner = [source.sample_g(self.S, gen) for _ in range(self.N)]
        F_out = source.sample_f(self.D, gen)
        flat = flatten(x)
        U = torch.randn(self.Q, flat.numel(), generator=gen, dtype=flat.dtype).to(flat.device)
        if self.sphere:
            U = U / torch.linalg.vector_norm(U, dim=1, keepdim=True)
        scale = float(flat.numel()) if self.sphere else 1.0
        hg, y = esjs_hypergradient(F_out, G_inner, x, self._y0(state, source), self.alpha, U, self.delta, scale)
        return self._move(state, hg, y, OracleCount(grad=(self.Q + 1) * self.N + 1))


def samples_per_step(solver: Any, k: int) -> int:
    """Per-sample oracle evaluations step k of a stochastic bilevel solver spends (stocBiO, MRBO, VRBO, ESJ-S):
    a minibatch of n samples evaluated at one point counts n (THEORY accounting in
    :mod:`convtheory.theory.stochastic_bilevel`, exact)."""
    sb = _sb
    if isinstance(solver, StocBiO):
        return sb.stocbio_samples_per_step(solver.N, solver.Q, solver.S, solver.D, solver.D_H)
    if isinstance(solver, MRBO):
        return sb.mrbo_samples_per_step(k, solver.Q, solver.S, solver.D, solver.D_H)
    if isinstance(solver, VRBO):
        return sb.vrbo_samples_per_step(k, solver.N, solver.Q, solver.q, solver.S1, solver.S2)
    if isinstance(solver, StochasticESJ):
        return sb.esjs_samples_per_step(solver.N, solver.Q, solver.S, solver.D)
    raise InvalidTypeError(f"samples_per_step needs a stocbio, mrbo, vrbo or esj-s config, "
                           f"got {type(solver).__name__}")
