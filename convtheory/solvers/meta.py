"""Meta-learning solvers: MAML and its first-order, Hessian-free, Reptile, ANIL and iMAML variants, Meta-SGD and
Alpha-MAML, each a frozen config plus a step function run by :func:`convtheory.solvers.run`.

Shared notation: theta (meta-parameters), alpha (inner step), beta (meta step), N (inner steps), B tasks per step
(``sampling``, :class:`~.sources.Sampling`). Every step draws a task batch, computes a meta-gradient estimate
:math:`\\hat G_t` with :func:`convtheory.hypergrad.meta_gradient` (``compile`` = its compile policy, "never" by
default: compile time would dominate short theory runs) and moves :math:`\\theta_{t+1}=\\theta_t-\\beta\\hat G_t`
(Reptile, Meta-SGD and Alpha-MAML differ as their docstrings say).

The objective the loop measures (``Trace.grad_norm``) is the N-step MAML meta-objective at the solver's alpha
(ANIL: head-only adaptation; iMAML: the proximal objective with its exact inner solution; Meta-SGD: the objective
in (theta, alpha)). On quadratic families it is a closed form
(:func:`convtheory.problems.quadratic.exact_meta_gradient`, iMAML's in :func:`imaml_exact`), elsewhere exact
second-order differentiation over the tasks (:func:`objective_value_and_grad`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch.func import grad, vmap

from ..hypergrad.meta import COMPILE_POLICIES, meta_gradient
from ..problems.base import MetaTasks
from ..problems.quadratic import exact_meta_gradient, exact_meta_objective
from ..tree import leaves, tree_add, tree_map
from ..types import (
    InvalidArgumentError,
    InvalidTypeError,
    LossFn,
    OracleCount,
    Params,
    check_choice,
    check_int,
    check_positive,
)
from .base import Metrics, StepInfo
from .sources import MetaSource, Sampling

_QUAD_KEYS = ("A", "c", "C", "e", "e0")


# ---------------------------------------------------------------------------------------------- validation
def check_step(name: str, value: Any, *, allow_zero: bool = False) -> Any:
    """A step size: a positive float or a one-element tensor (returned unchanged)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InvalidArgumentError(f"{name} must be a scalar; got a tensor of shape {tuple(value.shape)}")
        check_positive(name, float(value), allow_zero=allow_zero)
        return value
    check_positive(name, value, allow_zero=allow_zero)
    return value


# ---------------------------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class MetaObjective:
    """The meta-objective a solver targets: ``method`` ("maml", "anil", "imaml" or "metasgd"), the inner step
    ``alpha`` (Meta-SGD: a tree like theta), N inner steps, iMAML's ``lam`` and CG steps, ANIL's adapted names."""

    method: str
    alpha: Any
    N: int
    lam: float | None = None
    cg_steps: int | None = None
    inner_params: tuple[str, ...] | None = None


def _is_quadratic(tasks: MetaTasks, params: Any) -> bool:
    return isinstance(params, torch.Tensor) and all(k in tasks.exact for k in _QUAD_KEYS)


def imaml_exact(theta: torch.Tensor, tasks: MetaTasks, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact iMAML objective and gradient on quadratic tasks (THEORY.md §1.4 and §8).

    Support loss :math:`\\tfrac12w^\\top A_iw-c_i^\\top w`, query loss :math:`\\tfrac12w^\\top C_iw-e_i^\\top w+e^0_i`;
    the proximal inner solution is :math:`\\phi^*_i=(A_i+\\lambda I)^{-1}(c_i+\\lambda\\theta)`, so
    :math:`F(\\theta)=\\frac1B\\sum_i\\ell^D_i(\\phi^*_i)` and
    :math:`\\nabla F=\\frac1B\\sum_i\\lambda(A_i+\\lambda I)^{-1}(C_i\\phi^*_i-e_i)` (exact; needs
    :math:`A_i+\\lambda I\\succ0`).
    """
    A, c, C, e, e0 = (tasks.exact[k] for k in _QUAD_KEYS)
    M = A + lam * torch.eye(A.shape[-1], dtype=A.dtype)
    phi = torch.linalg.solve(M, c + lam * theta)
    r = (C @ phi.unsqueeze(-1)).squeeze(-1) - e
    value = (0.5 * (phi * (C @ phi.unsqueeze(-1)).squeeze(-1)).sum(-1) - (e * phi).sum(-1) + e0).mean()
    return value, (lam * torch.linalg.solve(M, r)).mean(0)


def metasgd_gradient(loss: LossFn, query_loss: LossFn, theta: Params, alpha: Params, support, query, N: int):
    """Meta-SGD meta-gradient (Li et al. 2017): N inner steps :math:`w\\leftarrow w-\\alpha\\odot\\nabla\\ell(w;S_i)`
    with a per-parameter step alpha shaped like theta, and the gradient of
    :math:`\\frac1B\\sum_i\\ell^q(w^i_N;D_i)` in both theta and alpha (second order, exact; vmapped over tasks).

    Returns ``((g_theta, g_alpha), value, adapted)``; costs grad = B(N + 1), hvp = BN like MAML.
    """
    def task(th, al, s, q):
        w, g = th, grad(loss)
        for _ in range(N):
            w = tree_map(lambda p, a, d: p - a * d, w, al, g(w, s))
        return query_loss(w, q), w

    def meta(th, al, s, q):
        values, adapted = vmap(task, in_dims=(None, None, 0, 0))(th, al, s, q)
        return values.mean(), (values.mean(), adapted)

    grads, (value, adapted) = grad(meta, argnums=(0, 1), has_aux=True)(theta, alpha, support, query)
    return grads, value, adapted


def objective_value_and_grad(obj: MetaObjective, params: Any, tasks: MetaTasks, need_grad: bool = True):
    """(value, gradient or None, exact) of the meta-objective ``obj`` over the task batch ``tasks`` at ``params``.

    Closed forms on quadratic families (MAML: :func:`~convtheory.problems.quadratic.exact_meta_gradient`;
    iMAML: :func:`imaml_exact`); otherwise exact second-order differentiation through the N inner steps (MAML,
    ANIL, Meta-SGD: exact for the batch) or iMAML's engine with the solver's N and Q (``exact=False``: the inner
    problem and the linear system are solved approximately). ``params`` is theta, or (theta, alpha) for Meta-SGD.
    """
    if obj.method == "maml" and _is_quadratic(tasks, params) and not isinstance(obj.alpha, (tuple, dict)):
        value = exact_meta_objective(params, tasks, obj.alpha, obj.N)
        g = exact_meta_gradient(params, tasks, obj.alpha, obj.N) if need_grad else None
        return float(value), g, True
    if obj.method == "imaml" and _is_quadratic(tasks, params):
        value, g = imaml_exact(params, tasks, obj.lam)
        return float(value), g if need_grad else None, True
    if obj.method == "metasgd":
        theta, alpha = params
        g, value, _ = metasgd_gradient(tasks.loss, tasks.outer_loss, theta, alpha, tasks.support, tasks.query,
                                       obj.N)
        return float(value), g if need_grad else None, True
    names = obj.inner_params
    if obj.method == "anil" and names is None:
        names = tasks.exact.get("inner_params")
    g, info = meta_gradient(tasks.loss, params, tasks.support, tasks.query, method=obj.method,
                            inner_steps=obj.N, inner_lr=obj.alpha, query_loss=tasks.query_loss,
                            inner_params=names, lam=obj.lam, cg_steps=obj.cg_steps, compile="never")
    value = vmap(tasks.outer_loss)(info.inner, tasks.query).mean()
    return float(value), g if need_grad else None, obj.method != "imaml"


# ---------------------------------------------------------------------------------------------- state
@dataclass(frozen=True)
class MetaState:
    """Solver state: meta-parameters ``theta``, step sizes in force ``alpha`` (Meta-SGD: a tree like theta) and
    ``beta``, and ``prev`` (Alpha-MAML: the previous meta-gradient :math:`G_{t-1}`)."""

    theta: Params
    alpha: Any
    beta: Any
    prev: Any = None


# ---------------------------------------------------------------------------------------------- solvers
@dataclass(frozen=True)
class MAML:
    """MAML with N inner steps, second order (Finn et al. 2017; Ji, Yang, Liang 2022, THEORY.md §2, §5).

    Step: draw B tasks, :math:`\\hat G_t=\\frac1B\\sum_i\\prod_{j<N}(I-\\alpha\\nabla^2\\ell^S_i(w^i_j))
    \\nabla\\ell^D_i(w^i_N)`, :math:`\\theta_{t+1}=\\theta_t-\\beta\\hat G_t`. Deterministic (finite-sum, B = M)
    meta-GD on quadratic tasks with :math:`\\beta\\le1/L_{\\rm meta}` converges linearly with factor
    :math:`\\max_j|1-\\beta h_j|` over the meta-Hessian's eigenvalues (THEORY.md §1.2, exact).
    """

    alpha: Any = 0.1
    beta: Any = 0.1
    N: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    compile: str = "never"

    name: ClassVar[str] = "maml"
    engine: ClassVar[str] = "maml"
    #: whether the step's Hessian-vector products can use a separate batch (``sampling.D_H``)
    hessian_batch: ClassVar[bool] = True

    def __post_init__(self):
        check_step("alpha", self.alpha)
        check_step("beta", self.beta)
        check_int("N", self.N, minimum=0)
        if not isinstance(self.sampling, Sampling):
            raise InvalidTypeError(f"sampling must be a Sampling, got {type(self.sampling).__name__}")
        check_choice("compile", self.compile, COMPILE_POLICIES)
        if self.sampling.D_H is not None and not self.hessian_batch:
            raise InvalidArgumentError(
                f"sampling.D_H = {self.sampling.D_H} sets a separate Hessian batch, which {self.name} does not use; "
                "valid: D_H None, or a second-order solver (maml, anil, hfmaml)")

    @property
    def method(self) -> str:
        return self.name

    # -- what the loop calls
    def source(self, problem: Any, seed: int, eval_tasks: int) -> MetaSource:
        return MetaSource(problem, self.sampling, seed, eval_tasks)

    def init(self, source: MetaSource, seed: int) -> MetaState:
        return MetaState(theta=source.init_params(seed), alpha=self.alpha, beta=self.beta)

    def params(self, state: MetaState) -> Any:
        return state.theta

    def step_sizes(self, state: MetaState) -> tuple[float, float]:
        return float(state.alpha), float(state.beta)

    def objective(self, state: MetaState) -> MetaObjective:
        return MetaObjective("maml", state.alpha, self.N)

    def metrics(self, state: MetaState, source: MetaSource, iteration: int) -> Metrics:
        obj, params = self.objective(state), self.params(state)
        tasks, is_objective = source.training_tasks(iteration)
        value, g, exact = objective_value_and_grad(obj, params, tasks)
        test, _, _ = objective_value_and_grad(obj, params, source.test_tasks, need_grad=False)
        return Metrics(g, "exact" if exact and is_objective else "estimate", value, test)

    # -- the algorithm
    def _engine_kwargs(self, tasks: MetaTasks) -> dict:
        return {}

    def direction(self, state: MetaState, tasks: MetaTasks):
        """The meta-gradient estimate on a task batch and the engine's info (Hessian-vector products on the
        tasks' separate Hessian batch when ``sampling.D_H`` drew one)."""
        kwargs = self._engine_kwargs(tasks)
        hessian = getattr(tasks, "hessian", None)
        if hessian is not None and self.hessian_batch:
            kwargs["hessian"] = hessian
        return meta_gradient(tasks.loss, state.theta, tasks.support, tasks.query, method=self.engine,
                             inner_steps=self.N, inner_lr=state.alpha, query_loss=tasks.query_loss,
                             compile=self.compile, **kwargs)

    def step(self, state: MetaState, source: MetaSource, gen: torch.Generator):
        tasks = source.batch(gen)
        g, info = self.direction(state, tasks)
        theta = tree_add(state.theta, g, -state.beta)
        return dataclasses.replace(state, theta=theta), StepInfo(g, info.oracle)


@dataclass(frozen=True)
class FOMAML(MAML):
    """First-order MAML (Finn et al. 2017; Nichol et al. 2018, THEORY.md §3-4): :math:`\\hat G_t=\\frac1B\\sum_i
    \\nabla\\ell^D_i(w^i_N)`, the Jacobian product dropped. On quadratic tasks it converges (small beta) to
    :math:`\\theta^*_{FO}=(\\mathbb E[C_iP_i^N])^{-1}\\mathbb E[C_i(P_i^Na_i-a_i+b_i)]`, where the MAML gradient is
    not zero in general (THEORY.md §14 item 9, exact)."""

    name: ClassVar[str] = "fomaml"
    engine: ClassVar[str] = "fomaml"
    hessian_batch: ClassVar[bool] = False


@dataclass(frozen=True)
class HFMAML(MAML):
    """Hessian-free MAML (Fallah, Mokhtari, Ozdaglar 2020, THEORY.md §4): MAML with every Hessian-vector product
    replaced by the central difference :math:`[\\nabla\\ell(w+\\delta v)-\\nabla\\ell(w-\\delta v)]/(2\\delta)`
    (exact on quadratics for every delta)."""

    delta: float = 1e-4

    name: ClassVar[str] = "hfmaml"
    engine: ClassVar[str] = "hfmaml"

    def __post_init__(self):
        super().__post_init__()
        check_positive("delta", self.delta)

    def _engine_kwargs(self, tasks):
        return {"delta": self.delta}


@dataclass(frozen=True)
class Reptile(MAML):
    """Reptile (Nichol, Achiam, Schulman 2018, THEORY.md §3): N inner GD steps on the support loss, then
    :math:`\\theta\\leftarrow\\theta+\\beta(\\bar w_N-\\theta)` with beta the interpolation step (their epsilon).

    The recorded direction is :math:`\\hat G_t=(\\theta-\\bar w_N)/\\alpha`, so the update is
    :math:`\\theta-\\beta\\alpha\\hat G_t`. Fixed point on quadratics:
    :math:`(\\mathbb E[I-P_i^N])^{-1}\\mathbb E[(I-P_i^N)a_i]` (THEORY.md §14 item 10, exact); the Trace measures
    the MAML objective at (alpha, N), whose gradient does not vanish there.
    """

    name: ClassVar[str] = "reptile"
    engine: ClassVar[str] = "reptile"
    hessian_batch: ClassVar[bool] = False

    def step(self, state, source, gen):
        tasks = source.batch(gen)
        g, info = self.direction(state, tasks)
        theta = tree_add(state.theta, g, -state.beta * state.alpha)
        return dataclasses.replace(state, theta=theta), StepInfo(g, info.oracle)


@dataclass(frozen=True)
class ANIL(MAML):
    """ANIL (Raghu et al. 2020; Ji, Lee, Liang, Poor 2020, THEORY.md §6-7): MAML whose inner loop adapts only the
    head (``inner_params``; None: the family's ``MetaTasks.exact["inner_params"]``), second order through the
    head's steps; one meta step beta for body and head."""

    inner_params: tuple[str, ...] | None = None

    name: ClassVar[str] = "anil"
    engine: ClassVar[str] = "anil"

    def _names(self, tasks: MetaTasks):
        names = self.inner_params if self.inner_params is not None else tasks.exact.get("inner_params")
        if not names:
            raise InvalidArgumentError("ANIL needs inner_params (the head's parameter names): set the config field "
                                       "or use a family whose MetaTasks.exact has 'inner_params'")
        return tuple(names)

    def _engine_kwargs(self, tasks):
        return {"inner_params": self._names(tasks)}

    def objective(self, state):
        return MetaObjective("anil", state.alpha, self.N, inner_params=self.inner_params)


@dataclass(frozen=True)
class IMAML(MAML):
    """iMAML (Rajeswaran et al. 2019, THEORY.md §1.4, §8): N GD steps (step alpha) on the proximal inner problem
    :math:`\\ell^S_i(\\phi)+\\frac\\lambda2\\|\\phi-\\theta\\|^2` from theta, then Q CG steps on
    :math:`(I+\\nabla^2\\ell^S_i(\\phi)/\\lambda)g_i=\\nabla\\ell^D_i(\\phi)`;
    :math:`\\theta\\leftarrow\\theta-\\beta\\bar g`.
    The Trace measures the exact iMAML objective (exact inner solution)."""

    lam: float = 1.0
    Q: int = 10

    name: ClassVar[str] = "imaml"
    engine: ClassVar[str] = "imaml"
    hessian_batch: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        check_positive("lam", self.lam)
        check_int("Q", self.Q, minimum=0)

    def _engine_kwargs(self, tasks):
        return {"lam": self.lam, "cg_steps": self.Q}

    def objective(self, state):
        return MetaObjective("imaml", state.alpha, self.N, lam=self.lam, cg_steps=self.Q)


@dataclass(frozen=True)
class MetaSGD(MAML):
    """Meta-SGD (Li, Zhou, Chen, Li 2017): a learned per-parameter inner step :math:`\\alpha` (a tree like theta,
    initialised to the scalar ``alpha``), inner steps :math:`w\\leftarrow w-\\alpha\\odot\\nabla\\ell^S_i(w)`, and
    both learned by the meta-gradient:
    :math:`(\\theta,\\alpha)\\leftarrow(\\theta,\\alpha)-\\beta\\nabla_{(\\theta,\\alpha)}\\mathcal L`
    (:func:`metasgd_gradient`). The Trace's alpha column is the mean of the per-parameter steps and its gradient
    is the one in (theta, alpha). Per-parameter steps are not constrained to stay positive."""

    name: ClassVar[str] = "metasgd"
    hessian_batch: ClassVar[bool] = False

    def init(self, source, seed):
        theta = source.init_params(seed)
        alpha = tree_map(lambda t: torch.full_like(t, float(self.alpha)), theta)
        return MetaState(theta=theta, alpha=alpha, beta=self.beta)

    def params(self, state):
        return (state.theta, state.alpha)

    def step_sizes(self, state):
        flat = torch.cat([t.reshape(-1) for t in leaves(state.alpha)])
        return float(flat.double().mean()), float(state.beta)

    def objective(self, state):
        return MetaObjective("metasgd", state.alpha, self.N)

    def step(self, state, source, gen):
        tasks = source.batch(gen)
        (g_theta, g_alpha), _, _ = metasgd_gradient(tasks.loss, tasks.outer_loss, state.theta, state.alpha,
                                                    tasks.support, tasks.query, self.N)
        B = tasks.num_tasks
        theta = tree_add(state.theta, g_theta, -state.beta)
        alpha = tree_add(state.alpha, g_alpha, -state.beta)
        oracle = OracleCount(grad=B * (self.N + 1), hvp=B * self.N)
        return dataclasses.replace(state, theta=theta, alpha=alpha), StepInfo((g_theta, g_alpha), oracle)


@dataclass(frozen=True)
class AlphaMAML(MAML):
    """Alpha-MAML (Behl, Baydin, Torr 2019; THEORY.md §12.2): MAML whose inner step alpha and meta step beta are
    adapted online by hypergradient descent (Baydin et al. 2018).

    With :math:`\\theta'_i` the N-step adapted point at :math:`\\alpha_t` and :math:`G_t` the MAML meta-gradient:

    .. math:: \\theta_{t+1}=\\theta_t-\\beta_tG_t,\\quad
              \\alpha_{t+1}=\\alpha_t+\\eta_\\alpha\\tfrac1B\\textstyle\\sum_i\\nabla\\ell^D_i(\\theta'_i)^\\top
              \\nabla\\ell^S_i(\\theta_t),\\quad \\beta_{t+1}=\\beta_t+\\eta_\\beta G_t^\\top G_{t-1}

    (:math:`G_{-1}=0`). The alpha increment is :math:`-\\eta_\\alpha\\partial\\mathcal L/\\partial\\alpha`, exact for
    every N: for N = 1 it is the rule above; for N > 1 the derivative through all N steps (the paper's setting is
    N = 1). The update rules are [uncertain] in THEORY.md (reconstructed from the HD principle). Safeguards not in
    the paper: :math:`\\alpha_{t+1}\\ge` ``alpha_min`` > 0 (the engine needs a positive step) and
    :math:`\\beta_{t+1}\\ge0`. Costs exactly MAML's oracles (seed 003's claim): the alpha derivative comes out of
    MAML's own backward pass (``meta_gradient(alpha_grad=True)``) and beta's rule keeps only :math:`G_{t-1}`.
    """

    N: int = 1
    eta_alpha: float = 1e-3
    eta_beta: float = 1e-3
    alpha_min: float = 1e-8

    name: ClassVar[str] = "alpha-maml"
    hessian_batch: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        check_int("N", self.N, minimum=1)
        check_positive("eta_alpha", self.eta_alpha, allow_zero=True)
        check_positive("eta_beta", self.eta_beta, allow_zero=True)
        check_positive("alpha_min", self.alpha_min)

    def init(self, source, seed):
        return MetaState(theta=source.init_params(seed), alpha=float(self.alpha), beta=float(self.beta))

    def step(self, state, source, gen):
        tasks = source.batch(gen)
        G, info = meta_gradient(tasks.loss, state.theta, tasks.support, tasks.query, method="maml",
                                inner_steps=self.N, inner_lr=state.alpha, query_loss=tasks.query_loss,
                                compile=self.compile, alpha_grad=True)
        h_alpha = -float(info.extra["alpha_grad"])
        h_beta = 0.0 if state.prev is None else float(sum((a * b).sum() for a, b in zip(leaves(G),
                                                                                       leaves(state.prev))))
        theta = tree_add(state.theta, G, -state.beta)
        alpha = max(self.alpha_min, state.alpha + self.eta_alpha * h_alpha)
        beta = max(0.0, state.beta + self.eta_beta * h_beta)
        oracle = info.oracle
        new = MetaState(theta=theta, alpha=alpha, beta=beta, prev=G)
        return new, StepInfo(G, oracle, {"h_alpha": h_alpha, "h_beta": h_beta})
