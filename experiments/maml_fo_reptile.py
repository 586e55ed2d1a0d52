"""Figure 10: MAML, first-order MAML and Reptile side by side on quadratic tasks (independent query losses), run
as deterministic meta-GD on a finite pool of tasks, with the exact MAML meta-gradient norm recorded.

Predictions (THEORY.md §14 items 9, 10 [derived]; Fallah, Mokhtari, Ozdaglar 2020 for FO-MAML's non-vanishing
error): MAML's exact meta-gradient :math:`\\|\\nabla\\mathcal L(\\theta_k)\\|` goes to 0; FO-MAML stalls at
:math:`\\theta^*_{FO}=(\\mathbb E[C_iP_i^N])^{-1}\\mathbb E[C_i(P_i^Na_i-a_i+b_i)]`, where the MAML gradient norm is
``theory.maml.fomaml_floor`` (> 0, O(alpha)); Reptile (N inner steps on the support losses) stalls at
:math:`\\theta^*_{Rep}=(\\mathbb E[I-P_i^N])^{-1}\\mathbb E[(I-P_i^N)a_i]` (``theory.maml.reptile_fixed_point``), whose MAML
gradient norm is predicted in closed form. Expectations are over the run's task pool, so the predictions are exact
for the objective the Trace measures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.maml_fo_reptile:run"
METHODS = ("maml", "fomaml", "reptile")
#: a run's floor must match the prediction to this relative tolerance (plus an absolute round-off allowance)
RTOL, ATOL = 1e-6, 1e-10


def _pool(family, B: int, seed: int):
    """The finite-sum task pool a solver run with this seed uses (MetaSource's seeding, reproduced)."""
    from convtheory.solvers.sources import subseeds

    source_seed = subseeds(seed, 3)[0]
    pool_seed = subseeds(source_seed, 3)[0]
    return family.sample(B, pool_seed)


def predicted_floor(method: str, alpha: float, N: int, A, a, C, b) -> float:
    """The MAML meta-gradient norm at the method's fixed point (0 for MAML), THEORY.md §14 items 9-10."""
    from convtheory.theory import maml as tm

    if method == "maml":
        return 0.0
    if method == "fomaml":
        return tm.fomaml_floor(alpha, N, A, a, C, b)
    theta = tm.reptile_fixed_point(alpha, N, A, a)
    return float(np.linalg.norm(tm.maml_quadratic_gradient(theta, alpha, N, A, a, C, b)))


def run(params: dict, seed: int) -> pd.DataFrame:
    """One method on one pool of B quadratic tasks: the Trace (exact MAML gradient norm per recorded iteration)
    plus the predicted floor of that pool."""
    from convtheory.problems import QuadraticTasks
    from convtheory.solvers import SOLVERS, Budget, Sampling
    from convtheory.solvers import run as run_solver

    method, alpha, N, B = params["method"], float(params["alpha"]), int(params["N"]), int(params["B"])
    fam = QuadraticTasks(d=params.get("d", 5), mu=params.get("mu", 0.25), L=1.0, query="independent",
                         query_shift=params.get("query_shift", 0.5))
    # meta step: 1 for MAML / FO-MAML (their meta-Hessians are bounded by L = 1); Reptile's update is
    # theta + beta (w_N - theta) ~ theta - beta N alpha A (theta - a): beta = 1 / (N alpha L) makes it a GD step of 1/L
    beta = 1.0 if method != "reptile" else 1.0 / (N * alpha)
    solver = SOLVERS[method](alpha=alpha, beta=beta, N=N, sampling=Sampling(mode="finite-sum", B=B))
    trace = run_solver(solver, fam, Budget(iterations=int(params["iterations"])), seed=seed,
                       eval_every=int(params.get("eval_every", 5)), eval_tasks=8)
    e = _pool(fam, B, seed).exact
    A, a, C, b = (e[k].double().numpy() for k in ("A", "a", "C", "b"))
    trace["predicted_floor"] = predicted_floor(method, alpha, N, A, a, C, b)
    trace["B"] = B
    return trace


def specs(profile: str) -> list:
    if profile == "test":
        axes = {"method": list(METHODS), "alpha": [0.2]}
        fixed = {"N": 3, "B": 8, "iterations": 150, "eval_every": 10}
        seeds = (0,)
    elif profile == "quick":
        axes = {"method": list(METHODS), "alpha": [0.05, 0.1, 0.2, 0.4]}
        fixed = {"N": 3, "B": 8, "iterations": 250, "eval_every": 5}
        seeds = (0, 1, 2)
    else:
        axes = {"method": list(METHODS), "alpha": [0.025, 0.05, 0.1, 0.2, 0.4]}
        fixed = {"N": 3, "B": 16, "iterations": 500, "eval_every": 5}
        seeds = tuple(range(10))
    return grid("maml_fo_reptile", FN, axes, seeds=seeds, fixed=fixed)


COLORS = {"maml": "C0", "fomaml": "C1", "reptile": "C2"}
LABELS = {"maml": "MAML", "fomaml": "FO-MAML", "reptile": "Reptile"}


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    alphas = sorted(table["cfg_alpha"].unique())
    n = len(alphas) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.9 * n, 4.0), squeeze=False)
    floor_y = 1e-16
    for j, alpha in enumerate(alphas):
        ax = axes[0, j]
        sub = table[table["cfg_alpha"] == alpha]
        for m in METHODS:
            s = sub[sub["method"] == m]
            g = s.groupby("iteration")["grad_norm"]
            mid, lo, hi = (v.clip(lower=floor_y) for v in (g.median(), g.min(), g.max()))
            ax.plot(mid.index, mid.values, color=COLORS[m], label=f"{LABELS[m]}, measured")
            ax.fill_between(mid.index, lo.values, hi.values, color=COLORS[m], alpha=0.2)
            if m != "maml":
                pf = s.groupby("seed")["predicted_floor"].first()
                ax.axhline(pf.median(), color="k" if m == "fomaml" else "0.4", ls="--" if m == "fomaml" else ":",
                           lw=1.2, label=f"{LABELS[m]} predicted floor (§14 item {9 if m == 'fomaml' else 10})")
        ax.set(yscale="log", xlabel="iteration k", ylabel="exact MAML gradient norm  ||∇L(θ_k)||",
               title=f"alpha = {alpha:g}, N = {int(sub['cfg_N'].iloc[0])}", ylim=(floor_y, 10))
        if j == 0:
            ax.legend(fontsize=7, loc="center right")
    ax = axes[0, -1]
    for m in ("fomaml", "reptile"):
        s = table[table["method"] == m].sort_values("iteration")
        last = s.groupby(["cfg_alpha", "seed"]).agg(final=("grad_norm", "last"), pred=("predicted_floor", "first"))
        last = last.reset_index()
        g = last.groupby("cfg_alpha")
        ax.errorbar(g["final"].median().index, g["final"].median().values,
                    yerr=[g["final"].median() - g["final"].min(), g["final"].max() - g["final"].median()],
                    fmt="o", color=COLORS[m], capsize=3, label=f"{LABELS[m]}: measured final")
        ax.plot(g["pred"].median().index, g["pred"].median().values, "--", color=COLORS[m],
                label=f"{LABELS[m]}: predicted floor")
    ax.set(xscale="log", yscale="log", xlabel="inner step alpha", ylabel="MAML gradient norm at the limit",
           title="floors vs alpha (min-max over pools)")
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas], minor=False)
    ax.set_xticks([], minor=True)
    ax.legend(fontsize=7)
    fig.suptitle("MAML's exact meta-gradient vanishes; FO-MAML and Reptile stall at their predicted floors "
                 "(median, min-max band over task pools; 0 drawn at 1e-16)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (alpha, method): measured final gradient norm against the predicted floor, worst seed. MAML holds if its
    final gradient is below 1e-8 of its initial one; FO-MAML and Reptile if the measured floor equals the predicted
    one to rtol 1e-6 (their floors are > 0 where the prediction says so)."""
    rows = []
    for (alpha, m), s in table.groupby(["cfg_alpha", "method"]):
        per_seed = []
        for seed, r in s.sort_values("iteration").groupby("seed"):
            g0, gK, pf = r["grad_norm"].iloc[0], r["grad_norm"].iloc[-1], r["predicted_floor"].iloc[0]
            if m == "maml":
                ok = bool(gK <= 1e-8 * g0) and not r["diverged"].any()
                rel = gK / g0
            else:
                rel = abs(gK - pf) / max(pf, ATOL)
                ok = bool(abs(gK - pf) <= RTOL * pf + ATOL) and not r["diverged"].any()
            per_seed.append((gK, pf, rel, ok))
        gK, pf, rel, ok = zip(*per_seed)
        rows.append({"alpha": alpha, "method": m, "final_grad_norm_median": float(np.median(gK)),
                     "predicted_floor_median": float(np.median(pf)),
                     "worst_gap": float(np.max(rel)),
                     "seeds": len(per_seed), "holds": all(ok)})
    out = pd.DataFrame(rows)
    out["check"] = np.where(out["method"] == "maml", "worst_gap = final/initial <= 1e-8",
                            "worst_gap = |final - predicted|/predicted <= 1e-6")
    return out


EXPERIMENT = Experiment("maml_fo_reptile", "MAML's exact meta-gradient vanishes while FO-MAML and Reptile stall "
                        "at fixed points whose MAML-gradient norms are predicted in closed form (THEORY.md §14 "
                        "items 9, 10)", specs, plot, summarize, order=10)
