"""Figure 10 on Omniglot: MAML, first-order MAML and Reptile learning curves, one resumable command.

    python -m experiments.fewshot_curves --profile test|cpu|full [--seeds 0 1 ...] [--results results]
        [--workers 2] [--figures figures] [--tables paper/tables] [--device cpu|cuda] [--root data/omniglot]

The synthetic figure 10 (:mod:`experiments.maml_fo_reptile`) shows, on quadratic tasks, MAML's exact meta-gradient
vanishing, first-order MAML stalling at an O(alpha) floor close to MAML, and Reptile stalling at a different fixed
point. This module asks whether that ordering shows up on a real benchmark: Omniglot 5-way 1-shot, trained by
maml, fomaml and reptile with the package's engines (:mod:`convtheory.fewshot.train`), recording the learning curve:

- training loss and running training accuracy (the meta-batch's query accuracy after adaptation; Reptile's is
  measured on examples it adapted on) every ``log_every`` iterations;
- held-out **validation** accuracy on a fixed set of validation episodes (``val_episodes``: 100 in the cpu and full
  profiles, drawn once with seed ``val_seed`` from the validation characters of the package's 60/20/20 character
  split, so the test characters are never looked at during training) at iteration 0, every ``val_every_seconds``
  of training (cpu: 30 s) or every ``val_every`` iterations (test, full), and at the end;
- the final **test** accuracy on 600 fixed test episodes of held-out characters with its 95% interval
  1.96 sd/sqrt(n) (the test profile: 10), exactly as :func:`convtheory.fewshot.train.train` evaluates.

How the curve is recorded: :func:`train` has no mid-training hook, and training in chunks with ``train(params=)``
would restart Adam's moments (and re-seed the task stream) at every chunk. So :func:`train_curve` runs the same loop
as :func:`convtheory.fewshot.train.train`, from the same building blocks (``EpisodeSampler`` seeded by the run's
seed, ``make_step``, one Adam optimiser for the whole run), and pauses it at each checkpoint to evaluate with
:func:`convtheory.fewshot.train.evaluate`. The loop's parameters are those train() reaches after the same number of
iterations (tests/experiments/test_fewshot_curves.py checks they are bitwise equal). Time on the curves is
**training** wall-clock seconds: the clock stops while validating, so the time limit buys the same training as
train()'s, and the validation cost is recorded separately (``eval_seconds``).

Profiles (5-way 1-shot, eager ``compile="never"`` on CPU):

- ``test``: conv4-8, 4 iterations, validation every 2 iterations on 10 episodes, 10 test episodes; seconds.
- ``cpu``: the configurations of :func:`experiments.fewshot_table.run_config` for the cpu profile: time-limited
  training, maml 240 s and fomaml 180 s with conv4-32, beta = 3e-3, 5 training queries; reptile 300 s with the
  package defaults (conv4-64, beta = 1e-3, 15 training queries, 5 inner steps of 0.1, 20 test-time steps);
  validation every 30 s of training on 100 episodes. One seed by default. With 2 workers on 2 cores: about
  8 minutes (measured 7.6 min: reptile's run, 300 s of training plus 11 validations and 600 test episodes with 20
  adaptation steps, 7.1 min, beside maml then fomaml, 7.5 min; :data:`RUN_ORDER`). The iterations a time limit buys
  depend on the machine's load (MAML: 3396 steps in 240 s on idle cores, 1727 under a load of 2 on 2 cores).
- ``full``: the papers' GPU configurations (:func:`experiments.fewshot_table.full_overrides`; conv4-64), validation
  every 1000 iterations on 100 episodes, seeds 0, 1, 2; ``--device cuda`` by default when a GPU is present.

Outputs: ``<figures>/fewshot_curves.png`` and ``.pdf`` (validation accuracy against iterations and against
training seconds, one line per method; a min-max band over seeds when there are several, else the 95% interval
of the validation estimate; the final test accuracy with its interval in the legend and as a marker at the end of
each curve), ``<figures>/fewshot_curves.csv`` (the tidy curve table: method, seed, kind = train / val / test,
iteration, episodes, seconds, loss, accuracy, ci95, n_episodes) and ``<tables>/fewshot_curves.tex`` (per method:
final test accuracy, interval, iterations, minutes, and a one-sentence verdict on whether the synthetic ordering
shows up; :func:`verdicts`). The verdict compares methods on the same 600 test episodes (paired differences, so
their interval is that of the difference), calls FO-MAML "close" to MAML within :data:`CLOSE_POINTS` percentage
points, calls Reptile "different" when the paired interval excludes 0, and says when the configurations differ
(with, for FO-MAML, both validation accuracies at equal training time) or a validation curve is still rising
(gained more than :data:`RISING_POINTS` over the last third of training: no fixed point reached): it reports, it
never forces.

Runs go through :func:`convtheory.sweep.run_sweep` on the store ``<results>/<profile>``: a killed command restarts
where it stopped and finished runs are reused. The data root reaches the run function through the environment
variable ``CONVTHEORY_FEWSHOT_ROOT`` (:data:`experiments.fewshot_table.ENV_ROOT`, set by :func:`main`), so a run's
key depends on what it computes, not on where the files lie. This module defines no ``EXPERIMENT``: the figures
command must stay short; few-shot training runs separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from convtheory.sweep import RunSpec, grid, run_sweep

from . import fewshot_table as ft

version = 1
NAME = "fewshot_curves"
FN = "experiments.fewshot_curves:run"
PROFILES = ("test", "cpu", "full")
METHODS = ("maml", "fomaml", "reptile")
WAYS, SHOTS = 5, 1
LABELS = {"maml": "MAML", "fomaml": "FO-MAML", "reptile": "Reptile"}
COLORS = {"maml": "C0", "fomaml": "C1", "reptile": "C2"}
DEFAULT_SEEDS = {"test": (0,), "cpu": (0,), "full": (0, 1, 2)}
#: The order the runs are submitted in: the longest (Reptile: 300 s of training and 20-step evaluations) first, so
#: that with 2 workers it runs beside MAML then FO-MAML (cpu profile: ~8 minutes instead of ~10).
RUN_ORDER = ("reptile", "maml", "fomaml")
#: FO-MAML counts as "close to MAML" when their final test accuracies differ by at most this many points.
CLOSE_POINTS = 2.0
#: A validation curve counts as "still rising" when it gained more than this many points over the last third of
#: training.
RISING_POINTS = 1.0
#: The validation schedule of each profile: episodes per checkpoint, checkpoint every K iterations and/or every
#: S seconds of training (None: not used), and the seed of the fixed validation episodes.
SCHEDULES: dict[str, dict[str, Any]] = {
    "test": dict(val_episodes=10, val_every=2, val_every_seconds=None, val_seed=2),
    "cpu": dict(val_episodes=100, val_every=None, val_every_seconds=30.0, val_seed=2),
    "full": dict(val_episodes=100, val_every=1000, val_every_seconds=None, val_seed=2),
}
CURVE_COLUMNS = ("method", "label", "seed", "kind", "iteration", "episodes", "seconds", "loss", "accuracy", "ci95",
                 "n_episodes", "profile")


# ======================================================================================================= configs
def run_config(profile: str, method: str) -> dict[str, Any]:
    """The :class:`~convtheory.fewshot.train.FewShotConfig` fields (besides method, ways, shots, seed, device) of
    one 5-way 1-shot run of ``profile``; the cpu and full profiles are experiments.fewshot_table's."""
    if profile not in PROFILES:
        raise ValueError(f"profile = {profile!r} is unknown; valid: {', '.join(PROFILES)}")
    if method not in METHODS:
        raise ValueError(f"method = {method!r} is unknown; valid: {', '.join(METHODS)}")
    if profile == "test":
        return dict(hidden=8, queries=5, iterations=4, eval_episodes=10, eval_batch=10, compile="never",
                    outer_lr=1e-2, log_every=1)
    cfg = ft.run_config(profile, method, WAYS, SHOTS)
    cfg["log_every"] = 5 if profile == "cpu" else 50
    return cfg


def specs(profile: str, methods: Sequence[str] | None = None, device: str = "cpu",
          seeds: Iterable[int] | None = None) -> list[RunSpec]:
    """The training runs of ``profile``: methods x seeds (default :data:`DEFAULT_SEEDS`)."""
    methods = list(methods or METHODS)
    bad = [m for m in methods if m not in METHODS]
    if bad or profile not in PROFILES:
        raise ValueError(f"unknown method(s) {bad} or profile {profile!r}; methods: {', '.join(METHODS)}; "
                         f"profiles: {', '.join(PROFILES)}")
    seeds = tuple(DEFAULT_SEEDS[profile] if seeds is None else seeds)
    out = []
    for m in sorted(methods, key=list(RUN_ORDER).index):
        out += grid(NAME, FN, {"method": [m]}, seeds=seeds,
                    fixed={"ways": WAYS, "shots": SHOTS, "profile": profile, "device": device,
                           "overrides": run_config(profile, m), **SCHEDULES[profile]})
    return out


# =========================================================================================== the training loop
@dataclass(frozen=True, eq=False)
class Curve:
    """One run's learning curve: ``train`` (iteration, episodes, seconds, loss, accuracy), ``val`` (iteration,
    episodes, seconds, accuracy, ci95, n_episodes), the test evaluation, the final parameters, and totals."""

    config: Any
    params: dict
    train: pd.DataFrame
    val: pd.DataFrame
    test: Any
    iterations: int
    seconds: float
    eval_seconds: float
    diverged_at: int | None


def train_curve(cfg, dataset, *, val_episodes: int = 100, val_every: int | None = None,
                val_every_seconds: float | None = None, val_seed: int = 2, params: dict | None = None,
                progress: bool = False) -> Curve:
    """Meta-train ``cfg`` on ``dataset`` (Omniglot) as :func:`convtheory.fewshot.train.train` does, evaluating on
    ``val_episodes`` fixed validation episodes at iteration 0, every ``val_every`` iterations and/or every
    ``val_every_seconds`` seconds of training, and at the end; then on ``cfg.eval_episodes`` test episodes.

    The clock (``seconds``, and ``cfg.time_limit``) counts training only: it stops while validating.
    """
    import torch

    from convtheory.fewshot.episodes import EpisodeSampler, split_classes
    from convtheory.fewshot.train import (EvalResult, build_backbone, evaluate, init_params, make_step, outer_step,
                                          resolve_device)

    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    split = split_classes(dataset, cfg.split, seed=cfg.split_seed)
    sampler = EpisodeSampler(dataset, cfg.train_ways, cfg.shots, cfg.train_queries, seed=cfg.seed,
                             classes=split.train, device=device)
    net = build_backbone(cfg)
    theta = init_params(cfg, net, device) if params is None else {k: v.to(device) for k, v in params.items()}
    theta = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    opt = torch.optim.Adam(list(theta.values()), lr=cfg.outer_lr)
    step = make_step(cfg, net)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train_rows: list[dict] = []
    val_rows: list[dict] = []
    clock = 0.0
    eval_seconds = 0.0

    def validate(it: int) -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        r = evaluate(cfg, net, {k: v.detach() for k, v in theta.items()}, dataset, split.val,
                     episodes=val_episodes, seed=val_seed, device=device)
        eval_seconds += time.perf_counter() - t
        val_rows.append({"iteration": it, "episodes": it * cfg.meta_batch, "seconds": clock, "accuracy": r.mean,
                         "ci95": r.ci95, "n_episodes": r.n})
        if progress:
            print(f"[{NAME}] {cfg.method} it {it} ({clock:.0f} s): validation {100 * r.mean:.1f}%", file=sys.stderr)

    if val_episodes:
        validate(0)
    next_time = val_every_seconds
    diverged_at = None
    it = 0
    for it in range(1, cfg.iterations + 1):
        t0 = time.perf_counter()
        want = it == 1 or it % cfg.log_every == 0 or it == cfg.iterations
        stats = outer_step(step, sampler, theta, opt, cfg.meta_batch, want)
        sync()
        if want:
            loss, acc = float(stats["loss"]), float(stats["acc"])
        clock += time.perf_counter() - t0
        if want:
            train_rows.append({"iteration": it, "episodes": it * cfg.meta_batch, "seconds": clock, "loss": loss,
                               "accuracy": acc})
            if not math.isfinite(loss) or any(not bool(torch.isfinite(v).all()) for v in theta.values()):
                diverged_at = it
                break
        if it == cfg.iterations or (cfg.time_limit is not None and clock >= cfg.time_limit):
            break
        due = bool(val_every) and it % val_every == 0
        if next_time is not None and clock >= next_time:
            due = True
            while next_time <= clock:
                next_time += val_every_seconds
        if due and val_episodes:
            validate(it)
    iterations = it if cfg.iterations else 0
    final = {k: v.detach() for k, v in theta.items()}
    if diverged_at is None:
        if val_episodes and (not val_rows or val_rows[-1]["iteration"] != iterations):
            validate(iterations)
        t = time.perf_counter()
        test = evaluate(cfg, net, final, dataset, split.test, device=device)
        eval_seconds += time.perf_counter() - t
    else:
        test = EvalResult(np.zeros(0))
    return Curve(cfg, final, pd.DataFrame(train_rows, columns=["iteration", "episodes", "seconds", "loss", "accuracy"]),
                 pd.DataFrame(val_rows, columns=["iteration", "episodes", "seconds", "accuracy", "ci95", "n_episodes"]),
                 test, iterations, clock, eval_seconds, diverged_at)


# ================================================================================================ run function
def run(params: dict, seed: int) -> pd.DataFrame:
    """One method's learning curve on Omniglot 5-way 1-shot: rows of kind "train", "val" and one "test" row (with
    the per-episode test accuracies as JSON, for paired comparisons), plus the run's totals and config."""
    from convtheory.fewshot.train import FewShotConfig

    method = params["method"]
    cfg = FewShotConfig(method=method, dataset="omniglot", ways=int(params["ways"]), shots=int(params["shots"]),
                        seed=int(seed), device=params.get("device", "cpu"), **params.get("overrides", {}))
    t0 = time.perf_counter()
    dataset = ft._dataset(str(ft._data_root()), cfg.image_size, cfg.rotations)
    c = train_curve(cfg, dataset, val_episodes=int(params["val_episodes"]), val_every=params.get("val_every"),
                    val_every_seconds=params.get("val_every_seconds"), val_seed=int(params.get("val_seed", 2)))
    test_row = {"iteration": c.iterations, "episodes": c.iterations * c.config.meta_batch, "seconds": c.seconds,
                "accuracy": c.test.mean, "ci95": c.test.ci95, "n_episodes": c.test.n,
                "test_accuracies": json.dumps([round(float(a), 6) for a in c.test.accuracies])}
    out = pd.concat([c.train.assign(kind="train"), c.val.assign(kind="val"),
                     pd.DataFrame([test_row]).assign(kind="test")], ignore_index=True)
    out["method"] = method
    out["diverged"] = c.diverged_at is not None
    out["diverged_at"] = c.diverged_at if c.diverged_at is not None else -1
    out["iterations_run"] = c.iterations
    out["train_seconds"] = c.seconds
    out["eval_seconds"] = c.eval_seconds
    out["seconds_total"] = time.perf_counter() - t0
    out["device"] = str(c.config.device)
    out["config"] = json.dumps(c.config.as_dict(), sort_keys=True)
    print(f"[{NAME}] {method} seed {seed}: test {100 * c.test.mean:.2f}% +- {100 * c.test.ci95:.2f}% "
          f"({c.iterations} steps, {c.seconds / 60:.1f} min training, {c.eval_seconds / 60:.1f} min evaluating)",
          file=sys.stderr)
    return out


run.version = version


# ================================================================================================== analysis
def curve_table(table: pd.DataFrame) -> pd.DataFrame:
    """The tidy curve table (:data:`CURVE_COLUMNS`) of the sweep table, sorted by method, seed, kind, iteration."""
    if not len(table):
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    t = table.copy()
    t["label"] = t["method"].map(LABELS)
    t["accuracy"] = 100 * t["accuracy"].astype(float)
    t["ci95"] = 100 * t["ci95"].astype(float)
    for c in CURVE_COLUMNS:
        if c not in t:
            t[c] = np.nan
    t["_m"] = t["method"].map(list(METHODS).index)
    t["_k"] = t["kind"].map({"train": 0, "val": 1, "test": 2})
    t = t.sort_values(["_m", "seed", "_k", "iteration"], kind="stable")
    return t[list(CURVE_COLUMNS)].reset_index(drop=True)


def _per_episode(table: pd.DataFrame, method: str) -> np.ndarray | None:
    """The method's per-episode test accuracies averaged over its seeds (same fixed episodes for every seed)."""
    rows = table[(table["method"] == method) & (table["kind"] == "test") & (~table["diverged"].astype(bool))]
    if not len(rows):
        return None
    accs = [np.asarray(json.loads(s), dtype=float) for s in rows["test_accuracies"]]
    if len({a.size for a in accs}) != 1 or accs[0].size == 0:
        return None
    return np.mean(accs, axis=0)


def _ci(x: np.ndarray) -> float:
    return float(1.96 * x.std() / math.sqrt(x.size)) if x.size else math.nan


def _rising(table: pd.DataFrame, method: str) -> bool | None:
    """Whether the validation accuracy (mean over seeds) still rose over the last third of training time by more
    than :data:`RISING_POINTS` (the validation episodes are the same at every checkpoint, so a change is not
    episode-sampling noise)."""
    v = table[(table["method"] == method) & (table["kind"] == "val")]
    if v["iteration"].nunique() < 3:
        return None
    by_seed = []
    for _, s in v.groupby("seed"):
        s = s.sort_values("iteration")
        t_end = float(s["seconds"].iloc[-1])
        earlier = s[s["seconds"] <= 2 * t_end / 3]
        if not len(earlier):
            return None
        by_seed.append(float(s["accuracy"].iloc[-1]) - float(earlier["accuracy"].iloc[-1]))
    return bool(100 * np.mean(by_seed) > RISING_POINTS)


def _matched_time(table: pd.DataFrame, a: str, b: str) -> tuple[float, float, float] | None:
    """(t, validation accuracy of a at t, of b at t), in %, at the shorter of the two runs' training times (mean
    over seeds of each seed's curve, linearly interpolated between checkpoints)."""
    curves = {}
    for m in (a, b):
        v = table[(table["method"] == m) & (table["kind"] == "val")] if len(table) else table
        if not len(v):
            return None
        curves[m] = [r.sort_values("iteration") for _, r in v.groupby("seed")]
    t = min(float(r["seconds"].iloc[-1]) for m in curves for r in curves[m])
    acc = [100 * float(np.mean([np.interp(t, r["seconds"].to_numpy(float), r["accuracy"].to_numpy(float))
                                for r in curves[m]])) for m in (a, b)]
    return t, acc[0], acc[1]


def _config_diff(table: pd.DataFrame, a: str, b: str) -> str:
    """The FewShotConfig fields (those that shape training and evaluation) in which method b's runs differ from
    method a's, as "field a/b" pairs."""
    fields = ("hidden", "outer_lr", "meta_batch", "inner_steps", "inner_lr", "eval_steps", "train_queries",
              "time_limit", "iterations")
    ca = table[(table["method"] == a)]["config"]
    cb = table[(table["method"] == b)]["config"]
    if not len(ca) or not len(cb):
        return ""
    da, db = json.loads(ca.iloc[0]), json.loads(cb.iloc[0])
    names = {"hidden": "filters", "outer_lr": "beta", "meta_batch": "B", "inner_steps": "N", "inner_lr": "alpha",
             "eval_steps": "test-time steps", "train_queries": "training queries", "time_limit": "seconds",
             "iterations": "iteration cap"}
    diffs = [f"{names[f]} {da.get(f)}/{db.get(f)}" for f in fields if da.get(f) != db.get(f)]
    return ", ".join(diffs)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: final test accuracy (%, mean over seeds; the interval is the 95% interval over the fixed test
    episodes of the seed-averaged accuracies), the seed spread, iterations, training minutes, and the verdict."""
    rows = []
    for m in METHODS:
        t = table[(table["method"] == m) & (table["kind"] == "test")] if len(table) else table
        if not len(t):
            continue
        ok = t[~t["diverged"].astype(bool)]
        pe = _per_episode(table, m)
        rows.append({
            "method": m, "label": LABELS[m], "seeds": int(t["seed"].nunique()),
            "diverged": int(t["diverged"].astype(bool).sum()),
            "accuracy": 100 * float(pe.mean()) if pe is not None else math.nan,
            "ci95": 100 * _ci(pe) if pe is not None else math.nan,
            "seed_sd": 100 * float(ok["accuracy"].astype(float).std(ddof=1)) if len(ok) > 1 else math.nan,
            "test_episodes": int(pe.size) if pe is not None else 0,
            "iterations": float(t["iterations_run"].astype(float).mean()),
            "minutes": float(t["train_seconds"].astype(float).mean()) / 60,
            "eval_minutes": float(t["eval_seconds"].astype(float).mean()) / 60,
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["verdict"] = [verdicts(table).get(m, "") for m in out["method"]]
    return out


def _paired(table: pd.DataFrame, a: str, b: str) -> tuple[float, float] | None:
    """(mean of b - a, its 95% interval), in points, over the shared fixed test episodes."""
    pa, pb = _per_episode(table, a), _per_episode(table, b)
    if pa is None or pb is None or pa.size != pb.size:
        return None
    d = pb - pa
    return 100 * float(d.mean()), 100 * _ci(d)


def verdicts(table: pd.DataFrame) -> dict[str, str]:
    """One sentence per method on whether figure 10's ordering (FO-MAML close to MAML; Reptile at a different fixed
    point) shows up in the final test accuracies, from paired differences on the shared test episodes."""
    out: dict[str, str] = {}

    def rising_clause(m: str) -> str:
        r = _rising(table, m)
        if r is None:
            return ""
        return ("; its validation accuracy was still rising over the last third of training, so it had not reached "
                "a fixed point" if r else "; its validation accuracy had levelled off over the last third of training")

    if _per_episode(table, "maml") is None:
        for m in METHODS:
            out[m] = "no verdict: MAML has no finished run to compare with"
        return out
    out["maml"] = "reference for the comparisons" + rising_clause("maml")
    fo = _paired(table, "maml", "fomaml")
    if fo is None:
        out["fomaml"] = "no verdict: no finished FO-MAML run on the same test episodes"
    else:
        d, c = fo
        if abs(d) <= CLOSE_POINTS:
            what = (f"within {abs(d):.1f} points of MAML (paired difference {d:+.1f} ± {c:.1f}), so figure 10's "
                    f"'first-order MAML close to MAML' shows up here")
        else:
            what = (f"{d:+.1f} ± {c:.1f} points from MAML (paired), more than {CLOSE_POINTS:g} points, so figure 10's "
                    f"'first-order MAML close to MAML' does not show up at this budget")
        diff = _config_diff(table, "maml", "fomaml")
        matched = _matched_time(table, "maml", "fomaml")
        at = (f"; at equal training time ({matched[0]:.0f} s) their validation accuracies were {matched[1]:.1f}% "
              f"and {matched[2]:.1f}%" if matched and diff else "")
        out["fomaml"] = ("FO-MAML is " + what + (f" (budgets differ: {diff})" if diff else "") + at
                         + rising_clause("fomaml"))
    rep = _paired(table, "maml", "reptile")
    if rep is None:
        out["reptile"] = "no verdict: no finished Reptile run on the same test episodes"
    else:
        d, c = rep
        diff = _config_diff(table, "maml", "reptile")
        rising = _rising(table, "reptile")
        its = int(table[(table["method"] == "reptile") & (table["kind"] == "test")]["iterations_run"].max())
        conf = f"configurations differ: {diff}, MAML/Reptile" if diff else ""
        if abs(d) > c and rising:
            what = (f"Reptile differs from MAML by {d:+.1f} ± {c:.1f} points (paired, the interval excludes 0), but "
                    f"its validation accuracy was still rising after {its} iterations, so the gap measures an "
                    f"unfinished run" + (f" ({conf})" if conf else "") + ", not figure 10's different fixed point")
        elif abs(d) > c:
            what = (f"Reptile differs from MAML by {d:+.1f} ± {c:.1f} points (paired, the interval excludes 0) with "
                    f"its validation accuracy levelled off, as a different fixed point would"
                    + (f", but the {conf}, so the gap cannot be laid to the fixed point alone" if conf else ""))
        else:
            what = (f"Reptile is indistinguishable from MAML ({d:+.1f} ± {c:.1f} points, paired), so figure 10's "
                    f"different fixed point does not show up in accuracy here" + (f" ({conf})" if conf else "")
                    + rising_clause("reptile"))
        out["reptile"] = what
    return out


# ====================================================================================================== figure
def plot(table: pd.DataFrame, summary: pd.DataFrame, profile: str):
    """Validation accuracy against iterations and against training seconds, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.3))
    val = table[table["kind"] == "val"] if len(table) else table
    summ = summary.set_index("method") if len(summary) else summary
    for m in METHODS:
        v = val[val["method"] == m] if len(val) else val
        if not len(v):
            continue
        s = summ.loc[m] if m in summ.index else None
        label = LABELS[m]
        if s is not None and np.isfinite(s["accuracy"]):
            label += (f": test {s['accuracy']:.1f} ± {s['ci95']:.1f}% "
                      f"({s['iterations']:.0f} it, {s['minutes']:.1f} min)")
        elif s is not None and s["diverged"]:
            label += ": diverged"
        seeds = sorted(v["seed"].unique())
        for ax, x in zip(axes, ("iteration", "seconds")):
            if len(seeds) == 1:
                r = v.sort_values("iteration")
                xs, mid = r[x].to_numpy(float), 100 * r["accuracy"].to_numpy(float)
                lo, hi = mid - 100 * r["ci95"].to_numpy(float), mid + 100 * r["ci95"].to_numpy(float)
            else:  # checkpoints differ between seeds when they are time-based: interpolate on a common grid
                curves = [r.sort_values("iteration") for _, r in v.groupby("seed")]
                end = min(float(r[x].iloc[-1]) for r in curves)
                xs = np.linspace(0, end, 50)
                ys = np.array([np.interp(xs, r[x].to_numpy(float), 100 * r["accuracy"].to_numpy(float))
                               for r in curves])
                mid, lo, hi = ys.mean(0), ys.min(0), ys.max(0)
            ax.plot(xs, mid, color=COLORS[m], marker="o", ms=3, label=label)
            ax.fill_between(xs, lo, hi, color=COLORS[m], alpha=0.18, lw=0)
            if s is not None and np.isfinite(s["accuracy"]):
                t = table[(table["method"] == m) & (table["kind"] == "test")]
                ax.errorbar([float(t[x].astype(float).mean())], [s["accuracy"]], yerr=[s["ci95"]], fmt="*",
                            ms=10, color=COLORS[m], mec="k", capsize=3)
    spread = ("band: min-max over seeds" if len(val) and val["seed"].nunique() > 1 else
              "band: 95% interval of each validation estimate")
    n_val = int(val["n_episodes"].max()) if len(val) else 0
    axes[0].set(xlabel="meta-iteration", ylabel=f"validation accuracy (%), {n_val} fixed episodes")
    axes[1].set(xlabel="training wall-clock seconds (validation time excluded)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7.5, loc="lower right", title="final test accuracy (star), 95% CI",
                   title_fontsize=7.5)
    fig.suptitle(f"Figure 10 on Omniglot 5-way 1-shot (profile {profile}): MAML, first-order MAML and Reptile "
                 f"learning curves; {spread}", fontsize=10)
    fig.tight_layout()
    return fig


# ====================================================================================================== LaTeX
def to_latex(summary: pd.DataFrame, profile: str) -> str:
    body = []
    for _, r in summary.iterrows():
        acc = "diverged" if not np.isfinite(r["accuracy"]) else f"{r['accuracy']:.2f}"
        ci = "" if not np.isfinite(r["ci95"]) else f"± {r['ci95']:.2f}"
        body.append([ft.tex(r["label"]), ft.tex(acc), ft.tex(ci), f"{r['iterations']:.0f}", f"{r['minutes']:.1f}",
                     ft.tex(r["verdict"] + ".")])
    n = int(summary["test_episodes"].max()) if len(summary) else 0
    seeds = int(summary["seeds"].max()) if len(summary) else 0
    cap = ft.tex(f"Figure 10 on Omniglot 5-way 1-shot (profile {profile}, {seeds} seed(s)): final test accuracy (%) "
                 f"on {n} fixed test episodes of held-out characters with its 95% interval 1.96 sd/sqrt(n), "
                 f"meta-iterations and minutes of training, and whether the synthetic figure 10's ordering "
                 f"(first-order MAML close to MAML, within {CLOSE_POINTS:g} points; Reptile at a different fixed "
                 f"point) shows up. Differences are paired over the same test episodes.")
    table = ft._longtable(r"lrlrrp{0.52\linewidth}", ["Method", "Accuracy", "95% CI", "Iterations", "Minutes",
                                                      "Verdict"], body, cap, "tab:fewshot-curves",
                          fixed=(0, 1, 2, 3, 4))
    return (f"% generated by python -m experiments.fewshot_curves --profile {profile}\n"
            f"% needs \\usepackage{{booktabs,longtable}}\n{table}\n")


# ======================================================================================================= driver
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_figure(profile: str = "cpu", *, methods: Sequence[str] | None = None, results: str | os.PathLike = "results",
                figures: str | os.PathLike = "figures", tables: str | os.PathLike = "paper/tables",
                device: str | None = None, workers: int = 1, root: str | os.PathLike | None = None,
                seeds: Iterable[int] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run what the store ``<results>/<profile>`` lacks, then write the figure, the curve CSV and the .tex; return
    a report (ran, cached, failed, paths, the curve table and the summary)."""
    import torch

    if profile not in PROFILES:
        raise ValueError(f"profile = {profile!r} is unknown; valid: {', '.join(PROFILES)}")
    if device is None:
        device = "cuda" if profile == "full" and torch.cuda.is_available() else "cpu"
    if workers < 1:
        raise ValueError(f"workers = {workers} is invalid; it must be >= 1")
    store = Path(results) / profile
    root = Path(root) if root is not None else ft.DATA
    all_specs = specs(profile, methods, device=device, seeds=seeds)
    threads = max(1, _cores() // workers)
    with ft._env(**{ft.ENV_ROOT: str(root.resolve())}):
        res = run_sweep(all_specs, store, executor="serial" if workers == 1 else "local", workers=workers,
                        progress=progress, threads=threads)
    table = res.table
    summary = summarize(table)
    curves = curve_table(table)
    figures, tables = Path(figures), Path(tables)
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    paths = {"png": figures / f"{NAME}.png", "pdf": figures / f"{NAME}.pdf", "csv": figures / f"{NAME}.csv",
             "tex": tables / f"{NAME}.tex"}
    import matplotlib.pyplot as plt

    fig = plot(table, summary, profile)
    for ext in ("png", "pdf"):
        fig.savefig(paths[ext], dpi=130, bbox_inches="tight")
    plt.close(fig)
    curves.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(to_latex(summary, profile) if len(summary) else
                            f"% python -m experiments.fewshot_curves --profile {profile}: no finished run\n")
    return {"profile": profile, "ran": res.ran, "cached": res.cached, "failed": res.failed,
            "diverged": res.diverged, "summary": summary, "sweep": res.summary(), "paths": paths, "curves": curves}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.fewshot_curves",
                                 description="Train maml, fomaml and reptile on Omniglot 5-way 1-shot (resumable), "
                                             "recording learning curves, and draw figure 10 on Omniglot.")
    ap.add_argument("--profile", choices=PROFILES, default="cpu",
                    help="test: seconds; cpu: ~8 min on 2 cores with --workers 2; full: the papers' GPU sizes")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="default: all three")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 (test, cpu); 0 1 2 (full)")
    ap.add_argument("--results", default="results", help="the results store's parent (store: RESULTS/PROFILE)")
    ap.add_argument("--figures", default="figures", help="where fewshot_curves.png/.pdf/.csv go")
    ap.add_argument("--tables", default="paper/tables", help="where fewshot_curves.tex goes")
    ap.add_argument("--root", default=str(ft.DATA), help="the Omniglot data (the background archives)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda for the full profile on a GPU)")
    ap.add_argument("--workers", type=int, default=1, help="parallel runs (1: in this process)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.device is not None:
        from convtheory.fewshot.train import resolve_device
        from convtheory.types import InvalidArgumentError

        try:
            resolve_device(args.device)
        except InvalidArgumentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.workers < 1:
        print(f"error: --workers {args.workers} is invalid; it must be >= 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = make_figure(args.profile, methods=args.methods, results=args.results, figures=args.figures,
                         tables=args.tables, device=args.device, workers=args.workers, root=args.root,
                         seeds=args.seeds, progress=not args.no_progress)
    print(f"[{NAME}] profile {args.profile}: {report['sweep']}; {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for k, err in report["failed"].items():
        print(f"[{NAME}] run {k} failed: {err.strip().splitlines()[-1]}", file=sys.stderr)
    s = report["summary"]
    if len(s):
        print(s[["label", "accuracy", "ci95", "iterations", "minutes", "verdict"]].to_string(index=False),
              file=sys.stderr)
    for what, path in report["paths"].items():
        print(f"{what}: {path}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
