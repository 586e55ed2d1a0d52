"""Figure 12: a guideline map over (alpha, N) for N-step MAML: the region each step-size rule admits, laid over the
region where meta-GD converges in practice.

Guidelines (THEORY.md §5, §14 items 4-6):

- Ji, Yang, Liang (JMLR 2022): alpha <= 1/(8 N L) (``theory.guidelines.maml_guideline``; the 1/N scaling is the
  paper's, the constant 8 is recalled [uncertain]); it is a sufficient condition, so it must never admit a point
  that fails ("theory only" = 0), and its conservativeness is how far convergence reaches beyond it.
- The exact quadratic threshold: meta-GD with step beta converges iff beta L_meta(alpha, N) < 2, L_meta the top
  eigenvalue of the exact meta-Hessian E[P^N C P^N] (bisection; on the nonconvex family it equals
  ``theory.quadratic.alpha_crit_nonconvex``). It is an asymptotic statement: just below it the contraction is slow,
  so a finite run may not yet reach the tolerance; the exact finite-K prediction
  :math:`\\|(I-\\beta H)^Kg_0\\|\\le\\text{tol}\\,\\|g_0\\|` says which.

Each grid point is a run of the library's MAML solver (full batch, so deterministic meta-GD, fixed beta) for K steps;
``analysis.guideline_grid`` classifies the points (converged: final/initial gradient norm <= tol on every seed) and
``analysis.conservativeness`` summarises per N.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment
from .maml_alpha import exact_threshold, meta_gd, predicted_ratio

version = 1
FN = "experiments.guideline_map:run"
BETA = 0.5
TOL = 1e-3
C_JI = 8.0


def run(params: dict, seed: int) -> pd.DataFrame:
    """One (family, alpha, N) point: the first and last rows of the meta-GD trace, the exact threshold and the exact
    finite-K prediction."""
    fam, N, alpha, K = params["family"], int(params["N"]), float(params["alpha"]), int(params["iterations"])
    trace, pool, theta0 = meta_gd(fam, alpha, BETA, N, int(params.get("B", 8)), K, seed, eval_every=K)
    t = trace[["iteration", "grad_norm", "diverged"]].copy()
    A, C = pool.exact["A"].numpy(), pool.exact["C"].numpy()
    t["L"] = float(pool.constants.L)
    t["alpha_exact"] = exact_threshold(A, C, N, BETA, alpha_hi=4.0)
    t["predicted_ratio_K"] = predicted_ratio(pool, theta0, alpha, BETA, N, K)
    return t


def specs(profile: str) -> list:
    if profile == "test":
        fams, Ns, alphas, seeds, K = ["nonconvex"], [1, 4], [0.01, 0.1, 0.3, 1.5], (0,), 60
    elif profile == "quick":
        fams, Ns, alphas, seeds, K = ["nonconvex"], [1, 2, 4, 8, 16], list(np.geomspace(0.003, 3.0, 11)), (0, 1), 100
    else:
        fams, Ns, alphas, seeds, K = (["nonconvex", "convex"], [1, 2, 4, 8, 16, 32, 64],
                                      list(np.geomspace(0.001, 4.0, 25)), tuple(range(3)), 400)
    out = []
    for fam in fams:
        out += grid("guideline_map", FN, {"alpha": [float(a) for a in alphas], "N": Ns}, seeds=seeds,
                    fixed={"family": fam, "iterations": K, "B": 8})
    return out


def classify(table: pd.DataFrame, family: str) -> dict[str, pd.DataFrame]:
    """guideline_grid tables for the three admissibility rules on one family."""
    from convtheory.analysis import guideline_grid
    from convtheory.theory.guidelines import maml_guideline

    sub = table[table["family"] == family]
    alphas = sorted(sub["alpha"].unique())
    Ns = sorted(int(n) for n in sub["N"].unique())
    by_point = {k: g for k, g in sub.groupby(["alpha", "N"])}
    L = float(sub["L"].max())

    def run_fn(alpha, N):
        return by_point[(alpha, N)][["seed", "iteration", "grad_norm", "diverged"]]

    def ji(alpha, N):
        return maml_guideline(L, N, c=C_JI)  # admissible iff alpha <= alpha_max = 1/(8 N L)

    def exact(alpha, N):
        return float(by_point[(alpha, N)]["alpha_exact"].min())

    def finite_k(alpha, N):
        return bool((by_point[(alpha, N)]["predicted_ratio_K"] <= TOL).all())

    g = {"alpha": alphas, "N": Ns}
    kw = {"step": "alpha", "tol": TOL, "disable": True}
    return {"Ji et al. alpha <= 1/(8NL)": guideline_grid(run_fn, ji, g, **kw),
            "exact threshold beta L_meta < 2": guideline_grid(run_fn, exact, g, **kw),
            "exact finite-K prediction": guideline_grid(run_fn, finite_k, g, **kw)}


COLORS = {"both": "#4caf50", "theory only": "#e53935", "practice only": "#90caf9", "neither": "#bdbdbd"}


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from convtheory.analysis.guidelines import CLASSES

    fams = sorted(table["family"].unique(), reverse=True)
    fig, axes = plt.subplots(len(fams), 3, figsize=(15, 4.3 * len(fams)), squeeze=False)
    cmap = ListedColormap([COLORS[c] for c in CLASSES])
    for i, fam in enumerate(fams):
        grids = classify(table, fam)
        L = float(table.loc[table["family"] == fam, "L"].max())
        for j, (name, g) in enumerate(grids.items()):
            ax = axes[i, j]
            alphas = np.array(sorted(g["alpha"].unique()))
            Ns = np.array(sorted(g["N"].unique()))
            code = g.pivot(index="N", columns="alpha", values="classification").loc[Ns, alphas]
            Z = code.apply(lambda col: col.map({c: k for k, c in enumerate(CLASSES)})).to_numpy(float)
            la = np.log(alphas)
            ae = np.exp(np.concatenate([[la[0] - (la[1] - la[0]) / 2], (la[1:] + la[:-1]) / 2,
                                        [la[-1] + (la[-1] - la[-2]) / 2]]))
            ln = np.log(Ns)
            dn = (ln[1] - ln[0]) if len(ln) > 1 else 1.0
            ne = np.exp(np.concatenate([[ln[0] - dn / 2], (ln[1:] + ln[:-1]) / 2, [ln[-1] + dn / 2]]))
            ax.pcolormesh(ae, ne, Z, cmap=cmap, vmin=-0.5, vmax=3.5, edgecolors="white", linewidth=0.5)
            Nf = np.geomspace(ne[0], ne[-1], 100)
            ax.plot(1 / (C_JI * Nf * L), Nf, "k--", lw=1.5, label="Ji et al.: alpha = 1/(8 N L)")
            ex = table[table["family"] == fam].groupby("N")["alpha_exact"].min()
            ax.plot(ex.values, ex.index, "k-", marker="|", lw=1.5, label="exact threshold (beta L_meta = 2)")
            ax.set(xscale="log", yscale="log", xlabel="inner step alpha", ylabel="inner steps N",
                   title=f"{fam} family: {name}")
            ax.legend(fontsize=7, loc="lower left")
    handles = [Patch(color=COLORS[c], label={"both": "both (admitted, converges)",
                                             "theory only": "theory only (admitted, fails)",
                                             "practice only": "practice only (converges, not admitted)",
                                             "neither": "neither"}[c]) for c in CLASSES]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"Guideline map for N-step MAML (meta-GD, beta = {BETA:g}, converged: ||grad_K||/||grad_0|| <= "
                 f"{TOL:g} on every seed): theory's region over practice's", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (family, rule, N): analysis.conservativeness (largest converged / largest admitted alpha, counts); holds:
    Ji's rule admits no failing point; the exact threshold lets nothing converge beyond it and its failing admitted
    points are all predicted slow at finite K; the finite-K prediction matches every point."""
    from convtheory.analysis import conservativeness

    out = []
    for fam in sorted(table["family"].unique()):
        grids = classify(table, fam)
        fk = grids["exact finite-K prediction"].set_index(["alpha", "N"])["admissible"]
        for name, g in grids.items():
            cons = conservativeness(g)
            for _, r in cons.iterrows():
                sub = g[g["N"] == r["N"]]
                if name.startswith("Ji"):
                    ok = r["n_theory_only"] == 0
                elif name.startswith("exact threshold"):
                    th = sub[sub["classification"] == "theory only"]
                    slow = all(not fk[(a, n)] for a, n in zip(th["alpha"], th["N"]))
                    ok = r["n_practice_only"] == 0 and slow
                else:
                    ok = r["n_theory_only"] == 0 and r["n_practice_only"] == 0
                out.append({"family": fam, "rule": name, **r.to_dict(), "holds": bool(ok)})
    df = pd.DataFrame(out)
    df["N"] = df["N"].astype(int)
    return df


EXPERIMENT = Experiment("guideline_map", "On the (alpha, N) grid Ji et al.'s alpha <= 1/(8NL) admits only converging "
                        "points and is conservative by the factor shown; the exact threshold beta L_meta < 2 separates "
                        "converging from diverging runs (THEORY.md §14 items 4-6)", specs, plot, summarize, order=12)
