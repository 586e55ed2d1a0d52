"""Episodic training and evaluation of few-shot classifiers on real data, with the package's own engines.

One loop trains every method: sample B tasks from the training classes (:class:`EpisodeSampler` over
``dataset_split(...).train``), compute a meta-gradient, take an Adam step (beta) on the shared parameters.

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
drawn from held-out classes (``dataset_split(...).test``: Omniglot's whole characters with all their rotations, or
the test split's classes of a colour benchmark), mean accuracy
and the 95% interval :math:`1.96\\,\\mathrm{sd}/\\sqrt{n}` (population sd over episodes, as MAML's ``test()``).
Batch norm uses transductive batch statistics (:mod:`convtheory.fewshot.backbones`).

Data sets (``cfg.dataset``): ``omniglot`` (grey 28x28 characters; classes split at random into train / val / test
by ``split`` and ``split_seed``, whole characters with their rotations) and the colour benchmarks ``miniimagenet``
(84x84), ``fc100`` and ``cifarfs`` (32x32), read from a user path by :func:`convtheory.fewshot.load_imageset`. For
those the class split is the community's, given by the files: meta-training draws from the train split's classes,
evaluation from the test split's (the val split is not read: nothing is selected on it). :func:`load_imageset_data`
joins the two splits into one :class:`FewShotImageSet` (the Omniglot data set's interface: images, labels, class
index) carrying that :class:`ClassSplit`, normalised per channel by the mean and standard deviation of the training
split's pixels, so the sampler and every method run on it unchanged. Per-dataset defaults
(:data:`DATASET_DEFAULTS`): image size, Conv-4 pooling (max-pool on the colour sets, as Finn et al.'s miniImageNet
net) and filters (32 for the optimisation-based methods, 64 for the metric ones), no rotations; the
optimisation-based methods take Finn et al.'s miniImageNet inner loop (:data:`IMAGESET_METHOD_DEFAULTS`).
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
from .episodes import ClassSplit, EpisodeSampler, Episodes, fixed_episodes, split_classes
from .imagesets import SPECS as IMAGESET_SPECS, ImageSet, load_imageset
from .omniglot import OmniglotDataset, load_omniglot, resize_ink

Tensor = torch.Tensor
Params = dict[str, Tensor]

GRADIENT_METHODS = ("maml", "fomaml", "hfmaml", "reptile", "anil", "imaml")
METRIC_METHODS = ("protonet", "ridge")
METHODS = GRADIENT_METHODS + METRIC_METHODS
DATASETS = ("omniglot", "miniimagenet", "fc100", "cifarfs")
#: ``--dataset`` name -> :func:`convtheory.fewshot.load_imageset` name, for the colour benchmarks.
IMAGESETS = {"miniimagenet": "miniimagenet", "fc100": "fc100", "cifarfs": "cifar-fs"}
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

#: Method defaults on the colour benchmarks, where they differ from :data:`METHOD_DEFAULTS`: Finn et al.'s
#: miniImageNet MAML (B = 4, N = 5, alpha = 0.01, 10 steps at test time), for its first-order and ANIL variants
#: too; Reptile and iMAML the same small step with longer adaptation at test time.
IMAGESET_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "maml": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=10),
    "fomaml": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=10),
    "hfmaml": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=10),
    "anil": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=10),
    "reptile": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=50),
    "imaml": dict(meta_batch=4, inner_steps=5, inner_lr=0.01, eval_steps=10),
}

#: Per-dataset defaults of the config fields left as None: image side, Conv-4 pooling, input channels, and Conv-4
#: filters for (optimisation-based, metric) methods.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "omniglot": dict(image_size=28, pool="stride", channels=1, hidden=(64, 64), rotations=True),
    **{name: dict(image_size=IMAGESET_SPECS[spec].size, pool="max", channels=3, hidden=(32, 64), rotations=False)
       for name, spec in IMAGESETS.items()},
}


def dataset_channels(dataset: str) -> int:
    """Input channels of ``dataset``'s images (1 for Omniglot, 3 for the colour benchmarks)."""
    return DATASET_DEFAULTS[check_choice("dataset", dataset, DATASETS)]["channels"]


# ================================================================================================== config
@dataclass(frozen=True)
class FewShotConfig:
    """Everything that defines a training run (and is stored in its checkpoint).

    Episodes: ``ways``-way ``shots``-shot with ``queries`` query images per class (evaluation and, unless
    ``train_queries`` is set, training); ``train_ways`` (protonet and ridge only) trains on wider tasks. Optimiser:
    ``meta_batch`` B tasks per step, ``outer_lr`` beta (Adam), ``iterations`` steps or ``time_limit`` seconds of
    training, whichever ends first. Inner loop: ``inner_steps`` N, ``inner_lr`` alpha, ``eval_steps`` at test time
    (default N; Reptile 20), iMAML's ``lam`` and ``cg_steps`` Q (lam is also the ridge head's initial lambda).
    Backbone: ``backbone`` (conv4 / resnet12), ``hidden`` filters and ``pool`` for conv4. Data: ``dataset``
    (:data:`DATASETS`); for Omniglot ``split`` fractions of characters for train / val / test (seeded by
    ``split_seed``) and ``rotations`` (add 90/180/270-degree rotations as classes); the colour benchmarks use their
    files' class split and take no rotations. ``image_size``, ``pool``, ``hidden`` and ``rotations`` left as None
    take the dataset's defaults (:data:`DATASET_DEFAULTS`: Omniglot 28 / stride / 64 / rotations; miniImageNet 84,
    FC100 and CIFAR-FS 32, max-pool, 32 filters for the optimisation-based methods and 64 for the metric ones)
    when the config is made, so a config always holds concrete values. ``compile``: the meta-gradient compile
    policy ("auto": from the second step on).
    """

    method: str = "maml"
    dataset: str = "omniglot"
    ways: int = 5
    shots: int = 1
    queries: int = 15
    train_queries: int | None = None
    train_ways: int | None = None
    backbone: str = "conv4"
    hidden: int | None = None
    pool: str | None = None
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
    image_size: int | None = None
    rotations: bool | None = None
    device: str = "cpu"
    compile: str = "auto"
    log_every: int = 10

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("dataset", self.dataset, DATASETS)
        d = DATASET_DEFAULTS[self.dataset]
        for name in ("image_size", "pool", "rotations"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, d[name])
        if self.hidden is None:
            object.__setattr__(self, "hidden", d["hidden"][self.method in METRIC_METHODS])
        if self.rotations and self.dataset != "omniglot":
            raise InvalidArgumentError(f"rotations = True is invalid for dataset {self.dataset!r}: rotated classes "
                                       "apply to omniglot only")
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
        d = {**METHOD_DEFAULTS[self.method],
             **(IMAGESET_METHOD_DEFAULTS.get(self.method, {}) if self.dataset in IMAGESETS else {})}
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
def build_backbone(cfg: FewShotConfig, in_channels: int | None = None):
    """The backbone of ``cfg``: a head of ``ways`` outputs for the optimisation-based methods, none (features
    only) for the metric methods, which also use the fused batch-norm kernel (they take no second derivative).
    ``in_channels``: default the dataset's (1 for Omniglot, 3 for the colour benchmarks)."""
    metric = cfg.method in METRIC_METHODS
    if in_channels is None:
        in_channels = dataset_channels(cfg.dataset)
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


def evaluate(cfg: FewShotConfig, net, params: Params, dataset: OmniglotDataset | FewShotImageSet,
             classes: Tensor, *, episodes: int | None = None, seed: int | None = None, device=None,
             progress: bool = False, desc: str = "evaluate") -> EvalResult:
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


# =========================================================================================== colour data
@dataclass(frozen=True, eq=False)
class FewShotImageSet(ImageSet):
    """The train and test splits of a colour benchmark as one data set, with their class split.

    The interface of :class:`~convtheory.fewshot.omniglot.OmniglotDataset` that the samplers and :func:`train` use
    (``images`` (n, 3, H, W), ``labels`` in 0..C-1 grouped by class, ``classes``, ``num_classes``,
    ``class_index()``), plus ``class_split``: the training split's classes are ``0..C_train-1``
    (``class_split.train``), the test split's the next ``C_test`` (``class_split.test``; ``val`` is empty: that
    split is not read). ``mean`` and ``std``: the per-channel statistics of the training split's pixels (in [0, 1])
    that normalised ``images``; ``split`` is "train+test"; ``form`` the file forms read ("train form/test form").
    """

    class_split: ClassSplit | None = None


def _pixel_stats(images: Tensor, chunk: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation of (n, C, H, W) ``images``, accumulated in float64."""
    c = images.shape[1]
    s1 = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].to(torch.float64)
        s1 += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s1 / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel is centred, not scaled
    return tuple(mean.tolist()), tuple(std.tolist())


def load_imageset_data(dataset: str, root: str | os.PathLike, *, image_size: int | None = None,
                       cache_dir: str | os.PathLike | None = None) -> FewShotImageSet:
    """The train and test splits of ``dataset`` ("miniimagenet", "fc100", "cifarfs") from the folder ``root``, in
    any form :func:`convtheory.fewshot.load_imageset` reads, as one :class:`FewShotImageSet`.

    Images are resized to ``image_size`` (default the benchmark's: 84 or 32) and normalised per channel,
    ``(pixels / 255 - mean) / std``, with the mean and standard deviation of the training split's pixels.
    ``cache_dir``: keep decoded CSV / folder sources there (see :func:`load_imageset`).

    Raises InvalidArgumentError (one line, naming the value) for an unknown dataset, a ``root`` that is a file,
    a missing split or a wrongly laid-out one (the file-form errors of :func:`load_imageset`), and splits that
    share named classes.
    """
    name = IMAGESETS[check_choice("dataset", dataset, IMAGESETS)]
    path = Path(root)
    if path.is_file():
        raise InvalidArgumentError(f"root {str(path)!r} is a file; {dataset} needs the folder holding its train and "
                                   f"test splits")
    parts = [load_imageset(name, path, split, size=image_size, normalize=False, cache_dir=cache_dir)
             for split in ("train", "test")]
    train_set, test_set = parts
    shared = sorted(set(train_set.classes) & set(test_set.classes))
    if shared and not all(c.lstrip("-").isdigit() for c in shared):  # integer labels may be numbered per split
        raise InvalidArgumentError(f"{str(path)!r}: the train and test splits of {dataset} share classes "
                                   f"{shared[:5]}{' ...' if len(shared) > 5 else ''}; their classes must be disjoint")
    n_train, c_train, c_test = len(train_set), train_set.num_classes, test_set.num_classes
    images = torch.cat([train_set.images, test_set.images])
    labels = torch.cat([train_set.labels, test_set.labels + c_train])
    classes = train_set.classes + test_set.classes
    sources = train_set.sources + test_set.sources
    form = f"{train_set.form}/{test_set.form}"
    del parts, train_set, test_set
    mean, std = _pixel_stats(images[:n_train])
    m = torch.tensor(mean, dtype=images.dtype).reshape(-1, 1, 1)
    sd = torch.tensor(std, dtype=images.dtype).reshape(-1, 1, 1)
    for i in range(0, images.shape[0], 2048):  # in place, chunk by chunk: no second copy of the images
        images[i:i + 2048].sub_(m).div_(sd)
    split = ClassSplit(torch.arange(c_train), torch.zeros(0, dtype=torch.int64),
                       torch.arange(c_train, c_train + c_test))
    return FewShotImageSet(images=images, labels=labels, classes=classes, mean=mean, std=std, name=dataset,
                           split="train+test", form=form, sources=sources, class_split=split)


def load_dataset(cfg: FewShotConfig, root: str | os.PathLike,
                 cache_dir: str | os.PathLike | None = None) -> OmniglotDataset | FewShotImageSet:
    """The data set of ``cfg`` read from ``root`` (never downloaded): Omniglot (``cfg.image_size``,
    ``cfg.rotations``) or a colour benchmark's train and test splits (:func:`load_imageset_data`)."""
    if cfg.dataset in IMAGESETS:
        return load_imageset_data(cfg.dataset, root, image_size=cfg.image_size, cache_dir=cache_dir)
    return load_omniglot(root, size=cfg.image_size, rotations=cfg.rotations)


def dataset_split(cfg: FewShotConfig, dataset) -> ClassSplit:
    """The train / val / test classes of ``dataset``: the split it carries (the colour benchmarks' files), else
    Omniglot's seeded random split of characters (``cfg.split``, ``cfg.split_seed``)."""
    given = getattr(dataset, "class_split", None)
    if given is not None:
        return given
    if cfg.dataset in IMAGESETS:
        raise InvalidArgumentError(f"dataset {cfg.dataset!r} needs its train and test splits as one data set with "
                                   "their class split; load it with load_dataset(cfg, root)")
    return split_classes(dataset, cfg.split, seed=cfg.split_seed)


def _check_channels(cfg: FewShotConfig, dataset) -> None:
    images = dataset.images
    have = int(images.shape[1]) if images.dim() == 4 else 1
    want = dataset_channels(cfg.dataset)
    if have != want:
        raise InvalidArgumentError(f"dataset = {cfg.dataset!r} expects {want}-channel images, but the data given "
                                   f"have {have} channels")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def outer_step(step: Callable, sampler, theta: Params, opt, meta_batch: int, want_stats: bool) -> dict:
    """One meta-training step: draw ``meta_batch`` tasks, put the meta-gradient of ``step`` in the parameters'
    ``.grad``, take one optimiser step; returns the step's stats (loss, accuracy when asked)."""
    ep = sampler.sample(meta_batch)
    direction, stats = step({k: v.detach() for k, v in theta.items()}, ep, want_stats)
    for k, v in theta.items():
        v.grad = direction[k]
    opt.step()
    return stats


def train(cfg: FewShotConfig, dataset: OmniglotDataset | FewShotImageSet, *, progress: bool = True,
          params: Params | None = None) -> TrainResult:
    """Meta-train ``cfg.method`` on the training classes of ``dataset``, then evaluate on the test classes.

    ``params``: start from these instead of a fresh initialisation (e.g. a checkpoint's). A step whose loss is
    not finite stops training; the run is then marked ``diverged`` (with the iteration) and not evaluated.
    Throughput (``episodes_per_second``) counts training tasks per second of training after the first two steps
    (which include compilation under the default policy).
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    _check_channels(cfg, dataset)
    split = dataset_split(cfg, dataset)
    if len(split.train) < cfg.train_ways:
        raise InvalidArgumentError(f"train_ways = {cfg.train_ways} exceeds the {len(split.train)} training classes")
    sampler = EpisodeSampler(dataset, cfg.train_ways, cfg.shots, cfg.train_queries, seed=cfg.seed,
                             classes=split.train, device=device)
    net = build_backbone(cfg)
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
        want = it == 1 or it % cfg.log_every == 0 or it == cfg.iterations
        stats = outer_step(step, sampler, theta, opt, cfg.meta_batch, want)
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
    if cfg.dataset != "omniglot":
        raise InvalidArgumentError(f"checkpoint {str(path)!r} was trained on {cfg.dataset}; the 20 official one-shot "
                                   "runs are Omniglot characters and need an omniglot model")
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
