"""Figure 11: the coordinatewise LSTM learned optimiser (Andrychowicz et al. 2016) against SGD, momentum, RMSprop and
Adam with tuned learning rates, on held-out random quadratics f(theta) = ||W theta - y||^2 (d = 10).

There is no theorem here (THEORY.md §13): the claim checked is the paper's measured one, "after meta-training, the
LSTM optimiser beats tuned SGD" (mean final loss after 100 steps on held-out problems). Whether it also beats the
other tuned baselines (momentum in particular) is reported, not asserted. Meta-training is shortened to fit the
quick budget (meta lr 1e-2, 16 problems per meta-batch, as in tests/solvers/test_l2o.py) instead of the paper's
1e-3 / 128; the learning-rate grid of the baselines is ``l2o.DEFAULT_LR_GRID``, tuned on separate training problems.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.l2o:run"
NAMES = ("lstm", "sgd", "momentum", "rmsprop", "adam")
LABELS = {"lstm": "LSTM (learned)", "sgd": "SGD (tuned lr)", "momentum": "momentum 0.9 (tuned lr)",
          "rmsprop": "RMSprop (tuned lr)", "adam": "Adam (tuned lr)"}
COLORS = {"lstm": "k", "sgd": "C0", "momentum": "C1", "rmsprop": "C2", "adam": "C3"}


def run(params: dict, seed: int) -> pd.DataFrame:
    """Meta-train the LSTM with ``seed``, then run it and the tuned baselines on held-out problems.

    Returns one tidy table: ``kind="curve"`` rows (per step and optimiser: mean, median and quartiles of the loss
    over the held-out problems, the tuned lr) and ``kind="meta"`` rows (the meta-training history per epoch).
    """
    from convtheory.solvers.l2o import L2OConfig, compare_optimizers, meta_train

    cfg = L2OConfig(num_problems=int(params.get("num_problems", 16)), meta_lr=float(params.get("meta_lr", 1e-2)),
                    meta_iterations=int(params["meta_iterations"]))
    phi, hist = meta_train(cfg, seed=seed)
    df = compare_optimizers(phi, cfg, seed=seed + 1000, num_problems=int(params.get("test_problems", 64)),
                            steps=int(params.get("steps", 100)), names=NAMES)
    g = df.groupby(["optimizer", "step"])["loss"]
    curve = pd.DataFrame({"mean_loss": g.mean(), "median_loss": g.median(), "q25": g.quantile(0.25),
                          "q75": g.quantile(0.75)}).reset_index()
    curve = curve.merge(df.groupby("optimizer")["lr"].first().reset_index(), on="optimizer")
    curve["kind"] = "curve"
    meta = hist.groupby("epoch").agg(meta_loss=("meta_loss", "mean"), final_loss=("final_loss", "last"),
                                     wall_time=("wall_time", "last")).reset_index()
    meta["kind"] = "meta"
    out = pd.concat([curve, meta], ignore_index=True)
    out["meta_iterations"] = cfg.meta_iterations
    return out


def specs(profile: str) -> list:
    if profile == "test":
        return grid("l2o", FN, {"meta_iterations": [150]}, seeds=(0,), fixed={"steps": 100, "test_problems": 32})
    if profile == "quick":
        return grid("l2o", FN, {"meta_iterations": [300]}, seeds=(0, 1, 2), fixed={"steps": 100,
                                                                                     "test_problems": 64})
    return grid("l2o", FN, {"meta_iterations": [1000]}, seeds=tuple(range(5)),
                fixed={"steps": 100, "test_problems": 128})


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    cur = table[table["kind"] == "curve"]
    for name in NAMES:
        s = cur[cur["optimizer"] == name]
        g = s.groupby("step")["mean_loss"]
        mid, lo, hi = g.median(), g.min(), g.max()
        lrs = s.groupby("seed")["lr"].first()
        lab = LABELS[name] + ("" if name == "lstm" else f", lr {lrs.min():g}" +
                               (f"-{lrs.max():g}" if lrs.max() != lrs.min() else ""))
        ax.plot(mid.index, mid.values, color=COLORS[name], lw=2 if name == "lstm" else 1.3, label=lab)
        ax.fill_between(mid.index, lo.values, hi.values, color=COLORS[name], alpha=0.15)
    ax.set(yscale="log", xlabel="optimizee step t", ylabel="mean loss over held-out quadratics",
           title="held-out ||W θ - y||², d = 10 (median, min-max over meta-training seeds)")
    ax.legend(fontsize=8)
    meta = table[table["kind"] == "meta"]
    g = meta.groupby("epoch")["meta_loss"]
    ax2.plot(g.median().index, g.median().values, color="k", label="meta-loss per epoch (median)")
    ax2.fill_between(g.median().index, g.min().values, g.max().values, color="k", alpha=0.15, label="min-max")
    ax2.set(yscale="log", xlabel="meta-training epoch (100 optimizee steps, fresh problems)",
            ylabel="meta-loss (sum of f over an unroll)", title="LSTM meta-training")
    ax2.legend(fontsize=8)
    fig.suptitle("Learned optimiser vs tuned hand-designed ones (Andrychowicz et al. 2016; claim: LSTM beats tuned "
                 "SGD; no theorem, THEORY.md §13)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Final mean loss of each optimiser (median over seeds) and the comparisons with the LSTM. Only "LSTM beats
    tuned SGD" (the paper's claim) carries a verdict, on every seed; the others are reported."""
    cur = table[table["kind"] == "curve"]
    last = cur[cur["step"] == cur["step"].max()].pivot_table(index="seed", columns="optimizer", values="mean_loss")
    rows = []
    for name in NAMES:
        ratio = last["lstm"] / last[name]
        rows.append({"optimizer": name, "final_mean_loss_median": float(last[name].median()),
                     "final_mean_loss_max": float(last[name].max()),
                     "lstm_over_this_max": float(ratio.max()) if name != "lstm" else np.nan,
                     "lstm_beats_it_on_seeds": f"{int((ratio < 1).sum())}/{len(ratio)}" if name != "lstm" else "",
                     "claim": "LSTM beats tuned SGD (Andrychowicz et al.)" if name == "sgd" else "reported only",
                     "holds": bool((ratio < 1).all() and np.isfinite(last["lstm"]).all()) if name == "sgd" else None})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("l2o", "After meta-training, the LSTM learned optimiser beats tuned SGD on held-out "
                        "quadratics (Andrychowicz et al. 2016, THEORY.md §13; measured claim, no theorem); momentum, "
                        "RMSprop and Adam reported alongside", specs, plot, summarize, order=11)
