"""Figure 4: ANIL with a strongly convex (ridge) head: the convergence rate per iteration improves with the number of
inner steps N and saturates; the rate per second (and per oracle call) first improves, then worsens.

Predictions (THEORY.md §7 "Why", §14 item 13 [derived]; Ji, Lee, Liang, Poor, NeurIPS 2020): the head block of the
meta-Hessian is bounded by :math:`L(1-\\alpha\\mu)^{2N}` (:func:`convtheory.theory.anil.head_hessian_bound_strongly_convex`),
so the meta smoothness :math:`L_{\\rm meta}(N)` (measured exactly on the batch at the start) falls and saturates at the
body's curvature; with the theory step :math:`\\beta=1/L_{\\rm meta}(N)` the predicted outer iterations
:math:`K(N)=2L_{\\rm meta}(N)\\Delta_0/\\epsilon^2` (:func:`~convtheory.theory.anil.predicted_iterations`, eps on the
squared norm) fall and saturate, while the cost :math:`N K(N)` is U-shaped. Measured: iterations, oracle calls and
seconds until the exact meta-gradient norm first falls below ``eps`` (full-batch deterministic ANIL, ``u`` adapts).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.anil_convex:run"


def _flat_hessian(tasks, params, alpha, N, names=("u",)):
    """Exact Hessian of the batch ANIL meta-objective in the flattened (phi, u) (second-order autograd)."""
    import torch
    from torch.func import grad, jacrev, vmap

    keys = list(params)
    sizes = [params[k].numel() for k in keys]
    shapes = [params[k].shape for k in keys]

    def unflat(x):
        return {k: t.reshape(s) for k, t, s in zip(keys, torch.split(x, sizes), shapes)}

    def obj(x):
        p = unflat(x)

        def task(s, q):
            head = {k: p[k] for k in names}
            fixed = {k: v for k, v in p.items() if k not in names}
            for _ in range(N):
                g = grad(lambda h: tasks.loss({**fixed, **h}, s))(head)
                head = {k: head[k] - alpha * g[k] for k in names}
            return tasks.outer_loss({**fixed, **head}, q)

        return vmap(task)(tasks.support, tasks.query).mean()

    x = torch.cat([params[k].reshape(-1) for k in keys])
    H = jacrev(jacrev(obj))(x)
    head_idx = np.concatenate([np.arange(sum(sizes[:i]), sum(sizes[:i + 1])) for i, k in enumerate(keys)
                               if k in names])
    return H, head_idx


def run(params: dict, seed: int) -> pd.DataFrame:
    """One ANIL run at N inner steps with the theory meta step beta = beta_scale / L_meta(N) (measured at start)."""
    import torch

    from convtheory.problems import ANILTasks
    from convtheory.solvers import SOLVERS, Budget, Sampling, run as solver_loop
    from convtheory.solvers.sources import MetaSource, subseeds
    from convtheory.theory import anil as th

    fam = ANILTasks(head=params["head"], lam=params["lam"], outlier_frac=params.get("outlier_frac", 0.0),
                    S=params.get("S", 20), D=params.get("D", 20), d=params.get("d", 5), width=params.get("width", 4))
    c = fam.head_constants()
    alpha = params.get("alpha_scale", 1.0) / c.L
    N, B = int(params["N"]), int(params.get("B", 10))
    sampling = Sampling(B=B)
    eval_tasks = 10
    # the same batch and start the solver loop will use (solvers.base.run derives them from the seed this way)
    source_seed, init_seed, _ = subseeds(seed, 3)
    src = MetaSource(fam, sampling, source_seed, eval_tasks)
    theta0 = src.init_params(init_seed)
    tasks, _ = src.training_tasks(0)
    H, hidx = _flat_hessian(tasks, theta0, alpha, N)
    ev = torch.linalg.eigvalsh(H)
    L_meta = float(ev.abs().max())
    head_block = float(torch.linalg.matrix_norm(H[hidx][:, hidx], 2))
    beta = params.get("beta_scale", 1.0) / L_meta
    solver = SOLVERS["anil"](alpha=alpha, beta=beta, N=N, sampling=sampling, inner_params=("u",))
    tr = solver_loop(solver, fam, Budget(iterations=int(params["iterations"])), seed=seed,
                     eval_every=int(params.get("eval_every", 5)), eval_tasks=eval_tasks)
    eps = float(params["eps"])
    delta0 = float(tr["train_loss"].iloc[0])  # inf of the meta-objective >= 0 (both losses are nonnegative)
    tr["N"] = N
    tr["head"] = params["head"]
    tr["L_meta"] = L_meta
    tr["lambda_min_meta"] = float(ev.min())
    tr["head_block"] = head_block
    tr["head_L"], tr["head_mu"] = float(c.L), float(c.mu)
    tr["head_bound"] = (th.head_hessian_bound_strongly_convex(alpha, N, c.mu, c.L) if params["head"] == "ridge"
                        else math.nan)
    tr["eps"] = eps
    tr["delta0"] = delta0
    tr["predicted_K"] = th.predicted_iterations(L_meta, delta0, eps**2)
    return tr


def reach(table: pd.DataFrame) -> pd.DataFrame:
    """Per (N, seed): first recorded iteration, oracle calls and seconds with grad_norm <= eps (NaN if never)."""
    out = []
    for (N, seed), t in table.groupby(["N", "seed"]):
        t = t.sort_values("iteration")
        hit = t[t["grad_norm"] <= t["eps"]]
        row = {"N": N, "seed": seed, "L_meta": t["L_meta"].iloc[0], "head_block": t["head_block"].iloc[0],
               "head_bound": t["head_bound"].iloc[0], "predicted_K": t["predicted_K"].iloc[0],
               "budget": int(t["iteration"].max()), "diverged": bool(t["diverged"].any()),
               "final_grad": float(t["grad_norm"].iloc[-1])}
        if hit.empty:
            row.update(iters=math.nan, calls=math.nan, seconds=math.nan)
        else:
            h = hit.iloc[0]
            row.update(iters=int(h["iteration"]), calls=int(h["oracle_grad"] + h["oracle_hvp"]),
                       seconds=float(h["wall_time"]))
        out.append(row)
    return pd.DataFrame(out)


def _specs(name, fn, head, lam, outlier_frac, eps, beta_scale, profile):
    if profile == "test":
        Ns, iters, seeds = [1, 4], 60, (0,)
        eps = 10 * eps  # a reachable target in 60 iterations
    elif profile == "quick":
        Ns, iters, seeds = [1, 2, 4, 8], 300, (0, 1)
    else:
        Ns, iters, seeds = [1, 2, 3, 5, 8, 12, 20], 1000, tuple(range(5))
    fixed = {"head": head, "lam": lam, "outlier_frac": outlier_frac, "iterations": iters, "eps": eps,
             "beta_scale": beta_scale, "alpha_scale": 1.0, "B": 10, "eval_every": 5}
    return grid(name, fn, {"N": Ns}, seeds=seeds, fixed=fixed)


def specs(profile: str) -> list:
    return _specs("anil_convex", FN, "ridge", 1.0, 0.0, 4e-3, 1.0, profile)


def _band(ax, r, y, label, **kw):
    g = r.groupby("N")[y]
    mid, lo, hi = g.median(), g.min(), g.max()
    line, = ax.plot(mid.index, mid.values, label=label, **kw)
    ax.fill_between(mid.index, lo.values, hi.values, alpha=0.2, color=line.get_color())
    return line


def plot_anil(table: pd.DataFrame, title: str, bound_label: str):
    import matplotlib.pyplot as plt

    r = reach(table)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    ax = axes[0]
    for (N, seed), t in table.groupby(["N", "seed"]):
        ax.plot(t["iteration"], t["grad_norm"], color=plt.cm.viridis(np.log2(N) / max(1, np.log2(r["N"].max()))),
                lw=1, label=f"N = {N}" if seed == table["seed"].min() else None)
    ax.axhline(table["eps"].iloc[0], color="k", ls=":", lw=1, label="target eps")
    ax.set(yscale="log", xlabel="outer iteration", ylabel="exact meta-gradient norm", title="convergence per iteration")
    ax.legend(fontsize=7)
    ax = axes[1]
    _band(ax, r, "head_block", "head block of meta-Hessian, measured", marker="o")
    _band(ax, r, "L_meta", "L_meta(N) = max |eig|, measured", marker="s")
    if r["head_bound"].notna().any():
        b = r.groupby("N")["head_bound"].median()
        ax.plot(b.index, b.values, "k--", lw=1, label=bound_label)
    ax.set(yscale="log", xscale="log", xlabel="inner steps N", ylabel="curvature", title="meta-curvature vs N")
    ax.legend(fontsize=7)
    ax = axes[2]
    _band(ax, r, "iters", "iterations to eps, measured", marker="o")
    p = r.groupby("N")["predicted_K"].median()
    ax.plot(p.index, p.values, "k--", lw=1, label="K(N) = 2 L_meta Delta0 / eps^2 (bound)")
    ax.set(yscale="log", xscale="log", xlabel="inner steps N", ylabel="outer iterations (bound: dashed)",
           title="iterations to reach eps (blank: not reached)")
    ax.legend(fontsize=7)
    ax = axes[3]
    _band(ax, r, "calls", "oracle calls to eps (grad + hvp)", marker="o")
    ax.plot(p.index, p.values * 10 * (2 * p.index.values + 1), "k--", lw=1, label="B (2N+1) K(N) (bound)")
    ax.set(yscale="log", xscale="log", xlabel="inner steps N", ylabel="oracle calls")
    ax2 = ax.twinx()
    _band(ax2, r, "seconds", "wall seconds to eps", marker="^", color="C3")
    ax2.set(ylabel="seconds (steps only)")
    if (r["seconds"] > 0).any():
        ax2.set_yscale("log")
    ax.set_title("cost to reach eps")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7)
    fig.suptitle(title + " (median, min-max band over seeds)")
    fig.tight_layout()
    return fig


def plot(table: pd.DataFrame, profile: str):
    return plot_anil(table, "ANIL, strongly convex ridge head: rate improves with N and saturates; cost is U-shaped",
                     "bound L (1 - alpha mu)^{2N}")


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per N: medians over seeds; verdicts: head block <= its bound (every seed), measured iterations <= the
    descent-lemma count K(N), iterations non-increasing in N up to 10% (improves then saturates)."""
    r = reach(table)
    s = r.groupby("N").agg(head_block=("head_block", "max"), head_bound=("head_bound", "first"),
                           L_meta=("L_meta", "median"), iters=("iters", "median"), iters_max=("iters", "max"),
                           reached=("iters", lambda x: int(x.notna().sum())), seeds=("iters", "size"),
                           predicted_K=("predicted_K", "median"), calls=("calls", "median"),
                           seconds=("seconds", "median")).reset_index()
    budget = r["budget"].max()
    it = s["iters"].fillna(budget + 1).to_numpy()
    mono = np.r_[True, it[1:] <= 1.1 * np.minimum.accumulate(it)[:-1]]
    s["head_bound_holds"] = s["head_block"] <= s["head_bound"] * (1 + 1e-9)
    s["K_bound_holds"] = (s["iters_max"].fillna(budget + 1) <= s["predicted_K"]) | (s["predicted_K"] > budget)
    s["iters_nonincreasing"] = mono
    s["holds"] = s["head_bound_holds"] & s["K_bound_holds"] & s["iters_nonincreasing"]
    return s


EXPERIMENT = Experiment("anil_convex", "ANIL with a strongly convex head: the head meta-curvature stays below "
                        "L(1-alpha mu)^{2N}, iterations to eps fall with N and saturate, cost N K(N) is U-shaped "
                        "(THEORY.md §7, §14 item 13)", specs, plot, summarize, order=4)
