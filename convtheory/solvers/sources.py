"""Where a solver's data come from: task batches (resampling or finite-sum) and stochastic bilevel oracles.

Meta-learning (Ji, Yang, Liang 2022, THEORY.md §5, distinguish the two regimes):

- ``mode="resample"``: every step draws B fresh tasks (and with them fresh S support and D query samples) from
  the family; the objective is the population meta-objective, so the loop can only *estimate* its gradient on a
  large fresh batch of tasks.
- ``mode="finite-sum"``: a pool of M = ``num_tasks`` tasks (each with its fixed S and D samples) is drawn once;
  every step uses B of them (without replacement; all of them, in order, when B = M: deterministic meta-GD). The
  objective is the average over the pool, whose gradient the loop computes exactly.

Bilevel: deterministic solvers use f and g; stochastic ones (stocBiO) draw minibatch objectives
:math:`F(x,y;\\mathcal D)` and :math:`G(x,y;\\mathcal S)` whose means are f and g, from a :class:`StochasticBilevel`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..problems.base import BilevelProblem, MetaTasks, make_generator
from ..tree import leaves
from ..types import InvalidArgumentError, InvalidTypeError, Params, check_choice, check_int, check_positive

Fn = Callable[[Params, Params], torch.Tensor]
MODES = ("finite-sum", "resample")


# ------------------------------------------------------------------------------------------------- helpers
def vec(tree: Any) -> torch.Tensor:
    """Flatten a tensor, a dict of tensors, or a tuple of those into one 1-D tensor (dict order)."""
    if isinstance(tree, torch.Tensor):
        return tree.reshape(-1)
    if isinstance(tree, dict):
        return torch.cat([vec(v) for v in tree.values()])
    if isinstance(tree, (tuple, list)):
        return torch.cat([vec(v) for v in tree])
    raise InvalidTypeError(f"expected a tensor, a dict or a tuple of tensors, got {type(tree).__name__}")


def draw_seed(gen: torch.Generator) -> int:
    """A fresh int seed from a generator (so that sub-streams stay reproducible)."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


def subseeds(seed: int, n: int) -> list[int]:
    """n independent int seeds derived from ``seed``."""
    gen = make_generator(seed)
    return [draw_seed(gen) for _ in range(n)]


def _take(data: Any, idx: torch.Tensor) -> Any:
    if isinstance(data, torch.Tensor):
        return data[idx]
    if isinstance(data, dict):
        return {k: _take(v, idx) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return type(data)(_take(v, idx) for v in data)
    raise InvalidTypeError(f"task data must be tensors, tuples or dicts, got {type(data).__name__}")


#: Keys of ``MetaTasks.exact`` that carry a task axis (indexed when a batch is taken from a pool).
_BATCHED_EXACT = ("A", "c", "C", "e", "e0", "a", "b", "eigenvalues", "w_true", "u_true")


def take_tasks(tasks: MetaTasks, idx: torch.Tensor) -> MetaTasks:
    """The sub-batch ``idx`` of a task batch (data, a Hessian batch, the per-task entries of ``exact``; constants
    kept)."""
    exact = {k: (_take(v, idx) if k in _BATCHED_EXACT else v) for k, v in tasks.exact.items()}
    extra = {"hessian": _take(tasks.hessian, idx)} if isinstance(tasks, HessianBatchTasks) else {}
    return dataclasses.replace(tasks, support=_take(tasks.support, idx), query=_take(tasks.query, idx),
                               exact=exact, **extra)


@dataclass(frozen=True)
class HessianBatchTasks(MetaTasks):
    """A task batch with a separate per-task Hessian batch ``hessian`` (D_H samples per task, task axis first),
    independent of the support (S) and query (D) samples: Fallah, Mokhtari, Ozdaglar (2020)'s :math:`D^i_h`."""

    hessian: Any = None


def _split_samples(data: Any, S: int) -> tuple[Any, Any]:
    """(first S samples, the rest) of per-task data whose sample axis is axis 1 (every leaf)."""
    if isinstance(data, torch.Tensor):
        if data.dim() < 2:
            raise InvalidArgumentError(f"splitting off a Hessian batch needs a sample axis (axis 1); got a tensor of "
                                       f"shape {tuple(data.shape)}")
        return data[:, :S], data[:, S:]
    if isinstance(data, dict):
        parts = {k: _split_samples(v, S) for k, v in data.items()}
        return {k: p[0] for k, p in parts.items()}, {k: p[1] for k, p in parts.items()}
    if isinstance(data, (tuple, list)):
        parts = [_split_samples(v, S) for v in data]
        return type(data)(p[0] for p in parts), type(data)(p[1] for p in parts)
    raise InvalidTypeError(f"task data must be tensors, tuples or dicts, got {type(data).__name__}")


def split_hessian_batch(tasks: MetaTasks, S: int) -> HessianBatchTasks:
    """Split tasks drawn with S + D_H support samples into S support samples and a D_H-sample Hessian batch.

    The samples of a task are i.i.d., so the two parts are independent batches of the same task. Quadratic exact
    oracles (``exact`` with ``A`` and ``c``) are recomputed on the S support samples, exactly (a quadratic loss has
    :math:`A=\\nabla^2\\ell`, :math:`c=-\\nabla\\ell(0)`); ``constants`` stay those of the S + D_H samples (valid
    bounds for both parts only where they are population constants).
    """
    from torch.func import grad, vmap

    support, hes = _split_samples(tasks.support, S)
    exact = dict(tasks.exact)
    if "A" in exact and "c" in exact:  # quadratic: c = -grad(0), A e_j = grad(e_j) - grad(0)
        c = exact["c"]
        eye = torch.eye(c.shape[-1], dtype=c.dtype, device=c.device)
        at_basis = vmap(vmap(grad(tasks.loss), in_dims=(0, None)), in_dims=(None, 0))(eye, support)
        g0 = vmap(grad(tasks.loss), in_dims=(None, 0))(torch.zeros_like(eye[0]), support)
        A = (at_basis - g0.unsqueeze(-2)).transpose(-1, -2)
        exact["A"], exact["c"] = 0.5 * (A + A.transpose(-1, -2)), -g0
    return HessianBatchTasks(support=support, query=tasks.query, loss=tasks.loss, constants=tasks.constants,
                             query_loss=tasks.query_loss, exact=exact, hessian=hes)


# ------------------------------------------------------------------------------------------------ sampling
@dataclass(frozen=True)
class Sampling:
    """How a meta-learning solver draws tasks: ``mode``, B tasks per step, pool size, S and D samples per task.

    ``mode``: ``"finite-sum"`` or ``"resample"`` (module docstring). ``B``: tasks per step. ``num_tasks``: the
    pool size M of finite-sum mode (None: M = B, i.e. deterministic full-batch meta-GD; must be >= B).
    ``S``, ``D``: support and query samples per task; they replace the family's own ``S`` and ``D`` fields
    (None keeps the family's; a family without such fields, e.g. the population ``QuadraticTasks``, takes None only).
    ``D_H``: samples per task of a separate Hessian batch, independent of the S inner-step and D query samples
    (Fallah, Mokhtari, Ozdaglar 2020; THEORY.md §1.2, §14 item 8); the second-order solvers (MAML, ANIL, HF-MAML)
    then take their Hessian-vector products on it. None (default): the Hessians use the support samples, as
    before. Needs a family with an ``S`` field whose support data have the sample axis at axis 1: each task is
    drawn with S + D_H support samples and split (:func:`split_hessian_batch`).
    """

    mode: str = "finite-sum"
    B: int = 16
    num_tasks: int | None = None
    S: int | None = None
    D: int | None = None
    D_H: int | None = None

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_int("B", self.B, minimum=1)
        if self.num_tasks is not None:
            M = check_int("num_tasks", self.num_tasks, minimum=1)
            if M < self.B:
                raise InvalidArgumentError(f"num_tasks = {M} < B = {self.B}; the pool must hold at least B tasks")
            if self.mode == "resample":
                raise InvalidArgumentError("num_tasks is a finite-sum setting; with mode='resample' leave it None")
        for name in ("S", "D", "D_H"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)

    @property
    def pool_size(self) -> int:
        return self.B if self.num_tasks is None else int(self.num_tasks)

    def apply(self, family: Any) -> Any:
        """The family with its ``S`` / ``D`` fields replaced by this sampling's (when given); with ``D_H`` its
        ``S`` is S + D_H (the draw that :func:`split_hessian_batch` splits)."""
        changes = {k: getattr(self, k) for k in ("S", "D") if getattr(self, k) is not None}
        names = {f.name for f in dataclasses.fields(family)} if dataclasses.is_dataclass(family) else set()
        if self.D_H is not None:
            if "S" not in names:
                raise InvalidArgumentError(
                    f"sampling sets D_H = {self.D_H} but {type(family).__name__} has no sample-size field S to draw "
                    "a Hessian batch from; leave D_H None for this family")
            changes["S"] = changes.get("S", family.S) + self.D_H
        if not changes:
            return family
        missing = [k for k in changes if k not in names]
        if missing:
            raise InvalidArgumentError(
                f"sampling sets {missing} but {type(family).__name__} has no such sample-size field; "
                "leave them None for this family"
            )
        return dataclasses.replace(family, **changes)


class MetaSource:
    """Task batches for a meta-learning run: the step batches, the training objective's tasks, held-out tasks.

    Built from a task family (anything with ``sample(B, seed) -> MetaTasks`` and ``init_params(seed)``), a
    :class:`Sampling`, the run's seed and ``eval_tasks`` (size of the held-out batch and of the fresh batches on
    which the population gradient is estimated in resample mode).
    """

    def __init__(self, family: Any, sampling: Sampling, seed: int, eval_tasks: int = 1000):
        if not (callable(getattr(family, "sample", None)) and callable(getattr(family, "init_params", None))):
            raise InvalidTypeError(
                f"a meta-learning solver needs a task family with sample(B, seed) and init_params(seed); "
                f"got {type(family).__name__}"
            )
        self.family = sampling.apply(family)
        self.sampling = sampling
        self.eval_tasks = check_int("eval_tasks", eval_tasks, minimum=1)
        pool_seed, test_seed, self._eval_seed = subseeds(seed, 3)
        self.pool = self._sample(sampling.pool_size, pool_seed) if self.finite_sum else None
        self.test_tasks = self._sample(self.eval_tasks, test_seed)

    def _sample(self, B: int, seed: int) -> MetaTasks:
        """B tasks from the family; with ``D_H`` split into S support samples and a Hessian batch."""
        tasks = self.family.sample(B, seed)
        if self.sampling.D_H is None:
            return tasks
        return split_hessian_batch(tasks, self.family.S - self.sampling.D_H)

    @property
    def finite_sum(self) -> bool:
        return self.sampling.mode == "finite-sum"

    def init_params(self, seed: int) -> Params:
        return self.family.init_params(seed)

    def batch(self, gen: torch.Generator) -> MetaTasks:
        """B tasks for one step: fresh ones (resample) or B of the pool (finite-sum; the whole pool if B = M)."""
        B = self.sampling.B
        if not self.finite_sum:
            return self._sample(B, draw_seed(gen))
        M = self.sampling.pool_size
        if B == M:
            return self.pool
        return take_tasks(self.pool, torch.randperm(M, generator=gen)[:B])

    def training_tasks(self, iteration: int) -> tuple[MetaTasks, bool]:
        """(tasks on which the training objective is evaluated, whether they *are* the objective).

        Finite-sum: the pool itself (True). Resample: a fresh batch of ``eval_tasks`` tasks, seeded by the
        iteration so that runs stay reproducible (False: an estimate of the population objective).
        """
        if self.finite_sum:
            return self.pool, True
        return self._sample(self.eval_tasks, self._eval_seed + int(iteration)), False


# ------------------------------------------------------------------------------------------ stochastic bilevel
@dataclass(frozen=True)
class StochasticBilevel:
    """A bilevel problem with minibatch oracles: ``sample_f(n, gen)`` / ``sample_g(n, gen)`` return closures
    :math:`F(x,y;\\mathcal D)`, :math:`G(x,y;\\mathcal S)` averaging n i.i.d. samples, with
    :math:`\\mathbb EF=f`, :math:`\\mathbb EG=g` (so their gradients, Hessians and mixed derivatives are unbiased).
    """

    problem: BilevelProblem
    sample_f: Callable[[int, torch.Generator], Fn]
    sample_g: Callable[[int, torch.Generator], Fn]


def deterministic_samples(problem: BilevelProblem) -> StochasticBilevel:
    """Noise-free "samples": every draw returns f and g themselves (the batch size is ignored)."""
    return StochasticBilevel(problem, lambda n, gen: problem.f, lambda n, gen: problem.g)


def quadratic_noise(problem: BilevelProblem, sigma_H: float = 0.1, sigma_g: float = 0.1, sigma_J: float = 0.0,
                    sigma_f: float = 0.1) -> StochasticBilevel:
    """Gaussian sample oracles on a :class:`~convtheory.problems.QuadraticBilevel` problem.

    One sample :math:`\\xi=(E,F,z)` of the inner objective is
    :math:`G(x,y;\\xi)=\\tfrac12y^\\top(H+\\sigma_HE)y-y^\\top((B+\\sigma_JF)x+b+\\sigma_gz)`, E symmetric with
    :math:`\\mathcal N(0,1)` entries above the diagonal and :math:`\\mathcal N(0,2)` on it, F and z standard
    normal; one sample of the outer objective is :math:`F(x,y;\\zeta)=f(x,y)-\\sigma_fy^\\top z'`. A batch of n
    averages n samples, so the Hessian, mixed-derivative and gradient noises have variances
    :math:`\\sigma^2/n` per entry and every oracle is unbiased (THEORY.md §1.3 stocBiO item).
    """
    keys = ("H", "B", "b", "ybar", "gamma")
    if any(k not in problem.extra for k in keys):
        raise InvalidArgumentError("quadratic_noise needs a problem built by QuadraticBilevel.build "
                                   f"(prob.extra with {list(keys)})")
    sH, sg, sJ, sf = (check_positive(n, v, allow_zero=True) for n, v in
                      (("sigma_H", sigma_H), ("sigma_g", sigma_g), ("sigma_J", sigma_J), ("sigma_f", sigma_f)))
    H, Bm, b, ybar, gamma = (problem.extra[k] for k in keys)
    q, p = Bm.shape
    dt = H.dtype

    def sample_g(n: int, gen: torch.Generator) -> Fn:
        n = check_int("batch size", n, minimum=1)
        W = torch.randn(n, q, q, generator=gen, dtype=torch.float64)
        E = ((W + W.transpose(-1, -2)) / 2**0.5).mean(0).to(dt)
        Fm = torch.randn(n, q, p, generator=gen, dtype=torch.float64).mean(0).to(dt)
        z = torch.randn(n, q, generator=gen, dtype=torch.float64).mean(0).to(dt)
        Hs, Bs, bs = H + sH * E, Bm + sJ * Fm, b + sg * z

        def G(x, y):
            return 0.5 * (y * (y @ Hs)).sum(-1) - (y * (x @ Bs.T + bs)).sum(-1)
        return G

    def sample_f(n: int, gen: torch.Generator) -> Fn:
        n = check_int("batch size", n, minimum=1)
        z = torch.randn(n, q, generator=gen, dtype=torch.float64).mean(0).to(dt)

        def Fb(x, y):
            return 0.5 * ((y - ybar) ** 2).sum(-1) + 0.5 * gamma * (x**2).sum(-1) - sf * (y * z).sum(-1)
        return Fb

    return StochasticBilevel(problem, sample_f, sample_g)


def hypercleaning_minibatches(problem: BilevelProblem) -> StochasticBilevel:
    """Minibatch oracles for :class:`~convtheory.problems.HyperCleaning`: n training examples drawn uniformly
    with replacement for G (weighted cross-entropy plus the ridge term), n validation examples for F."""
    from ..problems.hypercleaning import K_CLASSES, cross_entropy

    ex = problem.extra
    Z, Zv = ex["Z_train"], ex["Z_val"]
    Y = F.one_hot(ex["labels_train"], K_CLASSES).to(Z.dtype)
    Yv = F.one_hot(ex["labels_val"], K_CLASSES).to(Z.dtype)
    reg = float(problem.constants.mu)  # HyperCleaning: mu = reg exactly

    def sample_g(n: int, gen: torch.Generator) -> Fn:
        idx = torch.randint(0, Z.shape[0], (check_int("batch size", n, minimum=1),), generator=gen)
        Zb, Yb = Z[idx], Y[idx]

        def G(x, W):
            return (torch.sigmoid(x[idx]) * cross_entropy(W, Zb, Yb)).mean() + 0.5 * reg * (W**2).sum()
        return G

    def sample_f(n: int, gen: torch.Generator) -> Fn:
        idx = torch.randint(0, Zv.shape[0], (check_int("batch size", n, minimum=1),), generator=gen)
        Zb, Yb = Zv[idx], Yv[idx]

        def Fb(x, W):
            return cross_entropy(W, Zb, Yb).mean()
        return Fb

    return StochasticBilevel(problem, sample_f, sample_g)


def as_stochastic(problem: BilevelProblem | StochasticBilevel) -> StochasticBilevel:
    """Sample oracles for a problem: itself if already stochastic, minibatches for HyperCleaning problems,
    noise-free draws otherwise (use :func:`quadratic_noise` for a noisy quadratic problem)."""
    if isinstance(problem, StochasticBilevel):
        return problem
    if "Z_train" in problem.extra and "labels_train" in problem.extra:
        return hypercleaning_minibatches(problem)
    return deterministic_samples(problem)


class BilevelSource:
    """A bilevel problem as a solver sees it: ``problem`` (f, g, x0, y0, exact oracles) and sample oracles.

    ``problem`` may be a :class:`BilevelProblem`, a :class:`StochasticBilevel`, or a family config with
    ``build(seed)`` (built with a seed derived from the run's seed).
    """

    def __init__(self, problem: Any, seed: int):
        if not isinstance(problem, (BilevelProblem, StochasticBilevel)):
            if not callable(getattr(problem, "build", None)):
                raise InvalidTypeError(
                    "a bilevel solver needs a BilevelProblem, a StochasticBilevel or a family with build(seed); "
                    f"got {type(problem).__name__}"
                )
            problem = problem.build(subseeds(seed, 1)[0])
        self.stochastic = as_stochastic(problem)
        self.problem = self.stochastic.problem
        if not leaves(self.problem.x0):
            raise InvalidArgumentError("the problem's x0 has no tensors")

    def sample_f(self, n: int, gen: torch.Generator) -> Fn:
        return self.stochastic.sample_f(n, gen)

    def sample_g(self, n: int, gen: torch.Generator) -> Fn:
        return self.stochastic.sample_g(n, gen)
