"""Figure 1: multi-step MAML (deterministic meta-GD) versus the inner step alpha, with the divergence thresholds.

Predictions (THEORY.md §1.2, §14 items 4-5 [derived]). On quadratic tasks the N-step meta-objective is an exact
quadratic with Hessian :math:`H_N(\\alpha)=\\mathbb E_i[P_i^NC_iP_i^N]`, :math:`P_i=I-\\alpha A_i`, so meta-GD with
step beta gives exactly :math:`g_K=(I-\\beta H_N)^Kg_0` and diverges iff :math:`\\beta L_{\\rm meta}(\\alpha,N)>2`.

- Convex family (shared curvature :math:`A_i=C_i=A`, spectrum in [mu, L]): the inner loop is stable iff
  :math:`\\alpha<2/L`; meta-GD diverges beyond
  :math:`\\alpha_{\\rm crit}=(1+(2/(\\beta L))^{1/(2N)})/L\\to2/L` (``theory.quadratic.alpha_crit_convex``): no 1/N
  shrinkage.
- Nonconvex family (every task has the inner eigenvalue :math:`-\\ell` on a shared direction, outer weight c there):
  :math:`\\alpha_{\\rm crit}(N)=((2/(\\beta c))^{1/(2N)}-1)/\\ell\\approx\\ln(2/(\\beta c))/(2N\\ell)`
  (``theory.quadratic.alpha_crit_nonconvex``): the critical inner step shrinks like 1/N (Ji, Yang, Liang 2022).

Each run is the library's MAML solver (second-order engine, full batch, so meta-GD is deterministic) at
alpha = alpha_rel * (closed-form threshold); it records the measured gradient-norm ratio after K steps next to the
exact prediction :math:`\\|(I-\\beta H_N)^Kg_0\\|/\\|g_0\\|` and the exact threshold of its own task pool, found by
bisection on :math:`\\beta\\lambda_{\\max}(H_N(\\alpha))=2` (``theory.quadratic.meta_smoothness``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.maml_alpha:run"

#: the two families of the figure and their fixed settings
CONVEX = {"d": 4, "mu": 0.1, "L": 1.0, "beta": 1.0}
NONCONVEX = {"d": 4, "ell": 1.0, "c": 1.0, "mu": 0.2, "L": 1.0, "beta": 0.5}


@dataclass(frozen=True)
class IndefiniteTasks:
    """Quadratic tasks with a shared negative-curvature direction (THEORY.md §1.2, nonconvex inner loss).

    In a basis R shared by all tasks (Haar, from ``structure_seed``): support Hessian
    :math:`A_i=R\\,(\\,-\\ell\\oplus A'_i)R^\\top`, query Hessian :math:`C_i=R\\,(c\\oplus A'_i)R^\\top`, with
    :math:`A'_i` a per-task random (d-1)x(d-1) matrix with spectrum in [mu, L]; centres
    :math:`a_i=b_i\\sim\\mathcal N(m, I)`. The direction :math:`Re_1` is an eigenvector of every meta-Hessian with
    eigenvalue :math:`c(1+\\alpha\\ell)^{2N}`, which is what ``alpha_crit_nonconvex`` describes. Built with the
    library's ``tasks_from_quadratics`` (exact oracles, exact constants).
    """

    d: int = 4
    ell: float = 1.0
    c: float = 1.0
    mu: float = 0.2
    L: float = 1.0
    center: float = 1.0
    task_spread: float = 1.0
    structure_seed: int = 0

    def sample(self, B: int, seed):
        import torch

        from convtheory.problems.base import make_generator
        from convtheory.problems.quadratic import (random_orthogonal, spectrum_with_endpoints, symmetric_from_eig,
                                                   tasks_from_quadratics)

        gen = make_generator(seed)
        R = random_orthogonal(1, self.d, make_generator(self.structure_seed))[0]
        lam = spectrum_with_endpoints(B, self.d - 1, self.mu, self.L, gen)
        Ap = symmetric_from_eig(random_orthogonal(B, self.d - 1, gen), lam)
        A = torch.zeros(B, self.d, self.d, dtype=torch.float64)
        C = torch.zeros_like(A)
        A[:, 0, 0], C[:, 0, 0] = -self.ell, self.c
        A[:, 1:, 1:], C[:, 1:, 1:] = Ap, Ap
        A, C = R @ A @ R.T, R @ C @ R.T
        A, C = 0.5 * (A + A.transpose(-1, -2)), 0.5 * (C + C.transpose(-1, -2))
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        a = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)
        return tasks_from_quadratics(A, a, C, a.clone())

    def init_params(self, seed):
        import torch

        from convtheory.problems.base import make_generator

        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64)


def make_family(name: str, structure_seed: int = 0):
    from convtheory.problems import QuadraticTasks

    if name == "convex":
        return QuadraticTasks(d=CONVEX["d"], mu=CONVEX["mu"], L=CONVEX["L"], shared_curvature=True,
                              structure_seed=structure_seed)
    if name == "nonconvex":
        p = NONCONVEX
        return IndefiniteTasks(d=p["d"], ell=p["ell"], c=p["c"], mu=p["mu"], L=p["L"], structure_seed=structure_seed)
    raise ValueError(f"family = {name!r} is unknown; valid: convex, nonconvex")


def closed_form_threshold(family: str, N: int, beta: float) -> float:
    """The closed-form divergence threshold in alpha (THEORY.md §14 items 4-5)."""
    from convtheory.theory.quadratic import alpha_crit_convex, alpha_crit_nonconvex

    if family == "convex":
        return alpha_crit_convex(N, beta, CONVEX["L"])
    return alpha_crit_nonconvex(N, beta, NONCONVEX["c"], NONCONVEX["ell"])


def exact_threshold(A, C, N: int, beta: float, alpha_hi: float) -> float:
    """Smallest alpha with beta * L_meta(alpha, N) >= 2 on the tasks (A, C): a scan, then bisection."""
    from convtheory.theory.quadratic import meta_smoothness

    def over(al):
        return beta * meta_smoothness(al, N, A, C) >= 2.0

    grid_a = np.linspace(alpha_hi / 400, alpha_hi, 400)
    hit = next((i for i, al in enumerate(grid_a) if over(al)), None)
    if hit is None:
        return math.inf
    lo, hi = (grid_a[hit - 1] if hit else 0.0), grid_a[hit]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if over(mid) else (mid, hi)
    return 0.5 * (lo + hi)


def meta_gd(family_name: str, alpha: float, beta: float, N: int, B: int, K: int, seed: int, eval_every: int):
    """Deterministic meta-GD (library MAML solver, full batch) and the exact quantities of its task pool.

    Returns (trace, pool tasks, theta0): the pool and theta0 are rebuilt exactly as ``solvers.run`` builds them.
    """
    from convtheory.solvers import SOLVERS, Budget, Sampling, run
    from convtheory.solvers.sources import MetaSource, subseeds

    family = make_family(family_name)
    sampling = Sampling(mode="finite-sum", B=B)
    solver = SOLVERS["maml"](alpha=alpha, beta=beta, N=N, sampling=sampling)
    trace = run(solver, family, Budget(iterations=K), seed=seed, eval_every=eval_every, eval_tasks=4)
    source_seed, init_seed, _ = subseeds(seed, 3)
    src = MetaSource(family, sampling, source_seed, 4)
    return trace, src.pool, src.init_params(init_seed)


def predicted_ratio(pool, theta0, alpha: float, beta: float, N: int, K: int) -> float:
    """Exact ||g_K|| / ||g_0|| of meta-GD on the quadratic meta-objective: ||(I - beta H)^K g_0|| / ||g_0||."""
    from convtheory.problems.quadratic import exact_meta_gradient, meta_hessian

    H = meta_hessian(pool, alpha, N).numpy()
    g0 = exact_meta_gradient(theta0, pool, alpha, N).numpy()
    w, V = np.linalg.eigh(H)
    coef = V.T @ g0
    with np.errstate(over="ignore"):
        gk = np.sqrt(np.sum((coef * np.abs(1 - beta * w) ** K) ** 2))
    return float(gk / np.linalg.norm(g0))


def run(params: dict, seed: int) -> pd.DataFrame:
    """One (family, N, alpha) point: measured and exactly predicted ||grad|| after K meta-GD steps."""
    fam, N, beta = params["family"], int(params["N"]), float(params["beta"])
    K, B = int(params["iterations"]), int(params.get("B", 8))
    a_cf = closed_form_threshold(fam, N, beta)
    alpha = float(params["alpha_rel"]) * a_cf
    trace, pool, theta0 = meta_gd(fam, alpha, beta, N, B, K, seed, eval_every=K)
    A, C = pool.exact["A"].numpy(), pool.exact["C"].numpy()
    a_ex = exact_threshold(A, C, N, beta, alpha_hi=3.0 * a_cf)
    g0 = float(trace["grad_norm"].iloc[0])
    last = trace.iloc[-1]
    diverged = bool(trace["diverged"].any())
    ratio = math.inf if diverged or not math.isfinite(last["grad_norm"]) else float(last["grad_norm"]) / g0
    pred = predicted_ratio(pool, theta0, alpha, beta, N, int(last["iteration"]))
    return pd.DataFrame([{
        "family": fam, "N": N, "alpha": alpha, "beta": beta, "alpha_closed_form": a_cf, "alpha_exact": a_ex,
        "inner_max": 2.0 / float(pool.constants.L), "iterations_run": int(last["iteration"]),
        "final_ratio": ratio, "predicted_ratio": pred, "diverged": diverged,
        "grad_evals": int(last["oracle_grad"]), "hvp_evals": int(last["oracle_hvp"]),
    }])


REL = [0.05, 0.2, 0.5, 0.8, 0.95, 1.05, 1.25, 1.6]


def specs(profile: str) -> list:
    if profile == "test":
        Ns, rel, seeds, K = [1, 4], [0.5, 0.95, 1.05, 1.6], (0,), 40
    elif profile == "quick":
        Ns, rel, seeds, K = [1, 4, 16], [0.05, 0.5, 0.95, 1.05, 1.25, 1.6], (0, 1), 60
    else:
        Ns, rel, seeds, K = [1, 2, 4, 8, 16, 32], REL + [0.9, 0.99, 1.01, 1.1, 2.0], tuple(range(5)), 200
    out = []
    for fam, p in (("convex", CONVEX), ("nonconvex", NONCONVEX)):
        out += grid("maml_alpha", FN, {"N": Ns, "alpha_rel": rel}, seeds=seeds,
                    fixed={"family": fam, "beta": p["beta"], "iterations": K, "B": 8})
    return out


CLIP = (1e-12, 1e16)


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    Ns = sorted(table["N"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(Ns)))
    for ax, fam in zip(axes[:2], ("convex", "nonconvex")):
        sub = table[table["family"] == fam]
        for N, col in zip(Ns, colors):
            s = sub[sub["N"] == N]
            if s.empty:
                continue
            done = s[np.isfinite(s["final_ratio"])]
            r = done.groupby("alpha")["final_ratio"]
            mid, lo, hi = r.median(), r.min(), r.max()
            ax.plot(mid.index, mid.values, "o", color=col, label=f"N = {N}: measured (median)")
            ax.fill_between(mid.index, lo.values, hi.values, color=col, alpha=0.2)
            pr = done.groupby("alpha")["predicted_ratio"].median()
            ax.plot(pr.index, pr.values, "-", color=col, lw=1, alpha=0.8)
            stop = sorted(s.loc[~np.isfinite(s["final_ratio"]), "alpha"].unique())
            ax.plot(stop, [CLIP[1]] * len(stop), "x", color=col, ms=8)
            ax.axvline(s["alpha_closed_form"].iloc[0], color=col, ls="--", lw=1.2)
        if fam == "convex":
            ax.axvline(table.loc[table["family"] == fam, "inner_max"].iloc[0], color="k", ls=":", lw=1.5,
                       label="inner-loop limit 2/L")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.plot([], [], "k-", lw=1, label="exact prediction ||(I-beta H)^K g0|| / ||g0||")
        ax.plot([], [], "k--", lw=1.2, label="closed-form alpha_crit(N)")
        ax.plot([], [], "kx", label="diverged (run stopped at |theta| > 1e12)")
        p = CONVEX if fam == "convex" else NONCONVEX
        title = (f"convex shared curvature (L = {p['L']:g}, beta = {p['beta']:g})" if fam == "convex" else
                 f"nonconvex: inner eig -{p['ell']:g}, c = {p['c']:g}, beta = {p['beta']:g}")
        ax.set(xscale="log", yscale="log", xlabel="inner step alpha", ylim=(1e-9, CLIP[1] * 30),
               ylabel="||grad L(theta_K)|| / ||grad L(theta_0)||", title=title)
        ax.legend(fontsize=6.5, loc="upper left")
    ax = axes[2]
    for fam, mk in (("convex", "s"), ("nonconvex", "o")):
        sub = table[table["family"] == fam]
        conv = sub[sub["final_ratio"] < 1].groupby("N")["alpha"].max()
        div = sub[~(sub["final_ratio"] < 1)].groupby("N")["alpha"].min()
        Nn = np.array(sorted(sub["N"].unique()), dtype=float)
        cf = sub.groupby("N")["alpha_closed_form"].first()
        line, = ax.plot(cf.index, cf.values, "-", label=f"{fam}: closed-form alpha_crit(N)")
        ex = sub.groupby("N")["alpha_exact"].median()
        ax.plot(ex.index, ex.values, mk, mfc="none", ms=9, color=line.get_color(),
                label=f"{fam}: exact (meta-Hessian bisection)")
        idx = sorted(set(conv.index) & set(div.index))
        if idx:
            lo, hi = conv.loc[idx].values, div.loc[idx].values
            mid = np.sqrt(lo * hi)
            ax.errorbar(idx, mid, yerr=[mid - lo, hi - mid], fmt="none", ecolor=line.get_color(), capsize=4,
                        label=f"{fam}: measured bracket (last converging, first diverging alpha)")
        if fam == "nonconvex":
            p = NONCONVEX
            ax.plot(Nn, np.log(2 / (p["beta"] * p["c"])) / (2 * Nn * p["ell"]), ":", color=line.get_color(),
                    label="ln(2/(beta c)) / (2 N ell): slope -1")
        else:
            ax.axhline(2 / CONVEX["L"], color=line.get_color(), ls=":", label="2/L")
    ax.set(xscale="log", yscale="log", xlabel="inner steps N", ylabel="critical inner step alpha_crit",
           title="threshold vs N: 1/N only on the nonconvex family")
    ax.legend(fontsize=6.5)
    fig.suptitle("Multi-step MAML meta-GD versus the inner step alpha: measured (median, min-max over seeds) "
                 "against the exact thresholds (THEORY.md §14 items 4-5)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (family, N): (i) the exact threshold of every pool equals the closed form (rel. diff < 1e-6); (ii) the
    run diverges (gradient grows) iff alpha > exact threshold; (iii) where both are finite and above round-off, the
    measured ratio equals the exact prediction (rel. diff < 1e-6); plus N alpha_crit for the 1/N law."""
    rows = []
    for (fam, N), g in table.groupby(["family", "N"]):
        cf = float(g["alpha_closed_form"].iloc[0])
        thr_err = float((g["alpha_exact"] / cf - 1).abs().max())
        grows = ~(g["final_ratio"] < 1)
        predicted_grows = g["alpha"] > g["alpha_exact"]
        n_mismatch = int((grows != predicted_grows).sum())
        ok = g[np.isfinite(g["final_ratio"]) & (g["predicted_ratio"] > 1e-12) & (g["predicted_ratio"] < 1e12)]
        pred_err = float((ok["final_ratio"] / ok["predicted_ratio"] - 1).abs().max()) if len(ok) else math.nan
        conv = g.loc[~grows, "alpha"]
        div = g.loc[grows, "alpha"]
        rows.append({"family": fam, "N": int(N), "alpha_crit_closed_form": cf, "N_alpha_crit": N * cf,
                     "threshold_rel_diff": thr_err,
                     "largest_converging": float(conv.max()) if len(conv) else math.nan,
                     "smallest_diverging": float(div.min()) if len(div) else math.nan,
                     "n_points": int(len(g)), "n_verdict_mismatch": n_mismatch, "max_rel_err_vs_exact": pred_err,
                     "holds": bool(thr_err < 1e-6 and n_mismatch == 0 and (math.isnan(pred_err) or pred_err < 1e-6))})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("maml_alpha", "N-step MAML meta-GD converges iff beta L_meta(alpha, N) < 2: alpha_crit -> 2/L "
                        "on convex tasks and alpha_crit ~ ln(2/(beta c))/(2 N ell) with negative inner curvature "
                        "(THEORY.md §14 items 4-5)", specs, plot, summarize, order=1)
