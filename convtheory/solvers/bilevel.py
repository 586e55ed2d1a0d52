"""Bilevel solvers for :math:`\\min_x\\Phi(x)=f(x,y^*(x))`, :math:`y^*(x)=\\arg\\min_yg(x,y)`: AID-BiO (CG or
Neumann), ITD-BiO, stocBiO and the Hessian-free ESJ, each a frozen config plus a step function.

Every step runs N inner steps on g from :math:`y_0` (the previous step's :math:`y_N` when warm-started, else the
problem's ``y0``), forms a hypergradient estimate :math:`\\hat\\nabla\\Phi(x_k)` and moves
:math:`x_{k+1}=x_k-\\beta\\hat\\nabla\\Phi(x_k)` (Ji, Yang, Liang 2021, THEORY.md §10; Sow, Ji, Liang 2021, §11).
The Trace measures :math:`\\|\\nabla\\Phi(x_k)\\|` with the problem's exact ``hypergradient`` oracle (else the
engine's ``"exact"`` Newton solve, labelled an estimate), :math:`\\Phi(x_k)` as the training loss (the problem's
``extra["phi"]``, else :math:`f(x_k,y_k)`), and ``extra["test_loss"]`` at the inner iterate where the problem has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch.func import grad, jvp, vjp

from ..hypergrad import linsolve
from ..hypergrad.bilevel import hypergradient
from ..tree import tree_add, tree_map, tree_sub
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
