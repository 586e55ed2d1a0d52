"""The few-shot results table: our measured Omniglot accuracies beside the published ones, one resumable command.

    python -m experiments.fewshot_table --profile test|cpu|full [--methods maml protonet ...]
        [--settings 5w1s 20w1s ...] [--results results] [--figures figures] [--tables paper/tables]
        [--device cpu|cuda] [--workers 1] [--root data/omniglot]

A grid of training runs (methods maml, fomaml, reptile, protonet, anil, imaml, as far as
``convtheory.fewshot.train.METHODS`` has them; Omniglot 5-way and 20-way, 1- and 5-shot), each a
:class:`convtheory.sweep.RunSpec` whose run function (:func:`run`) trains with :func:`convtheory.fewshot.train.train`,
evaluates on 600 fixed episodes of held-out characters (mean accuracy, 95% CI 1.96 sd/sqrt(n); the "test" profile
uses 20), saves the checkpoint next to the results store (``<results>/<profile>/fewshot_checkpoints/``) and, for
20-way 1-shot models, scores Lake et al.'s 20 official one-shot runs with that checkpoint
(:func:`convtheory.fewshot.runs.evaluate_runs` with :func:`convtheory.fewshot.train.checkpoint_scorer`). One more run
(:func:`run_mhd`) measures the MHD nearest-neighbour baseline on the 20 runs. Runs go through
:func:`convtheory.sweep.run_sweep` on the store ``<results>/<profile>``: a killed command restarts where it stopped
and finished runs are reused.

Outputs: ``<figures>/fewshot_table.csv`` (measured rows, labelled "measured", beside every published row, labelled
"published" with its source, from :mod:`experiments.published`; settings we cannot run, miniImageNet, are rows
"not run: needs data"; grid cells outside this invocation are "not run: not in this sweep"), ``<figures>/
fewshot_table_runs.csv`` (the 20 official runs: our best 20-way 1-shot model and the measured MHD baseline beside the
published error rates, with the protocol difference), and ``<tables>/fewshot_table.tex`` holding both tables
(longtable).

Profiles (the configuration of every run is stored in its row, column ``config``, as JSON):

- ``test``: 3 steps of conv4-16, 20 evaluation episodes, 5-way 1-shot, protonet and maml; seconds (the test suite).
- ``cpu``: the CPU default; training is time-limited per method and setting (:data:`CPU_TIME_LIMITS`, 150-480 s;
  the iteration cap 100 000 is never reached), then 600 evaluation episodes; every run <= 15 minutes on 2 idle
  cores. Settings follow what was measured to work on this machine (tests/fewshot/test_train.py, slow targets):
  protonet conv4-64 with 5 training queries per class (95.2% 5-way 1-shot after 600 s); the gradient methods
  conv4-32, beta = 3e-3, 5 training queries (MAML: 96.1% after 900 s, 85% running training accuracy after 340 steps);
  Reptile keeps the package defaults (15 training queries, beta = 1e-3: 62.6% after 300 s, commit f7cb34f). The
  whole grid (6 methods x 4 settings) is about 2.2 h of training plus about 40 min of evaluation on 2 idle cores,
  serially; subsets with ``--methods`` / ``--settings``.
- ``full``: the papers' GPU configurations where THEORY.md gives them (:func:`full_overrides`): conv4-64; MAML and
  FO-MAML 5-way B = 32, N = 1, alpha = 0.4, 20-way B = 16, N = 5, alpha = 0.1, 40 000 steps (THEORY.md §2, MAML's
  main.py); iMAML lambda = 2, 5 CG steps, N = 16 (5-way) / 25 (20-way), alpha = 0.1, B = 32, 20 000 steps (§8);
  ANIL B = 16, N = 5, alpha = 0.1 (§6, Raghu et al.'s Omniglot values) with MAML's 40 000 steps; Reptile B and steps
  of Nichol et al.'s Omniglot commands (§3: 5w1s transductive B = 10, 100k; 5w5s B = 5, 100k; 20-way B = 3, 200k), its
  inner loop at the package defaults (our inner loop is full-batch GD, theirs minibatch Adam); ProtoNet 40 000 steps
  of 8 tasks (Snell et al.'s settings are not in THEORY.md). ``--device cuda`` by default when a GPU is present.

Paths: the data root and the checkpoint folder reach the run functions through the environment variables
``CONVTHEORY_FEWSHOT_ROOT`` and ``CONVTHEORY_FEWSHOT_CHECKPOINTS`` (set by :func:`main`), so a run's key (its hash)
depends on what it computes, not on where the files lie.

This module defines no ``EXPERIMENT``: the figures command must stay short; few-shot training runs separately.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from convtheory.fewshot.train import METHODS as TRAIN_METHODS
from convtheory.sweep import RunSpec, grid, run_sweep

from . import published

version = 1
NAME = "fewshot_table"
FN = "experiments.fewshot_table:run"
MHD_FN = "experiments.fewshot_table:run_mhd"
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "omniglot"
ENV_ROOT = "CONVTHEORY_FEWSHOT_ROOT"
ENV_CHECKPOINTS = "CONVTHEORY_FEWSHOT_CHECKPOINTS"
CHECKPOINT_DIR = "fewshot_checkpoints"

PROFILES = ("test", "cpu", "full")
METHODS = tuple(m for m in ("maml", "fomaml", "reptile", "protonet", "anil", "imaml") if m in TRAIN_METHODS)
SETTINGS: dict[str, tuple[int, int]] = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}
TEST_METHODS = tuple(m for m in ("protonet", "maml") if m in METHODS)
LABELS = {"maml": "MAML", "fomaml": "FO-MAML", "reptile": "Reptile", "protonet": "ProtoNet", "anil": "ANIL",
          "imaml": "iMAML", "hfmaml": "HF-MAML", "ridge": "ridge head", "mhd": "MHD nearest neighbour"}
DATASET_LABELS = {"omniglot": "Omniglot", "miniimagenet": "miniImageNet"}

#: Training seconds per (method, setting) in the "cpu" profile: 5-way 1-shot from what was measured to work
#: (protonet ~2-3 min, MAML ~3-4 min, Reptile 5 min); 5-shot and 20-way steps cost more, so they get more time,
#: capped so that training plus 600 evaluation episodes stays under 15 minutes on 2 idle cores (Reptile's 20
#: test-time steps make its evaluation the costliest: ~8 min for 20-way 5-shot, measured at 40 min under a load of
#: 11 on 2 cores, so its training stays at 300 s).
CPU_TIME_LIMITS: dict[str, dict[str, float]] = {
    "protonet": {"5w1s": 150, "5w5s": 180, "20w1s": 300, "20w5s": 300},
    "maml": {"5w1s": 240, "5w5s": 300, "20w1s": 480, "20w5s": 480},
    "fomaml": {"5w1s": 180, "5w5s": 240, "20w1s": 360, "20w5s": 360},
    "anil": {"5w1s": 240, "5w5s": 300, "20w1s": 480, "20w5s": 480},
    "imaml": {"5w1s": 300, "5w5s": 360, "20w1s": 480, "20w5s": 420},
    "reptile": {"5w1s": 300, "5w5s": 300, "20w1s": 300, "20w5s": 300},
}


# ======================================================================================================= configs
def _setting(ways: int, shots: int) -> str:
    return f"{ways}w{shots}s"


def full_overrides(method: str, ways: int, shots: int) -> dict[str, Any]:
    """The "full" profile's departures from the package defaults (sources in the module docstring)."""
    five = ways == 5
    if method in ("maml", "fomaml", "hfmaml"):
        return (dict(meta_batch=32, inner_steps=1, inner_lr=0.4, iterations=40_000) if five else
                dict(meta_batch=16, inner_steps=5, inner_lr=0.1, iterations=40_000))
    if method == "imaml":
        return dict(meta_batch=32, inner_steps=16 if five else 25, inner_lr=0.1, lam=2.0, cg_steps=5,
                    iterations=20_000)
    if method == "anil":
        return dict(meta_batch=16, inner_steps=5, inner_lr=0.1, iterations=40_000)
    if method == "reptile":
        if five:
            return dict(meta_batch=10 if shots == 1 else 5, iterations=100_000)
        return dict(meta_batch=3, iterations=200_000)
    return dict(iterations=40_000)


def run_config(profile: str, method: str, ways: int, shots: int) -> dict[str, Any]:
    """The :class:`~convtheory.fewshot.train.FewShotConfig` fields (besides method, ways, shots, seed, device) of
    one run of ``profile``; the rest are the package defaults."""
    if profile not in PROFILES:
        raise ValueError(f"profile = {profile!r} is unknown; valid: {', '.join(PROFILES)}")
    if profile == "test":
        return dict(hidden=16, queries=5, iterations=3, eval_episodes=20, eval_batch=10, compile="never",
                    outer_lr=1e-2)
    if profile == "cpu":
        # eager: compiling the second-order Conv-4 step takes 4 minutes on these CPUs (benchmarks/fewshot_throughput)
        # and gains 1.3x, so within a few-minute budget it never pays
        cfg: dict[str, Any] = dict(iterations=100_000, time_limit=float(CPU_TIME_LIMITS[method][_setting(ways, shots)]),
                                   eval_episodes=600, compile="never")
        if method == "protonet":
            cfg.update(train_queries=5)
        elif method != "reptile":
            cfg.update(hidden=32, outer_lr=3e-3, train_queries=5)
        return cfg
    return dict(hidden=64, eval_episodes=600, **full_overrides(method, ways, shots))


def specs(profile: str, methods: Sequence[str] | None = None, settings: Sequence[str] | None = None,
          device: str = "cpu", seeds: Iterable[int] = (0,), mhd: bool = True) -> list[RunSpec]:
    """The training runs of ``profile`` (methods x settings x seeds) and, with ``mhd``, the MHD 20-run baseline."""
    methods = list(methods or (TEST_METHODS if profile == "test" else METHODS))
    settings = list(settings or (["5w1s"] if profile == "test" else list(SETTINGS)))
    bad = [m for m in methods if m not in METHODS] + [s for s in settings if s not in SETTINGS]
    if bad:
        raise ValueError(f"unknown method(s) or setting(s) {bad}; methods: {', '.join(METHODS)}; settings: "
                         f"{', '.join(SETTINGS)}")
    out = []
    for m in methods:
        for s in settings:
            ways, shots = SETTINGS[s]
            out += grid(NAME, FN, {"method": [m]}, seeds=tuple(seeds),
                        fixed={"ways": ways, "shots": shots, "profile": profile, "device": device,
                               "overrides": run_config(profile, m, ways, shots)})
    if mhd:
        out.append(RunSpec(NAME, MHD_FN, {"model": "mhd"}, 0))
    return out


# ================================================================================================= run functions
def _data_root() -> Path:
    return Path(os.environ.get(ENV_ROOT) or DATA)


@lru_cache(maxsize=2)
def _dataset(root: str, image_size: int, rotations: bool):
    from convtheory.fewshot import load_omniglot

    return load_omniglot(root, size=image_size, rotations=rotations)


@lru_cache(maxsize=2)
def _runs(root: str):
    from convtheory.fewshot import load_runs

    return load_runs(root)


def run(params: dict, seed: int) -> pd.DataFrame:
    """Train one method on one Omniglot setting, evaluate it, save its checkpoint, and (20-way 1-shot) score the 20
    official runs with it. One row: method, dataset, ways, shots, accuracy, ci95, runs_error (NaN unless 20-way
    1-shot), iterations, seconds (training), episodes_per_second, device, config (JSON, resolved), and more."""
    from convtheory.fewshot.runs import evaluate_runs
    from convtheory.fewshot.train import FewShotConfig, checkpoint_scorer, save_checkpoint, train

    method, ways, shots = params["method"], int(params["ways"]), int(params["shots"])
    cfg = FewShotConfig(method=method, dataset="omniglot", ways=ways, shots=shots, seed=int(seed),
                        device=params.get("device", "cpu"), **params.get("overrides", {}))
    root = _data_root()
    t0 = time.perf_counter()
    dataset = _dataset(str(root), cfg.image_size, cfg.rotations)
    result = train(cfg, dataset, progress=False)
    s = result.summary
    key = RunSpec(NAME, FN, params, seed).key()
    ckpt_dir = Path(os.environ.get(ENV_CHECKPOINTS) or (ROOT / "results" / CHECKPOINT_DIR))
    ckpt = ckpt_dir / f"{method}_{_setting(ways, shots)}_seed{seed}_{key}.pt"
    runs_error = math.nan
    if not s["diverged"]:
        save_checkpoint(ckpt, result.config, result.params, {**s, "checkpoint": str(ckpt)})
        if ways == 20 and shots == 1:
            runs_error = evaluate_runs(_runs(str(root)), checkpoint_scorer(ckpt)).mean_error
    row = {
        "method": method, "dataset": "omniglot", "ways": ways, "shots": shots,
        "accuracy": s["accuracy"], "ci95": s["ci95"], "test_episodes": s["test_episodes"], "runs_error": runs_error,
        "iterations": s["iterations_run"], "seconds": s["train_seconds"],
        "seconds_total": time.perf_counter() - t0, "episodes_per_second": s["episodes_per_second"],
        "final_train_acc": s["final_train_acc"], "diverged": bool(s["diverged"]), "diverged_at": s["diverged_at"],
        "device": str(cfg.device), "profile": params.get("profile", ""),
        "checkpoint": str(ckpt) if not s["diverged"] else "",
        "config": json.dumps(result.config.as_dict(), sort_keys=True),
    }
    print(f"[{NAME}] {method} {ways}-way {shots}-shot: {100 * s['accuracy']:.2f}% +- {100 * s['ci95']:.2f}% "
          f"({s['iterations_run']} steps, {s['train_seconds'] / 60:.1f} min)"
          + ("" if math.isnan(runs_error) else f"; 20-run error {100 * runs_error:.2f}%"), file=sys.stderr)
    return pd.DataFrame([row])


run.version = version


def run_mhd(params: dict, seed: int) -> pd.DataFrame:
    """The modified-Hausdorff nearest-neighbour baseline on the 20 official runs (runs.py): mean and per-run
    errors."""
    from convtheory.fewshot.runs import evaluate_runs, mhd_classifier

    t0 = time.perf_counter()
    res = evaluate_runs(_runs(str(_data_root())), mhd_classifier)
    return pd.DataFrame([{"method": "mhd", "dataset": "omniglot", "ways": 20, "shots": 1,
                          "runs_error": res.mean_error, "errors": json.dumps(list(res.errors)),
                          "seconds": time.perf_counter() - t0, "device": "cpu"}])


run_mhd.version = version


# ====================================================================================================== tables
TABLE_COLUMNS = ("dataset", "ways", "shots", "setting", "method", "family", "row", "accuracy", "ci95", "result",
                 "protocol", "source", "paper", "profile", "iterations", "minutes", "device")
RUNS_COLUMNS = ("method", "row", "error", "result", "protocol", "source")

OUR_PROTOCOL = ("fixed random test episodes (600; the test profile 20) of held-out characters of the background "
                "subset (whole characters with their rotations), 15 queries per class; transductive batch norm")
NEEDS_DATA = ("miniImageNet is not in this repository; convtheory.fewshot.load_imageset reads it from a user path, "
              "but this grid trains on Omniglot only")
RUNS_OUR_PROTOCOL = ("20 official within-alphabet runs (Lake et al.: 20 characters of one evaluation alphabet, one "
                     "drawing each as support, another drawer's 20 drawings as queries); our models were trained on "
                     "random episodes of 8 background alphabets (with rotations), so this is a transfer test, unlike "
                     "the random 20-way episodes of held-out characters in the main table")


def _fmt(value: float, ci: float | None, digits: int = 2) -> str:
    if ci is None or not np.isfinite(ci):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {ci:.{digits}f}"


def _measured_rows(measured: pd.DataFrame, failed: dict[str, tuple[str, str]]) -> dict[tuple, list[dict]]:
    """(method, ways, shots) -> table rows for the finished, diverged and failed runs."""
    out: dict[tuple, list[dict]] = {}
    for _, r in measured.iterrows():
        w, k = int(r["ways"]), int(r["shots"])
        minutes = float(r["seconds"]) / 60
        base = {"dataset": "omniglot", "ways": w, "shots": k, "method": LABELS.get(r["method"], r["method"]),
                "family": r["method"], "protocol": OUR_PROTOCOL, "paper": "this package",
                "profile": r["profile"], "iterations": int(r["iterations"]), "minutes": round(minutes, 2),
                "device": r["device"]}
        detail = (f"convtheory, profile {r['profile']}: {int(r['iterations'])} iterations, {minutes:.1f} min "
                  f"training on {r['device']}, seed {int(r['seed'])}, {int(r['test_episodes'])} test episodes")
        if bool(r["diverged"]):
            row = {**base, "row": "measured: diverged", "accuracy": math.nan, "ci95": math.nan,
                   "result": "diverged", "source": f"{detail}; diverged at iteration {r['diverged_at']}"}
        else:
            row = {**base, "row": "measured", "accuracy": 100 * float(r["accuracy"]),
                   "ci95": 100 * float(r["ci95"]), "result": _fmt(100 * float(r["accuracy"]), 100 * float(r["ci95"])),
                   "source": detail}
        out.setdefault((r["method"], w, k), []).append(row)
    for method, w, k, err in ((*key, e) for key, e in failed.items()):
        out.setdefault((method, w, k), []).append(
            {"dataset": "omniglot", "ways": w, "shots": k, "method": LABELS.get(method, method), "family": method,
             "row": "measured: failed", "accuracy": math.nan, "ci95": math.nan, "result": "failed",
             "protocol": OUR_PROTOCOL, "source": f"convtheory: the run raised {err}", "paper": "this package"})
    return out


def build_table(measured: pd.DataFrame, methods: Sequence[str], profile: str,
                failed: dict[tuple, str] | None = None) -> pd.DataFrame:
    """Measured rows beside the published ones, per dataset and setting; every cell of the grid a row.

    ``measured``: the sweep table of :func:`run` rows; ``methods``: the grid's methods (rows "not run" where
    measured has none); ``failed``: (method, ways, shots) -> last line of the error, for runs that raised."""
    pub = published.accuracy_rows()
    ours = _measured_rows(measured if len(measured) else pd.DataFrame(columns=["method"]), failed or {})
    order = list(METHODS) + [m for m in methods if m not in METHODS]
    rows: list[dict] = []
    for dataset in ("omniglot", "miniimagenet"):
        settings = list(SETTINGS.values()) if dataset == "omniglot" else [(5, 1), (5, 5)]
        for w, k in settings:
            here = pub[(pub["dataset"] == dataset) & (pub["ways"] == w) & (pub["shots"] == k)]
            families = [m for m in order if m in methods or (here["family"] == m).any()]
            for fam in families + [""]:
                if fam:
                    if dataset == "miniimagenet":
                        if fam in methods:
                            rows.append({"dataset": dataset, "ways": w, "shots": k, "method": LABELS.get(fam, fam),
                                         "family": fam, "row": "not run: needs data", "accuracy": math.nan,
                                         "ci95": math.nan, "result": "not run",
                                         "protocol": NEEDS_DATA, "source": NEEDS_DATA,
                                         "paper": "this package"})
                    elif (fam, w, k) in ours:
                        rows += ours[(fam, w, k)]
                    elif fam in methods:
                        rows.append({"dataset": dataset, "ways": w, "shots": k, "method": LABELS.get(fam, fam),
                                     "family": fam, "row": "not run: not in this sweep", "accuracy": math.nan,
                                     "ci95": math.nan, "result": "not run",
                                     "protocol": OUR_PROTOCOL, "source": f"profile {profile}: setting or method "
                                     "not selected", "paper": "this package"})
                for _, p in here[here["family"] == fam].iterrows():
                    rows.append({"dataset": dataset, "ways": w, "shots": k, "method": p["method"], "family": fam,
                                 "row": "published", "accuracy": p["value"], "ci95": p["ci"],
                                 "result": p["printed"],
                                 "protocol": f"{p['protocol']}; ± = {p['ci_kind']}", "source": p["source"],
                                 "paper": p["paper"]})
    out = pd.DataFrame(rows)
    for c in TABLE_COLUMNS:
        if c not in out:
            out[c] = None
    out["setting"] = [f"{DATASET_LABELS[d]} {w}-way {k}-shot" for d, w, k in zip(out["dataset"], out["ways"],
                                                                                    out["shots"])]
    return out[list(TABLE_COLUMNS)]


def build_runs_table(measured: pd.DataFrame, mhd: pd.DataFrame, profile: str) -> pd.DataFrame:
    """The 20 official runs: our best 20-way 1-shot model and the measured MHD baseline beside the published
    error rates (Lake et al. 2015, via runs.py)."""
    rows = []
    cand = measured[(measured["ways"] == 20) & (measured["shots"] == 1)] if len(measured) else measured
    cand = cand[np.isfinite(cand["runs_error"].astype(float))] if len(cand) else cand
    if len(cand):
        best = cand.loc[cand["runs_error"].astype(float).idxmin()]
        others = ", ".join(f"{LABELS.get(m, m)} {100 * e:.2f}%" for m, e in zip(cand["method"], cand["runs_error"])
                           if m != best["method"])
        rows.append({"method": f"{LABELS.get(best['method'], best['method'])} (our best 20-way 1-shot model)",
                     "row": "measured", "error": 100 * float(best["runs_error"]),
                     "result": f"{100 * float(best['runs_error']):.2f}", "protocol": RUNS_OUR_PROTOCOL,
                     "source": f"convtheory, profile {profile}: {int(best['iterations'])} iterations, "
                               f"{float(best['seconds']) / 60:.1f} min training; checkpoint scored by runs.py"
                               + (f"; other 20-way 1-shot models: {others}" if others else "")})
    else:
        rows.append({"method": "our 20-way 1-shot models", "row": "not run: not in this sweep", "error": math.nan,
                     "result": "not run", "protocol": RUNS_OUR_PROTOCOL,
                     "source": f"profile {profile}: no 20-way 1-shot run selected (--settings 20w1s)"})
    if len(mhd):
        rows.append({"method": "MHD nearest neighbour", "row": "measured",
                     "error": 100 * float(mhd["runs_error"].iloc[0]),
                     "result": f"{100 * float(mhd['runs_error'].iloc[0]):.2f}",
                     "protocol": "20 official within-alphabet runs, Lake et al.'s demo_classification.py rule",
                     "source": "convtheory.fewshot.runs.mhd_classifier on the official runs (all_runs.zip of the data "
                               "root)"})
    for _, p in published.runs_rows().iterrows():
        rows.append({"method": p["method"], "row": "published", "error": p["value"], "result": p["printed"],
                     "protocol": p["protocol"], "source": p["source"]})
    return pd.DataFrame(rows, columns=list(RUNS_COLUMNS))


# ====================================================================================================== LaTeX
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "§": r"\S{}",
        "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$"}


def tex(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _longtable(spec: str, header: Sequence[str], body: list[Sequence[str]], caption: str, label: str,
               fixed: Sequence[int] = ()) -> str:
    """A booktabs longtable in a footnotesize group; a rule between groups of rows with different first cells,
    the first cell written only where it changes; cells ragged right except in the ``fixed`` (l) columns (rows end
    with \\tabularnewline, so only booktabs and longtable are needed)."""
    head = " & ".join(f"\\textbf{{{tex(h)}}}" for h in header) + r" \\"
    lines = [r"\begingroup\footnotesize\setlength{\tabcolsep}{3pt}\setlength{\LTcapwidth}{\linewidth}",
             f"\\begin{{longtable}}{{{spec}}}",
             f"\\caption{{{caption}}}\\label{{{label}}}\\\\", r"\toprule", head, r"\midrule", r"\endfirsthead",
             r"\toprule", head, r"\midrule", r"\endhead"]
    prev = None
    for cells in body:
        first = cells[0]
        if prev is not None and first != prev:
            lines.append(r"\midrule")
        cells = ["" if first == prev else first, *cells[1:]]
        lines.append(" & ".join(c if i in fixed else f"\\raggedright {c}" for i, c in enumerate(cells))
                     + r" \tabularnewline")
        prev = first
    lines += [r"\bottomrule", r"\end{longtable}", r"\endgroup"]
    return "\n".join(lines)


def _short_source(text: str) -> str:
    """The source for the LaTeX table: the seed file's name shortened (the CSV keeps it whole)."""
    return text.replace(" (001_8100c508ad46cf61.txt), table", ",")


def to_latex(table: pd.DataFrame, runs: pd.DataFrame, profile: str) -> str:
    """Both tables as longtables (the paper loads booktabs and longtable)."""
    body = []
    for _, r in table.iterrows():
        details = r["source"] if r["row"] != "published" else f"{r['paper']}; {_short_source(r['source'])}"
        body.append([tex(r["setting"]), tex(r["method"]), tex(r["row"]), tex(r["result"]), tex(details)])
    episodes = 20 if profile == "test" else 600
    ours = OUR_PROTOCOL.replace("(600; the test profile 20)", f"({episodes})")
    cap1 = tex(f"Few-shot accuracy (%): measured rows (profile {profile}; {ours}; ± is the 95% interval "
               f"1.96 sd/sqrt(n)) beside published rows with their source (protocols and ± kinds in "
               f"figures/fewshot_table.csv). Settings we cannot run here are marked 'not run'.")
    t1 = _longtable(r"p{0.12\linewidth}p{0.17\linewidth}p{0.1\linewidth}lp{0.37\linewidth}",
                    ["Setting", "Method", "Row", "Accuracy (%)", "Details"], body, cap1, "tab:fewshot", fixed=(3,))
    body2 = [[tex(r["method"]), tex(r["row"]), tex(r["result"]), tex(f"{r['protocol']}; {r['source']}")]
             for _, r in runs.iterrows()]
    cap2 = tex("Mean error (%) on the 20 official Omniglot one-shot runs (Lake et al. 2015). Protocol difference: "
               "the official runs are within-alphabet 20-way tasks on the evaluation alphabets (unseen in training; "
               "characters of one alphabet look alike), unlike the random 20-way episodes of held-out background "
               "characters in the table above.")
    t2 = _longtable(r"p{0.22\linewidth}p{0.12\linewidth}lp{0.5\linewidth}",
                    ["Model", "Row", "Error (%)", "Protocol; source"], body2, cap2, "tab:fewshot-runs", fixed=(2,))
    return (f"% generated by python -m experiments.fewshot_table --profile {profile}\n"
            f"% needs \\usepackage{{booktabs,longtable}}\n{t1}\n\n{t2}\n")


# ======================================================================================================= driver
@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_table(profile: str = "cpu", *, methods: Sequence[str] | None = None, settings: Sequence[str] | None = None,
               results: str | os.PathLike = "results", figures: str | os.PathLike = "figures",
               tables: str | os.PathLike = "paper/tables", device: str | None = None, workers: int = 1,
               executor: str | None = None, root: str | os.PathLike | None = None, seeds: Iterable[int] = (0,),
               progress: bool = True) -> dict[str, Any]:
    """Run what the store ``<results>/<profile>`` lacks, then write the CSVs and the .tex; return a report
    (ran, cached, failed, paths, the two tables)."""
    import torch

    if profile not in PROFILES:
        raise ValueError(f"profile = {profile!r} is unknown; valid: {', '.join(PROFILES)}")
    if device is None:
        device = "cuda" if profile == "full" and torch.cuda.is_available() else "cpu"
    if workers < 1:
        raise ValueError(f"workers = {workers} is invalid; it must be >= 1")
    executor = executor or ("serial" if workers == 1 else "local")
    store = Path(results) / profile
    root = Path(root) if root is not None else DATA
    all_specs = specs(profile, methods, settings, device=device, seeds=seeds)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with _env(**{ENV_ROOT: str(root.resolve()), ENV_CHECKPOINTS: str((store / CHECKPOINT_DIR).resolve())}):
        res = run_sweep(all_specs, store, executor=executor, workers=workers, progress=progress, threads=threads)
    t = res.table
    keys_fn = {s.key(): s for s in all_specs}
    is_mhd = t["run_key"].map(lambda k: keys_fn[k].fn == MHD_FN) if len(t) else pd.Series([], dtype=bool)
    measured = t[~is_mhd].reset_index(drop=True) if len(t) else pd.DataFrame()
    mhd = t[is_mhd].reset_index(drop=True) if len(t) else pd.DataFrame()
    failed = {}
    for k, err in res.failed.items():
        s = keys_fn[k]
        if s.fn == FN:
            failed[(s.params["method"], int(s.params["ways"]), int(s.params["shots"]))] = \
                err.strip().splitlines()[-1][:200]
    grid_methods = sorted({s.params["method"] for s in all_specs if s.fn == FN}, key=list(METHODS).index)
    table = build_table(measured, grid_methods, profile, failed)
    runs = build_runs_table(measured, mhd, profile)
    figures, tables = Path(figures), Path(tables)
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    paths = {"csv": figures / f"{NAME}.csv", "runs_csv": figures / f"{NAME}_runs.csv", "tex": tables / f"{NAME}.tex"}
    table.to_csv(paths["csv"], index=False)
    runs.to_csv(paths["runs_csv"], index=False)
    paths["tex"].write_text(to_latex(table, runs, profile))
    return {"profile": profile, "ran": res.ran, "cached": res.cached, "failed": res.failed,
            "diverged": res.diverged, "summary": res.summary(), "paths": paths, "table": table, "runs": runs,
            "measured": measured}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.fewshot_table",
                                 description="Train the few-shot grid (resumable) and write the results table "
                                             "(measured beside published).")
    ap.add_argument("--profile", choices=PROFILES, default="cpu",
                    help="test: seconds; cpu: <= 15 min a run on 2 cores; full: the papers' GPU sizes")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                    help=f"default: all ({' '.join(METHODS)}); test profile: {' '.join(TEST_METHODS)}")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None,
                    help="default: all four (test profile: 5w1s)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--results", default="results", help="the results store's parent (store: RESULTS/PROFILE)")
    ap.add_argument("--figures", default="figures", help="where fewshot_table.csv and fewshot_table_runs.csv go")
    ap.add_argument("--tables", default="paper/tables", help="where fewshot_table.tex goes")
    ap.add_argument("--root", default=str(DATA), help="the Omniglot data (archives and all_runs.zip)")
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
    t0 = time.perf_counter()
    report = make_table(args.profile, methods=args.methods, settings=args.settings, results=args.results,
                        figures=args.figures, tables=args.tables, device=args.device, workers=args.workers,
                        root=args.root, seeds=args.seeds, progress=not args.no_progress)
    print(f"[{NAME}] profile {args.profile}: {report['summary']}; {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for k, err in report["failed"].items():
        print(f"[{NAME}] run {k} failed: {err.strip().splitlines()[-1]}", file=sys.stderr)
    for what, path in report["paths"].items():
        print(f"{what}: {path}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
