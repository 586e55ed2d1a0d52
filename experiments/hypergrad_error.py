"""Figure 6: hypergradient error versus N (ITD, reverse and forward mode) and versus Q (AID with CG, Neumann, fixed
point), on quadratic bilevel problems, with the theoretical geometric rates drawn as lines.

Predictions (THEORY.md §1.3, §14 items 17, 19, 20 [derived]): the ITD error is exactly
:math:`B^\\top H^{-1}P^N[(y_0-y^*)-(y_N-\\bar y)]`, decaying like :math:`q^N`, :math:`q=1-\\alpha\\mu`, with no
polynomial prefactor; the AID linear-system error decays like :math:`(1-\\eta\\mu)^Q` (fixed point, Neumann with one
more step) and within :math:`2\\sqrt\\kappa\\,r^Q`, :math:`r=(\\sqrt\\kappa-1)/(\\sqrt\\kappa+1)`, for CG (Grazzi et al.
2020; Ji, Yang, Liang 2021).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.hypergrad_error:run"


def run(params: dict, seed: int) -> pd.DataFrame:
    """One problem instance: the error of every method along its N or Q axis, next to the prediction."""
    import torch

    from convtheory.hypergrad import hypergradient
    from convtheory.problems import QuadraticBilevel
    from convtheory.problems.bilevel_quadratic import inner_iterate_exact, itd_error_exact

    kappa = float(params["kappa"])
    prob = QuadraticBilevel(p=params.get("p", 5), q=params.get("q", 20), mu=1.0 / kappa, L=1.0,
                            spectrum="linspace").build(seed)
    alpha = 1.0 / prob.constants.L
    x, y0 = prob.x0, prob.y0
    exact = prob.hypergradient(x)
    scale = float(exact.norm())
    q = 1.0 - alpha * prob.constants.mu
    rows = []
    for N in params["Ns"]:
        pred = float(itd_error_exact(prob, x, y0, alpha, N).norm()) / scale
        for method in ("itd", "itd-forward"):
            hg, _ = hypergradient(prob.f, prob.g, x, y0, method=method, inner_steps=N, inner_lr=alpha)
            rows.append({"axis": "N", "method": method, "steps": N, "rel_error": float((hg - exact).norm()) / scale,
                         "predicted": pred, "prediction": "exact"})
    # AID from the exact inner solution, so the error is the linear solver's alone
    N_big = int(math.ceil(40 * kappa))
    yN = inner_iterate_exact(prob, x, y0, alpha, N_big)
    v_star = float(torch.linalg.solve(prob.extra["H"], yN - prob.extra["ybar"]).norm())
    Bnorm = float(prob.constants.extra["Lxy"])
    r = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    for Q in params["Qs"]:
        for method, factor in (("aid-fp", q**Q), ("aid-neumann", q ** (Q + 1)),
                               ("aid-cg", 2 * math.sqrt(kappa) * r**Q)):
            hg, _ = hypergradient(prob.f, prob.g, x, yN, method=method, inner_steps=0, inner_lr=alpha, solver_steps=Q)
            ref = _aid_reference(prob, x, yN)
            rows.append({"axis": "Q", "method": method, "steps": Q,
                         "rel_error": float((hg - ref).norm()) / float(ref.norm()),
                         "predicted": Bnorm * factor * v_star / float(ref.norm()), "prediction": "bound"})
    df = pd.DataFrame(rows)
    df["kappa"] = kappa
    return df


def _aid_reference(prob, x, y):
    """The AID hypergradient with the linear system solved exactly at y: gamma x + B^T H^{-1} (y - ybar)."""
    import torch

    v = torch.linalg.solve(prob.extra["H"], y - prob.extra["ybar"])
    return prob.extra["gamma"] * x + v @ prob.extra["B"]


def specs(profile: str) -> list:
    if profile == "test":
        axes = {"kappa": [10.0]}
        fixed = {"Ns": [1, 10, 40], "Qs": [1, 5, 20]}
        seeds = (0,)
    elif profile == "quick":
        axes = {"kappa": [10.0, 100.0]}
        fixed = {"Ns": [1, 5, 10, 20, 40, 80, 160], "Qs": [1, 2, 5, 10, 20, 40, 80, 160]}
        seeds = (0, 1, 2)
    else:
        axes = {"kappa": [10.0, 100.0, 1000.0]}
        fixed = {"Ns": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
                 "Qs": [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]}
        seeds = tuple(range(10))
    return grid("hypergrad_error", FN, axes, seeds=seeds, fixed=fixed)


def _band(ax, sub, x, y, label, **kw):
    g = sub.groupby(x)[y]
    mid, lo, hi = g.median(), g.min(), g.max()
    line, = ax.plot(mid.index, mid.values, label=label, **kw)
    ax.fill_between(mid.index, lo.values, hi.values, alpha=0.2, color=line.get_color())
    return line


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    kappas = sorted(table["kappa"].unique())
    fig, axes = plt.subplots(2, len(kappas), figsize=(4.2 * len(kappas), 6.4), squeeze=False)
    for j, kappa in enumerate(kappas):
        sub = table[table["kappa"] == kappa]
        ax = axes[0, j]
        itd = sub[(sub["axis"] == "N") & (sub["method"] == "itd")]
        line = _band(ax, itd, "steps", "rel_error", "ITD (reverse), measured", marker="o")
        fwd = sub[(sub["axis"] == "N") & (sub["method"] == "itd-forward")]
        _band(ax, fwd, "steps", "rel_error", "ITD (forward), measured", marker="x", linestyle="none")
        pred = itd.groupby("steps")["predicted"].median()
        ax.plot(pred.index, pred.values, "k--", lw=1, label="exact prediction (THEORY §1.3)")
        n = np.array(sorted(itd["steps"].unique()), dtype=float)
        q = 1 - 1 / kappa
        ax.plot(n, pred.iloc[0] * q ** (n - n[0]), ":", color=line.get_color(), label="rate q^N, q = 1 - 1/kappa")
        ax.set(xlabel="inner steps N", ylabel="relative error", yscale="log", title=f"ITD, kappa = {kappa:g}")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for method, marker in (("aid-fp", "o"), ("aid-neumann", "s"), ("aid-cg", "^")):
            m = sub[(sub["axis"] == "Q") & (sub["method"] == method)]
            ln = _band(ax, m, "steps", "rel_error", f"{method}, measured", marker=marker)
            pr = m.groupby("steps")["predicted"].median()
            ax.plot(pr.index, pr.values, "--", color=ln.get_color(), lw=1,
                    label=f"{method} bound")
        ax.set(xlabel="solver steps Q", ylabel="relative error", yscale="log", xscale="log",
               title=f"AID at y*, kappa = {kappa:g}", ylim=(1e-17, None))
        ax.legend(fontsize=7)
    fig.suptitle("Hypergradient error: measured (median, min-max over seeds) against theory")
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (kappa, method): the worst measured/predicted ratio above round-off; ITD must match its exact prediction
    (ratio 1) and the AID errors must stay below their bounds (ratio <= 1)."""
    t = table[table["predicted"] > 1e-12].copy()
    t["ratio"] = t["rel_error"] / t["predicted"]
    out = t.groupby(["kappa", "method"]).agg(worst=("ratio", "max"), median=("ratio", "median")).reset_index()
    tol = {"itd": 1e-6, "itd-forward": 1e-6}
    out["holds"] = [(abs(w - 1) <= tol[m]) if m in tol else (w <= 1 + 1e-9) for m, w in zip(out["method"],
                                                                                            out["worst"])]
    return out


EXPERIMENT = Experiment("hypergrad_error", "Hypergradient error of ITD decays like q^N exactly and AID's like the "
                        "linear solver's rate (THEORY.md §14 items 17, 19, 20)", specs, plot, summarize, order=6)
