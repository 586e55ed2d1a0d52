"""``convtheory fewshot``: meta-train a few-shot classifier on real data and evaluate it on held-out classes.

    convtheory fewshot --dataset omniglot --root data/omniglot --method maml --ways 5 --shots 1 --device cpu
        [--iterations 1000] [--time-limit SECONDS] [--checkpoint model.pt] [--results results.csv] [--json]
    convtheory fewshot --dataset miniimagenet|fc100|cifarfs --root PATH --method protonet ...

Data: ``omniglot`` (grey 28x28 characters, a seeded random split of characters, ``--split``) or a colour benchmark
read from the folder ``--root`` in any of the community's forms (:func:`convtheory.fewshot.load_imageset`):
``miniimagenet`` (84x84), ``fc100``, ``cifarfs`` (32x32). Those train on the train split's classes and test on the
test split's, as the files give them, normalised per channel by the training split's statistics; their defaults
are Conv-4 with max-pool (32 filters for the optimisation-based methods, 64 for protonet / ridge) and Finn et
al.'s miniImageNet inner loop (B = 4, N = 5, alpha = 0.01, 10 steps at test time). ``--cache-dir`` keeps decoded
JPEG / PNG sources as ``.npz`` files for the next run.

Methods: maml, fomaml, hfmaml, reptile, anil, imaml (through :func:`convtheory.hypergrad.meta_gradient`, tasks
vectorised with vmap, compiled from the second step on) and the metric baselines protonet and ridge (see
:mod:`convtheory.fewshot.train`). Evaluation: ``--eval-episodes`` (600) fixed test episodes from held-out
characters, mean accuracy and 95% interval 1.96 sd / sqrt(n). A progress bar on stderr shows the running training
accuracy and the throughput (episodes per second); ``--json`` prints exactly one JSON object on stdout (the results
row) and no progress. ``--checkpoint`` saves the trained parameters and config (score them on the 20 official runs
with ``convtheory omniglot-runs --model PATH``); ``--results`` appends the run as one row of a tidy CSV;
``--init`` starts from a checkpoint (with ``--iterations 0``: evaluate it only).

Exit status: 0 done, 1 training diverged (loss not finite; recorded with its iteration), 2 unusable input (one
line on stderr naming the value).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from ..types import InvalidArgumentError
from .backbones import BACKBONES, POOLS
from .train import (
    COMPILE,
    DATASET_DEFAULTS,
    DATASETS,
    IMAGESETS,
    METHODS,
    FewShotConfig,
    append_results,
    load_checkpoint,
    load_dataset,
    resolve_device,
    save_checkpoint,
    summary_frame,
    train,
)

COMMAND = "fewshot"


def _split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"split {text!r} must be three comma-separated fractions, e.g. 0.6,0.2,0.2")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"split {text!r} must have 3 fractions (train, val, test)")
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FewShotConfig()
    a = parser.add_argument
    a("--dataset", choices=DATASETS, default="omniglot",
      help="omniglot (default), or miniimagenet, fc100, cifarfs read from --root in the community's file forms")
    a("--root", required=True, help="the data: Omniglot archives or an unzipped folder (e.g. data/omniglot); for "
                                    "the colour sets the folder holding their train and test split files")
    a("--image-size", type=int, default=None, help="image side in pixels (default: omniglot 28, miniimagenet 84, "
                                                   "fc100 and cifarfs 32)")
    a("--cache-dir", default=None, help="colour sets: keep decoded CSV / folder images here as .npz files")
    a("--method", choices=METHODS, default="maml")
    a("--ways", type=int, default=d.ways, help="classes per task (default 5)")
    a("--shots", type=int, default=d.shots, help="support examples per class K (default 1)")
    a("--queries", type=int, default=d.queries, help="query examples per class (default 15)")
    a("--train-queries", type=int, default=None, help="query examples per class in training (default --queries)")
    a("--train-ways", type=int, default=None, help="classes per training task, protonet/ridge (default --ways)")
    a("--backbone", choices=sorted(BACKBONES), default=d.backbone)
    a("--hidden", type=int, default=None, help="conv4 filters per layer (default 64; on the colour sets 32 for "
                                               "the optimisation-based methods, 64 for protonet and ridge)")
    a("--pool", choices=POOLS, default=None,
      help="conv4: stride-2 convs (default on omniglot) or max-pool (default on the colour sets)")
    a("--meta-batch", type=int, default=None, help="tasks per outer step B (default per method, 8)")
    a("--inner-steps", type=int, default=None, help="inner GD steps N (default per method)")
    a("--inner-lr", type=float, default=None, help="inner step alpha (default per method; MAML 0.4)")
    a("--eval-steps", type=int, default=None, help="inner steps at test time (default N; reptile 20)")
    a("--outer-lr", type=float, default=d.outer_lr, help="Adam step beta (default 1e-3)")
    a("--lam", type=float, default=d.lam, help="iMAML's lambda; the ridge head's initial lambda (default 2)")
    a("--cg-steps", type=int, default=d.cg_steps, help="iMAML's conjugate-gradient steps Q (default 5)")
    a("--iterations", type=int, default=d.iterations, help="outer steps (default 1000; 0: evaluate --init only)")
    a("--time-limit", type=float, default=None, help="stop training after this many seconds")
    a("--eval-episodes", type=int, default=d.eval_episodes, help="fixed test episodes (default 600)")
    a("--eval-batch", type=int, default=d.eval_batch, help="test episodes per vectorised batch (default 25)")
    a("--split", type=_split, default=None, help="omniglot: train,val,test fractions of characters (default "
                                                 "0.6,0.2,0.2); the colour sets' splits are given by their files")
    a("--no-rotations", action="store_true", help="omniglot: do not add rotated characters as classes")
    a("--seed", type=int, default=d.seed)
    a("--device", default=d.device, help="cpu, cuda or cuda:N (default cpu)")
    a("--compile", choices=COMPILE, default=d.compile, help="compile policy of the meta-gradient (default auto)")
    a("--init", default=None, help="start from this checkpoint's parameters (its method and backbone must match)")
    a("--checkpoint", default=None, help="save parameters and config here (torch.save)")
    a("--results", default=None, help="append the run's row to this CSV")
    a("--history", default=None, help="write the training curve (iteration, episodes, loss, acc, seconds) here")
    a("--json", action="store_true", help="print one JSON object (the results row); no progress bar")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``fewshot`` subcommand to an argparse subparsers object; its handler is ``args.func``."""
    parser = subparsers.add_parser(COMMAND, help="meta-train and evaluate a few-shot classifier on real data",
                                   description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def config_from_args(args: argparse.Namespace) -> FewShotConfig:
    """The run's config; options left out take the dataset's and the method's defaults."""
    if args.dataset in IMAGESETS and args.split is not None:
        raise InvalidArgumentError(f"--split applies to omniglot only; {args.dataset}'s train / val / test classes are "
                                   "given by its split files")
    extra = {} if args.split is None else {"split": args.split}
    return FewShotConfig(
        method=args.method, dataset=args.dataset, ways=args.ways, shots=args.shots, queries=args.queries,
        train_queries=args.train_queries, train_ways=args.train_ways, backbone=args.backbone, hidden=args.hidden,
        pool=args.pool, meta_batch=args.meta_batch, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
        eval_steps=args.eval_steps, outer_lr=args.outer_lr, lam=args.lam, cg_steps=args.cg_steps,
        iterations=args.iterations, time_limit=args.time_limit, eval_episodes=args.eval_episodes,
        eval_batch=args.eval_batch, seed=args.seed, image_size=args.image_size,
        rotations=False if args.no_rotations else None, device=args.device, compile=args.compile, **extra,
    )


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def handler(args: argparse.Namespace) -> int:
    """Train and evaluate for parsed ``args``; print a summary (or one JSON object); return 0, 1 or 2."""
    warnings.filterwarnings("ignore")
    cfg = config_from_args(args)
    resolve_device(cfg.device)  # refuse an unusable device before reading data
    init = None
    if args.init is not None:
        icfg, init, _ = load_checkpoint(args.init)
        have, want = DATASET_DEFAULTS[icfg.dataset]["channels"], DATASET_DEFAULTS[cfg.dataset]["channels"]
        if have != want or (icfg.image_size != cfg.image_size and icfg.backbone == "conv4" and icfg.pool == "max"
                            and init.get("head.weight") is not None):
            raise InvalidArgumentError(
                f"--init {args.init!r} was trained on {icfg.dataset} ({have}-channel {icfg.image_size}x"
                f"{icfg.image_size} images); it cannot take {cfg.dataset}'s {want}-channel {cfg.image_size}x"
                f"{cfg.image_size} images (pass --image-size {icfg.image_size} if only the size differs)")
        if (icfg.method, icfg.backbone, icfg.hidden, icfg.pool, icfg.ways) != (
                cfg.method, cfg.backbone, cfg.hidden, cfg.pool, cfg.ways):
            raise InvalidArgumentError(
                f"--init {args.init!r} holds a {icfg.method} {icfg.backbone}-{icfg.hidden} ({icfg.pool}) "
                f"{icfg.ways}-way model; pass --method {icfg.method} --backbone {icfg.backbone} --hidden "
                f"{icfg.hidden} --pool {icfg.pool} --ways {icfg.ways} to use it")
    elif cfg.iterations == 0:
        raise InvalidArgumentError("--iterations 0 evaluates a trained model only; give it with --init CHECKPOINT")
    dataset = load_dataset(cfg, args.root, cache_dir=args.cache_dir)
    rc = cfg.resolved()
    if not args.json:
        wider = f" (trained {rc.train_ways}-way)" if rc.train_ways != cfg.ways else ""
        net = f"{cfg.backbone}-{cfg.hidden} ({cfg.pool})" if cfg.backbone == "conv4" else cfg.backbone
        if cfg.dataset in IMAGESETS:
            split = dataset.class_split
            classes = (f"{len(split.train)} train / {len(split.test)} test classes of {cfg.image_size}x"
                       f"{cfg.image_size} images ({dataset.form} form; normalised by the train split's mean "
                       f"{', '.join(f'{m:.3f}' for m in dataset.mean)})")
        else:
            classes = f"{dataset.num_classes} classes ({'with' if cfg.rotations else 'without'} rotations)"
        print(f"fewshot {cfg.dataset} {cfg.method}: {cfg.ways}-way {cfg.shots}-shot{wider}, {classes}, {net}, "
              f"B={rc.meta_batch} N={rc.inner_steps} alpha={rc.inner_lr:g} beta={rc.outer_lr:g}, "
              f"device {cfg.device}", flush=True)
    result = train(cfg, dataset, progress=not args.json, params=init)
    s = dict(result.summary)
    s["checkpoint"] = args.checkpoint
    if args.checkpoint:
        save_checkpoint(args.checkpoint, result.config, result.params, s)
    row = summary_frame(s)
    if args.results:
        append_results(args.results, row)
    if args.history:
        append_results(args.history, result.history.assign(method=cfg.method, seed=cfg.seed))
    if args.json:
        print(json.dumps({k: _json_value(v) for k, v in row.iloc[0].to_dict().items()}, default=str))
    else:
        print(f"trained {s['iterations_run']} iterations ({s['train_episodes']} episodes) in "
              f"{s['train_seconds']:.1f} s, {s['episodes_per_second']:.1f} episodes/s; "
              f"final training accuracy {100 * s['final_train_acc']:.1f}%")
        if s["diverged"]:
            print(f"DIVERGED at iteration {s['diverged_at']} (loss not finite); not evaluated")
        elif s["test_episodes"]:
            print(f"test accuracy on {s['test_episodes']} episodes of {s['test_classes']} held-out classes: "
                  f"{100 * s['accuracy']:.2f}% +- {100 * s['ci95']:.2f}% (95% CI, 1.96 sd/sqrt(n); "
                  f"transductive batch norm)")
        for what, path in (("checkpoint", args.checkpoint), ("results", args.results), ("history", args.history)):
            if path:
                print(f"{what}: {path}")
    return 1 if s["diverged"] else 0


def _standalone(argv: list[str] | None = None) -> int:
    from ..cli import run_alone

    return run_alone(register, argv)


if __name__ == "__main__":
    sys.exit(_standalone())
