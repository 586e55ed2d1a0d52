"""Episodic training and evaluation of few-shot classifiers on real data, with the package's own engines.

One loop trains every method: sample B tasks from the training classes (:class:`EpisodeSampler` over
``split_classes(...).train``), compute a meta-gradient, take an Adam step (beta) on the shared parameters.

- Optimisation-based methods ``maml``, ``fomaml``, ``hfmaml``, ``reptile``, ``anil``, ``imaml``: the direction is
  :func:`convtheory.hypergrad.meta_gradient` with the task loss cross-entropy(backbone(params, x), y), N inner steps
  of size alpha on the support set (ANIL adapts only the head; iMAML solves the proximal inner problem with
  lambda and Q conjugate-gradient steps; Reptile's direction is (theta - mean adapted) / alpha, THEORY.md §3),
  vectorised over tasks and compiled as that engine decides. Reptile's inner loop trains on all of a training
  task's examples, support and query together (Nichol et al. train on ``train_shots`` examples per class, more
  than the test-time shots); its running training accuracy is therefore measured on examples it adapted on.
  Evaluation adapts on each test task's support set with the same inner loop (``eval_steps`` steps) and classifies
  its query set.
- Metric methods, no inner loop: ``protonet`` (Snell et al. 2017): logits are minus squared Euclidean distances
  to the class means of the support embeddings; ``ridge`` (Bertinetto et al. 2019, R2-D2; Lee et al. 2019,
  MetaOptNet-RR): a closed-form ridge-regression head on the support embeddings Z (m x d) with one-hot labels Y,
  :math:`W=Z^\\top(ZZ^\\top+\\lambda I_m)^{-1}Y`, logits :math:`s\\,Z_qW`, with learned :math:`\\log\\lambda` and
  :math:`\\log s`; the solve is differentiated exactly.

Evaluation follows Finn et al.'s protocol (THEORY.md §2): a fixed, seeded set of test episodes (600 by default)
drawn from held-out classes (``split_classes(...).test``: whole characters with all their rotations), mean accuracy
and the 95% interval :math:`1.96\\,\\mathrm{sd}/\\sqrt{n}` (population sd over episodes, as MAML's ``test()``).
Batch norm uses transductive batch statistics (:mod:`convtheory.fewshot.backbones`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from ..hypergrad.meta import meta_gradient
from ..types import InvalidArgumentError, check_choice, check_int, check_positive
from .backbones import BACKBONES, POOLS, make_backbone, num_params
from .episodes import EpisodeSampler, Episodes, fixed_episodes, split_classes
from .omniglot import OmniglotDataset, load_omniglot, resize_ink

Tensor = torch.Tensor
Params = dict[str, Tensor]

GRADIENT_METHODS = ("maml", "fomaml", "hfmaml", "reptile", "anil", "imaml")
METRIC_METHODS = ("protonet", "ridge")
METHODS = GRADIENT_METHODS + METRIC_METHODS
DATASETS = ("omniglot",)
COMPILE = ("auto", "always", "never")
CHECKPOINT_FORMAT = "convtheory-fewshot"

#: Per-method defaults for the settings left as None in :class:`FewShotConfig` (Omniglot 5-way 1-shot on a CPU:
#: B tasks per step, N inner steps, step alpha, test-time steps (default N); MAML's alpha = 0.4 and N = 1 are Finn
#: et al.'s Omniglot values; Reptile adapts longer at test time, as Nichol et al. do).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "maml": dict(meta_batch=8, inner_steps=1, inner_lr=0.4),
    "fomaml": dict(meta_batch=8, inner_steps=1, inner_lr=0.4),
    "hfmaml": dict(meta_batch=8, inner_steps=1, inner_lr=0.4),
    "anil": dict(meta_batch=8, inner_steps=5, inner_lr=0.4),
    "reptile": dict(meta_batch=8, inner_steps=5, inner_lr=0.1, eval_steps=20),
    "imaml": dict(meta_batch=8, inner_steps=5, inner_lr=0.1),
    "protonet": dict(meta_batch=8, inner_steps=0, inner_lr=0.0),
    "ridge": dict(meta_batch=8, inner_steps=0, inner_lr=0.0),
}


# ================================================================================================== config
@dataclass(frozen=True)
class FewShotConfig:
    """Everything that defines a training run (and is stored in its checkpoint).

    Episodes: ``ways``-way ``shots``-shot with ``queries`` query images per class (evaluation and, unless
    ``train_queries`` is set, training); ``train_ways`` (protonet and ridge only) trains on wider tasks. Optimiser:
    ``meta_batch`` B tasks per step, ``outer_lr`` beta (Adam), ``iterations`` steps or ``time_limit`` seconds of
    training, whichever ends first. Inner loop: ``inner_steps`` N, ``inner_lr`` alpha, ``eval_steps`` at test time
    (default N; Reptile 20), iMAML's ``lam`` and ``cg_steps`` Q (lam is also the ridge head's initial lambda).
    Backbone: ``backbone`` (conv4 / resnet12), ``hidden`` filters and ``pool`` for conv4. Data: ``split`` fractions of
    characters for train / val / test (seeded by ``split_seed``), ``rotations`` adds 90/180/270-degree rotations as
    classes. ``compile``: the meta-gradient compile policy ("auto": from the second step on).
    """

    method: str = "maml"
    dataset: str = "omniglot"
    ways: int = 5
    shots: int = 1
    queries: int = 15
    train_queries: int | None = None
    train_ways: int | None = None
    backbone: str = "conv4"
    hidden: int = 64
    pool: str = "stride"
    meta_batch: int | None = None
    inner_steps: int | None = None
    inner_lr: float | None = None
    eval_steps: int | None = None
    outer_lr: float = 1e-3
    lam: float = 2.0
    cg_steps: int = 5
    iterations: int = 1000
    time_limit: float | None = None
    eval_episodes: int = 600
    eval_batch: int = 25
    eval_seed: int = 1
    seed: int = 0
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_seed: int = 0
    image_size: int = 28
    rotations: bool = True
    device: str = "cpu"
    compile: str = "auto"
    log_every: int = 10

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("dataset", self.dataset, DATASETS)
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("pool", self.pool, POOLS)
        check_choice("compile", self.compile, COMPILE)
        check_int("ways", self.ways, minimum=2)
        check_int("shots", self.shots, minimum=1)
        check_int("queries", self.queries, minimum=1)
        check_int("hidden", self.hidden, minimum=1)
        check_int("iterations", self.iterations, minimum=0)
        check_int("eval_episodes", self.eval_episodes, minimum=0)
        check_int("eval_batch", self.eval_batch, minimum=1)
        check_int("cg_steps", self.cg_steps, minimum=0)
        check_int("image_size", self.image_size, minimum=8)
        check_int("log_every", self.log_every, minimum=1)
        check_positive("outer_lr", self.outer_lr)
        check_positive("lam", self.lam)
        if self.train_queries is not None:
            check_int("train_queries", self.train_queries, minimum=1)
        if self.train_ways is not None:
            check_int("train_ways", self.train_ways, minimum=2)
            if self.method not in METRIC_METHODS and self.train_ways != self.ways:
                raise InvalidArgumentError(
                    f"train_ways = {self.train_ways} is invalid for method {self.method!r}: its head has ways = "
                    f"{self.ways} outputs; train_ways applies to {', '.join(METRIC_METHODS)} only"
                )
        if self.meta_batch is not None:
            check_int("meta_batch", self.meta_batch, minimum=1)
        if self.inner_steps is not None:
            check_int("inner_steps", self.inner_steps, minimum=0)
        if self.eval_steps is not None:
            check_int("eval_steps", self.eval_steps, minimum=0)
        if self.inner_lr is not None and self.method in GRADIENT_METHODS:
            check_positive("inner_lr", self.inner_lr)
        if self.time_limit is not None:
            check_positive("time_limit", self.time_limit)
        if len(tuple(self.split)) != 3:
            raise InvalidArgumentError(f"split must have 3 fractions (train, val, test), got {self.split}")

    def resolved(self) -> "FewShotConfig":
        """The config with every None replaced by its method default (:data:`METHOD_DEFAULTS`)."""
        d = METHOD_DEFAULTS[self.method]
        N = d["inner_steps"] if self.inner_steps is None else self.inner_steps
        return dataclasses.replace(
            self,
            meta_batch=d["meta_batch"] if self.meta_batch is None else self.meta_batch,
            inner_steps=N,
            inner_lr=d["inner_lr"] if self.inner_lr is None else self.inner_lr,
            eval_steps=d.get("eval_steps", N) if self.eval_steps is None else self.eval_steps,
            train_queries=self.queries if self.train_queries is None else self.train_queries,
            train_ways=self.ways if self.train_ways is None else self.train_ways,
            split=tuple(float(s) for s in self.split),
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["split"] = list(d["split"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FewShotConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidArgumentError(f"config has unknown fields {unknown}; valid: {sorted(known)}")
        d = dict(d)
        if "split" in d:
            d["split"] = tuple(d["split"])
        return cls(**d)


# ================================================================================================ models
def build_backbone(cfg: FewShotConfig, in_channels: int = 1):
    """The backbone of ``cfg``: a head of ``ways`` outputs for the optimisation-based methods, none (features
    only) for the metric methods, which also use the fused batch-norm kernel (they take no second derivative)."""
    metric = cfg.method in METRIC_METHODS
    n_out = 0 if metric else cfg.ways
    if cfg.backbone == "conv4":
        return make_backbone("conv4", in_channels=in_channels, hidden=cfg.hidden, n_out=n_out, pool=cfg.pool,
                             fused_bn=metric)
    return make_backbone("resnet12", in_channels=in_channels, n_out=n_out, fused_bn=metric)


def init_params(cfg: FewShotConfig, net, device=None) -> Params:
    """Initial parameters (seeded by ``cfg.seed``); the ridge head adds ``ridge.log_lam`` (log lambda, starting at
    log ``cfg.lam``) and ``ridge.log_scale`` (log of the logit scale s, starting at log 10)."""
    p = net.init(cfg.seed, image_size=cfg.image_size, device=device)
    if cfg.method == "ridge":
        p["ridge.log_lam"] = torch.tensor(math.log(cfg.lam), device=device)
        p["ridge.log_scale"] = torch.tensor(math.log(10.0), device=device)
    return p


def _one_hot(y: Tensor, n: int, dtype) -> Tensor:
    """(m,) labels -> (m, n) one-hot; a comparison, so it batches under vmap."""
    return (y[:, None] == torch.arange(n, device=y.device)).to(dtype)


def metric_logits(method: str, net, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, n_way: int) -> Tensor:
    """Query logits (nq, n_way) of a metric method for one task (support ``xs``, ``ys``; query ``xq``)."""
    zs, zq = net(params, xs), net(params, xq)
    Y = _one_hot(ys, n_way, zs.dtype)
    if method == "protonet":
        protos = (Y.T @ zs) / Y.sum(0)[:, None]
        return -(zq.square().sum(1, keepdim=True) - 2 * zq @ protos.T + protos.square().sum(1)[None, :])
    lam = params["ridge.log_lam"].exp()
    eye = torch.eye(zs.shape[0], dtype=zs.dtype, device=zs.device)
    dual = torch.linalg.solve(zs @ zs.T + lam * eye, Y)  # dual ridge solution, (m, n_way)
    return params["ridge.log_scale"].exp() * (zq @ (zs.T @ dual))


def ce_loss(net) -> Callable:
    """The task loss ``loss(params, (x, y))`` = mean cross-entropy of the backbone's logits."""
    def loss(params, data):
        x, y = data
        return F.cross_entropy(net(params, x), y)
    return loss


def adapt(cfg: FewShotConfig, net, params: Params, xs: Tensor, ys: Tensor, steps: int) -> Params:
    """One task's inner loop at evaluation: ``steps`` GD steps of size alpha on the support loss, as in training
    (ANIL: the head only; iMAML: on the proximal loss l + lam/2 ||phi - theta||^2)."""
    loss = ce_loss(net)
    alpha = cfg.inner_lr
    names = set(net.head_names) if cfg.method == "anil" else set(params)
    theta = params

    def inner(p):
        value = loss(p, (xs, ys))
        if cfg.method == "imaml":
            value = value + 0.5 * cfg.lam * sum((p[k] - theta[k]).square().sum() for k in p)
        return value

    for _ in range(steps):
        g = grad(lambda sub: inner({**params, **sub}))({k: params[k] for k in names})
        params = {**params, **{k: params[k] - alpha * g[k] for k in names}}
    return params


def task_logits(cfg: FewShotConfig, net, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, n_way: int,
                steps: int | None = None) -> Tensor:
    """Query logits of one task for any method: metric methods classify directly; the others adapt first."""
    if cfg.method in METRIC_METHODS:
        return metric_logits(cfg.method, net, params, xs, ys, xq, n_way)
    adapted = adapt(cfg, net, params, xs, ys, cfg.eval_steps if steps is None else steps)
    return net(adapted, xq)


# =========================================================================================== training step
def _compiled(fn: Callable, policy: str) -> Callable:
    """``fn`` under the compile policy: "never" eager, "always" compiled, "auto" eager once then compiled."""
    if policy == "never":
        return fn
    state = {"calls": 0, "compiled": torch.compile(fn, dynamic=False) if policy == "always" else None}

    def call(*args):
        state["calls"] += 1
        if state["compiled"] is None and state["calls"] >= 2:
            state["compiled"] = torch.compile(fn, dynamic=False)
        return (state["compiled"] or fn)(*args)
    return call


def make_step(cfg: FewShotConfig, net) -> Callable[[Params, Episodes, bool], tuple[Params, dict]]:
    """``step(params, episodes, want_stats) -> (direction, stats)``: the averaged meta-gradient of B tasks and,
    when asked (or free), the tasks' mean query loss and accuracy after adaptation."""
    n_way = cfg.train_ways
    if cfg.method in METRIC_METHODS:
        def task(params, xs, ys, xq, yq):
            logits = metric_logits(cfg.method, net, params, xs, ys, xq, n_way)
            return F.cross_entropy(logits, yq), (logits.argmax(-1) == yq).float().mean()

        def objective(params, xs, ys, xq, yq):
            losses, accs = vmap(task, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq)
            return losses.mean(), (losses.mean().detach(), accs.mean())

        fn = _compiled(grad(objective, has_aux=True), cfg.compile)

        def step(params, ep, want_stats):
            g, (loss, acc) = fn(params, ep.support, ep.support_labels, ep.query, ep.query_labels)
            return g, {"loss": loss, "acc": acc}
        return step

    loss = ce_loss(net)
    kwargs: dict[str, Any] = dict(method=cfg.method, inner_steps=cfg.inner_steps, inner_lr=cfg.inner_lr,
                                  compile=cfg.compile)
    if cfg.method == "anil":
        kwargs["inner_params"] = net.head_names
    if cfg.method == "imaml":
        kwargs.update(lam=cfg.lam, cg_steps=cfg.cg_steps)
    query_fn = vmap(lambda p, x, y: _loss_acc(net(p, x), y))

    def step(params, ep, want_stats):
        support = (ep.support, ep.support_labels)
        if cfg.method == "reptile":  # Reptile trains on every example of a training task (its query is unused)
            support = (torch.cat([ep.support, ep.query], 1), torch.cat([ep.support_labels, ep.query_labels], 1))
        mg, info = meta_gradient(loss, params, support, (ep.query, ep.query_labels), **kwargs)
        stats = {}
        if want_stats:
            with torch.no_grad():
                losses, accs = query_fn(info.inner, ep.query, ep.query_labels)
            stats = {"loss": losses.mean(), "acc": accs.mean()}
        return mg, stats
    return step


def _loss_acc(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return F.cross_entropy(logits, y), (logits.argmax(-1) == y).float().mean()


# ============================================================================================== evaluation
@dataclass(frozen=True)
class EvalResult:
    """Per-episode accuracies and the protocol's summary: mean and 95% interval 1.96 sd / sqrt(n)."""

    accuracies: np.ndarray

    @property
    def n(self) -> int:
        return int(self.accuracies.size)

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean()) if self.n else float("nan")

    @property
    def ci95(self) -> float:
        return float(1.96 * self.accuracies.std() / math.sqrt(self.n)) if self.n else float("nan")


def evaluate(cfg: FewShotConfig, net, params: Params, dataset: OmniglotDataset, classes: Tensor, *,
             episodes: int | None = None, seed: int | None = None, device=None, progress: bool = False,
             desc: str = "evaluate") -> EvalResult:
    """Accuracy on ``episodes`` fixed ``ways``-way ``shots``-shot tasks drawn (seed ``cfg.eval_seed``) from
    ``classes``; tasks run ``cfg.eval_batch`` at a time, vectorised with vmap."""
    count = cfg.eval_episodes if episodes is None else episodes
    if count == 0:
        return EvalResult(np.zeros(0))
    fixed = fixed_episodes(dataset, cfg.ways, cfg.shots, cfg.queries, count,
                           cfg.eval_seed if seed is None else seed, classes=classes, device=device)
    params = {k: v.detach() for k, v in params.items()}
    per_task = vmap(lambda p, xs, ys, xq, yq: (task_logits(cfg, net, p, xs, ys, xq, cfg.ways).argmax(-1) == yq)
                    .float().mean(), in_dims=(None, 0, 0, 0, 0))
    out = []
    from tqdm.auto import tqdm

    with tqdm(total=count, desc=desc, disable=not progress, file=sys.stderr, leave=False) as bar:
        for ep in fixed.batches(cfg.eval_batch):
            with torch.no_grad() if cfg.method in METRIC_METHODS else contextlib.nullcontext():
                acc = per_task(params, ep.support, ep.support_labels, ep.query, ep.query_labels)
            out.append(acc.detach().cpu())
            bar.update(ep.num_tasks)
            bar.set_postfix(acc=f"{100 * float(torch.cat(out).mean()):.2f}%")
    return EvalResult(torch.cat(out).double().numpy())


# ================================================================================================ training
@dataclass(frozen=True, eq=False)
class TrainResult:
    """A finished run: its (resolved) config, final parameters, the per-log-step history (tidy: iteration,
    episodes, loss, acc, seconds), the test evaluation, and a one-row summary dict."""

    config: FewShotConfig
    params: Params
    history: pd.DataFrame
    test: EvalResult
    summary: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:i]``; refuses a CUDA device the machine does not have."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(f"device = {name!r} is unknown; valid: cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"device = {name!r} is unavailable (torch sees no CUDA device); valid: cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device = {name!r} is unsupported; valid: cpu, cuda, cuda:N")
    return dev


def load_dataset(cfg: FewShotConfig, root: str | os.PathLike) -> OmniglotDataset:
    """The data set of ``cfg`` read from ``root`` (never downloaded)."""
    return load_omniglot(root, size=cfg.image_size, rotations=cfg.rotations)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(cfg: FewShotConfig, dataset: OmniglotDataset, *, progress: bool = True,
          params: Params | None = None) -> TrainResult:
    """Meta-train ``cfg.method`` on the training classes of ``dataset``, then evaluate on the test classes.

    ``params``: start from these instead of a fresh initialisation (e.g. a checkpoint's). A step whose loss is
    not finite stops training; the run is then marked ``diverged`` (with the iteration) and not evaluated.
    Throughput (``episodes_per_second``) counts training tasks per second of training after the first two steps
    (which include compilation under the default policy).
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    split = split_classes(dataset, cfg.split, seed=cfg.split_seed)
    if len(split.train) < cfg.train_ways:
        raise InvalidArgumentError(f"train_ways = {cfg.train_ways} exceeds the {len(split.train)} training classes")
    sampler = EpisodeSampler(dataset, cfg.train_ways, cfg.shots, cfg.train_queries, seed=cfg.seed,
                             classes=split.train, device=device)
    net = build_backbone(cfg, in_channels=1)
    theta = init_params(cfg, net, device) if params is None else {k: v.to(device) for k, v in params.items()}
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    opt = torch.optim.Adam(list(theta.values()), lr=cfg.outer_lr)
    step = make_step(cfg, net)

    from tqdm.auto import tqdm

    rows: list[dict] = []
    times: list[float] = []
    recent: list[float] = []
    diverged_at = None
    t_start = time.perf_counter()
    bar = tqdm(total=cfg.iterations, desc=f"{cfg.method} {cfg.train_ways}-way {cfg.shots}-shot", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    it = 0
    t_loop = time.perf_counter()
    for it in range(1, cfg.iterations + 1):
        t0 = time.perf_counter()
        ep = sampler.sample(cfg.meta_batch)
        want = it == 1 or it % cfg.log_every == 0 or it == cfg.iterations
        direction, stats = step({k: v.detach() for k, v in theta.items()}, ep, want)
        for k, v in theta.items():
            v.grad = direction[k]
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if want:
            loss, acc = float(stats["loss"]), float(stats["acc"])
            rows.append({"iteration": it, "episodes": it * cfg.meta_batch, "loss": loss, "acc": acc,
                         "seconds": time.perf_counter() - t_loop})
            if not math.isfinite(loss) or any(not bool(torch.isfinite(v).all()) for v in theta.values()):
                diverged_at = it
                break
            recent = (recent + [acc])[-10:]
            bar.set_postfix(acc=f"{100 * sum(recent) / len(recent):.1f}%", loss=f"{loss:.3f}",
                            eps=f"{_throughput(times, cfg.meta_batch):.1f}/s")
        bar.update(1)
        if cfg.time_limit is not None and time.perf_counter() - t_loop >= cfg.time_limit:
            break
    bar.close()
    train_seconds = time.perf_counter() - t_loop
    history = pd.DataFrame(rows, columns=["iteration", "episodes", "loss", "acc", "seconds"])
    final = {k: v.detach() for k, v in theta.items()}
    if diverged_at is None:
        test = evaluate(cfg, net, final, dataset, split.test, device=device, progress=progress,
                        desc="test episodes")
    else:
        test = EvalResult(np.zeros(0))
    summary = {
        **cfg.as_dict(),
        "train_classes": int(len(split.train)), "test_classes": int(len(split.test)),
        "num_params": num_params(final), "iterations_run": it if cfg.iterations else 0,
        "train_episodes": (it if cfg.iterations else 0) * cfg.meta_batch,
        "train_seconds": train_seconds, "episodes_per_second": _throughput(times, cfg.meta_batch),
        "final_train_acc": float(history["acc"].iloc[-1]) if len(history) else float("nan"),
        "test_episodes": test.n, "accuracy": test.mean, "ci95": test.ci95,
        "diverged": diverged_at is not None, "diverged_at": diverged_at,
        "seconds_total": time.perf_counter() - t_start,
    }
    return TrainResult(cfg, final, history, test, summary)


def _throughput(times: Sequence[float], B: int) -> float:
    """Training episodes per second, after the first two steps (eager warm-up and compilation) when there are
    more than two."""
    steady = list(times[2:]) if len(times) > 2 else list(times)
    total = sum(steady)
    return B * len(steady) / total if total > 0 else float("nan")


# ============================================================================================= checkpoints
def save_checkpoint(path: str | os.PathLike, cfg: FewShotConfig, params: Params,
                    summary: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"format", "config", "params", "summary"}`` with ``torch.save``, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": CHECKPOINT_FORMAT, "version": 1, "config": cfg.as_dict(),
        "params": {k: v.detach().cpu().clone() for k, v in params.items()},
        "summary": {k: v for k, v in (summary or {}).items()
                    if isinstance(v, (int, float, str, bool, type(None)))},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".pt.tmp")
    with os.fdopen(fd, "wb") as fh:
        torch.save(blob, fh)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device=None) -> tuple[FewShotConfig, Params, dict]:
    """``(config, params, summary)`` from a checkpoint written by :func:`save_checkpoint`.

    Raises InvalidArgumentError naming the path for a missing file, a file torch cannot read, or a file that is
    not a convtheory few-shot checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(f"checkpoint {str(path)!r} does not exist")
    try:
        blob = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors of several types
        raise InvalidArgumentError(f"checkpoint {str(path)!r} is not readable by torch.load "
                                   f"({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise InvalidArgumentError(f"{str(path)!r} is not a {CHECKPOINT_FORMAT} checkpoint (it has no format = "
                                   f"{CHECKPOINT_FORMAT!r}; `convtheory fewshot --checkpoint PATH` writes one)")
    cfg = FewShotConfig.from_dict(blob["config"])
    return cfg, dict(blob["params"]), dict(blob.get("summary", {}))


# ========================================================================================== the 20 runs
def _runs_images(images: Tensor, size: int) -> Tensor:
    """Official-run images (n, 105, 105) float ink -> (n, 1, size, size), resized exactly as the loader does."""
    ink = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return (torch.from_numpy(resize_ink(ink, size)).float() / 255.0).unsqueeze(1)


def checkpoint_scorer(path: str | os.PathLike) -> Callable[[Tensor, Tensor], Tensor]:
    """A scorer for the 20 official one-shot runs (:func:`convtheory.fewshot.runs.evaluate_runs`) from a checkpoint.

    Each run is one 20-way 1-shot task: the 20 training images are the support set (labels 0..19 in file order),
    the 20 test images the query set, resized like the training data. Metric methods (protonet, ridge) and
    optimisation-based methods whose head has 20 outputs classify it as they do a test episode. A head of another
    width cannot label 20 classes, so those models classify by cosine similarity to the support features of their
    body (the NIL rule of Raghu et al. 2020, THEORY.md §6).
    """
    cfg, params, _ = load_checkpoint(path)
    cfg = cfg.resolved()
    net = build_backbone(cfg, in_channels=1)

    def scorer(train_images: Tensor, test_images: Tensor) -> Tensor:
        xs, xq = _runs_images(train_images, cfg.image_size), _runs_images(test_images, cfg.image_size)
        n = xs.shape[0]
        ys = torch.arange(n)
        if cfg.method in METRIC_METHODS or net.n_out == n:
            ctx = torch.no_grad() if cfg.method in METRIC_METHODS else contextlib.nullcontext()
            with ctx:
                logits = task_logits(cfg, net, params, xs, ys, xq, n)
            return logits.argmax(-1).detach()
        with torch.no_grad():
            zs = F.normalize(net.features(params, xs), dim=1)
            zq = F.normalize(net.features(params, xq), dim=1)
        return (zq @ zs.T).argmax(-1)
    return scorer


# ================================================================================================ results
RESULT_COLUMNS = (
    "dataset", "method", "backbone", "hidden", "pool", "ways", "shots", "queries", "train_ways", "train_queries",
    "meta_batch", "inner_steps", "inner_lr", "eval_steps", "outer_lr", "lam", "cg_steps", "iterations_run",
    "train_episodes", "train_seconds", "episodes_per_second", "final_train_acc", "test_episodes", "accuracy",
    "ci95", "diverged", "diverged_at", "seed", "split_seed", "eval_seed", "rotations", "image_size", "device",
    "compile", "num_params", "train_classes", "test_classes", "checkpoint",
)


def summary_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One run as a one-row tidy table with :data:`RESULT_COLUMNS`."""
    return pd.DataFrame([{c: summary.get(c) for c in RESULT_COLUMNS}], columns=list(RESULT_COLUMNS))


def append_results(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Append rows to a CSV (created with a header when absent), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            old = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"results file {str(path)!r} is not a readable CSV ({exc})") from None
        frame = pd.concat([old, frame], ignore_index=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".csv.tmp")
    with os.fdopen(fd, "w") as fh:
        frame.to_csv(fh, index=False)
    os.replace(tmp, path)
    return path
