"""Figure 13: the largest stable meta step beta_max of N-step MAML versus N, found by bisection on meta-GD.

Prediction (THEORY.md §1.2 and §14 item 3 [derived]). On quadratic tasks the N-step meta-objective is an exact
quadratic with Hessian :math:`H_N=\\mathbb E_i[P_i^NC_iP_i^N]`, :math:`P_i=I-\\alpha A_i`, so deterministic meta-GD with
step beta converges iff :math:`\\beta<\\beta_{\\max}=2/L_{\\rm meta}(\\alpha,N)`,
:math:`L_{\\rm meta}=\\lambda_{\\max}(H_N)`
(``theory.quadratic.meta_smoothness``, ``beta_max``). With shared curvature :math:`A_i=C_i=A`, spectrum in
:math:`[0,1/\\alpha]`, :math:`L_{\\rm meta}\\le h(\\lambda^\\dagger)=\\frac1{\\alpha(2N+1)}(\\frac{2N}{2N+1})^{2N}`, so
:math:`\\beta_{\\max}\\ge2\\alpha(2N+1)(\\frac{2N+1}{2N})^{2N}\\approx2e\\alpha(2N+1)` (``beta_max_shared_bound``):
beta_max grows roughly linearly in N (log-log slope -> 1), with equality when the spectrum is dense near
:math:`\\lambda^\\dagger`. The family here has a log-spaced shared spectrum in [mu, L] (d = 24), dense enough that
beta_max stays within a few percent of the bound.

Measurement: meta-GD on the exact quadratic meta-objective (``problems.quadratic.exact_meta_gradient``, the
library's closed-form meta-gradient, equal to the second-order engine's to round-off: §14 item 2), run for a grid
of betas at once (vmap) from the same theta_0. For GD on a quadratic the step ratio
:math:`\\|g_k\\|/\\|g_{k-1}\\|` is nondecreasing in k and tends to :math:`\\max_j|1-\\beta h_j|`, so "the gradient norm
grew at the last step" proves beta > beta_max, and "it shrank" is right for every beta < beta_max (and above it once
K is large enough). A geometric grid, then three zoomed linear grids (K = 60, 120, 400, 1000 steps; a grid whose
lower end turns out to diverge at a longer K is moved down), bracket
beta_max: ``beta_hi`` (smallest beta seen to diverge, a rigorous upper bound) and ``beta_lo``. At small N the
library's MAML solver (second-order engine, full batch) is also run at 0.9 beta_lo and 1.1 beta_hi: it must
converge below and diverge above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 2
FN = "experiments.beta_max:run"
KS = (60, 120, 400, 1000)  # meta-GD steps per bisection stage (coarse to fine)
GRID = 32  # betas per stage
TOL = 1e-4  # relative width of the final bracket, as the verdict uses it
SOLVER_STEPS = 60


@dataclass(frozen=True)
class LogSpectrumTasks:
    """Quadratic tasks with one shared curvature A_i = C_i = A whose spectrum is log-spaced in [mu, L].

    :math:`A=R\\,\\mathrm{diag}(\\lambda)R^\\top`, R Haar-orthogonal from ``structure_seed``,
    :math:`\\lambda_j` log-spaced from mu to L (both included);
    centres :math:`a_i=b_i\\sim\\mathcal N(m,\\texttt{task\\_spread}^2I)`,
    :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt d`. A dense spectrum near every scale makes
    :math:`\\max_j\\lambda_j(1-\\alpha\\lambda_j)^{2N}` close to its continuous maximum
    :math:`h(\\lambda^\\dagger)` for all N.
    Built with ``tasks_from_quadratics`` (exact oracles, exact constants).
    """

    d: int = 24
    mu: float = 1e-3
    L: float = 1.0
    center: float = 1.0
    task_spread: float = 1.0
    structure_seed: int = 0

    def curvature(self):
        import torch

        from convtheory.problems.base import make_generator
        from convtheory.problems.quadratic import random_orthogonal, symmetric_from_eig

        lam = torch.logspace(math.log10(self.mu), math.log10(self.L), self.d, dtype=torch.float64)
        lam[0], lam[-1] = self.mu, self.L
        R = random_orthogonal(1, self.d, make_generator(self.structure_seed))
        return symmetric_from_eig(R, lam.unsqueeze(0))[0]

    def sample(self, B: int, seed):
        import torch

        from convtheory.problems.base import make_generator
        from convtheory.problems.quadratic import tasks_from_quadratics

        gen = make_generator(seed)
        A = self.curvature().expand(B, self.d, self.d).contiguous()
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        a = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)
        return tasks_from_quadratics(A, a)

    def init_params(self, seed):
        import torch

        from convtheory.problems.base import make_generator

        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64)


def diverges(tasks, theta0, alpha: float, N: int, betas, K: int):
    """Meta-GD with each step in ``betas`` (vmapped) for K steps on the exact meta-objective; True where the
    gradient norm grew at the last step (or overflowed): a proof that beta > 2/L_meta (module docstring)."""
    import torch
    from torch.func import vmap

    from convtheory.problems.quadratic import exact_meta_gradient

    grad = vmap(lambda th: exact_meta_gradient(th, tasks, alpha, N))
    b = betas.unsqueeze(-1)
    theta = theta0.expand(len(betas), -1).clone()
    prev = last = None
    for _ in range(K):
        g = grad(theta)
        prev, last = last, torch.linalg.vector_norm(g, dim=-1)
        theta = theta - b * g
    return ~(last < prev)  # NaN (overflow) counts as diverged


def bisect_beta_max(tasks, theta0, alpha: float, N: int, lo: float, hi: float) -> tuple[float, float]:
    """(beta_lo, beta_hi) bracketing beta_max: a geometric grid on [lo, hi], then linear grids zooming into the
    bracket, one stage per entry of KS. Only "diverges" is a proof, so a later (longer) stage may find that the
    bracket's lower end diverges after all: the grid then moves down by widening steps until its first point
    converges. Raises if ``lo`` itself diverges."""
    import torch

    betas = torch.logspace(math.log10(lo), math.log10(hi), GRID + 8, dtype=torch.float64)
    for stage, K in enumerate(KS):
        while True:
            div = diverges(tasks, theta0, alpha, N, betas, K)
            if not bool(div.any()):
                return float(betas[-1]), math.inf
            i = int(torch.nonzero(div)[0])
            if i > 0:
                break
            if stage == 0 or float(betas[0]) <= lo:
                raise RuntimeError(f"beta = {float(betas[0]):g} already diverges at alpha = {alpha:g}, N = {N}; "
                                   "lower the start of the bisection grid")
            top, width = float(betas[0]), float(betas[-1] - betas[0])
            betas = torch.linspace(max(lo, top - 4 * width), top, GRID, dtype=torch.float64)
        b_lo, b_hi = float(betas[i - 1]), float(betas[i])
        betas = torch.linspace(b_lo, b_hi, GRID, dtype=torch.float64)
    return b_lo, b_hi


def solver_grows(family, alpha: float, beta: float, N: int, B: int, K: int, seed: int) -> bool:
    """The library's MAML solver (second-order engine, full batch: deterministic meta-GD): did ||grad|| grow?"""
    from convtheory.solvers import SOLVERS, Budget, Sampling, run

    solver = SOLVERS["maml"](alpha=alpha, beta=beta, N=N, sampling=Sampling(mode="finite-sum", B=B))
    trace = run(solver, family, Budget(iterations=K), seed=seed, eval_every=K, eval_tasks=4)
    last = float(trace["grad_norm"].iloc[-1])
    return bool(trace["diverged"].any() or not math.isfinite(last) or last > float(trace["grad_norm"].iloc[0]))


def run(params: dict, seed: int) -> pd.DataFrame:
    """One (alpha, N): beta_max bracketed by meta-GD bisection, next to 2/L_meta (exact) and the shared bound.

    Runs on one torch thread (restored after): thousands of tiny vmapped steps, where a second intra-op thread only
    adds synchronisation (measured 25x more CPU time on a loaded 2-core machine under the serial executor)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(params, seed)
    finally:
        torch.set_num_threads(before)


def _run(params: dict, seed: int) -> pd.DataFrame:
    from convtheory.solvers import Sampling
    from convtheory.solvers.sources import MetaSource, subseeds
    from convtheory.theory.quadratic import (beta_max, beta_max_shared_bound, meta_smoothness,
                                             meta_smoothness_interval)

    fam = LogSpectrumTasks(d=int(params["d"]), mu=float(params["mu"]), L=float(params["L"]))
    N, B = int(params["N"]), int(params["B"])
    alpha = float(params["alpha_L"]) / fam.L
    source_seed, init_seed, _ = subseeds(seed, 3)  # as solvers.run derives them: the solver sees this pool
    src = MetaSource(fam, Sampling(mode="finite-sum", B=B), source_seed, 4)
    pool, theta0 = src.pool, src.init_params(init_seed)
    A, C = pool.exact["A"].numpy(), pool.exact["C"].numpy()
    L_meta = meta_smoothness(alpha, N, A, C)
    exact = beta_max(L_meta)
    lo, hi = bisect_beta_max(pool, theta0, alpha, N, 0.1 / fam.L, 1e7 / fam.L)
    check = N <= int(params["solver_N_max"])
    below = solver_grows(fam, alpha, 0.9 * lo, N, B, SOLVER_STEPS, seed) if check else None
    above = solver_grows(fam, alpha, 1.1 * hi, N, B, SOLVER_STEPS, seed) if check else None
    shared_ok = params["alpha_L"] <= 1.0  # the bound needs the spectrum inside [0, 1/alpha]
    return pd.DataFrame([{
        "alpha": alpha, "N": N, "L_meta": L_meta, "beta_exact": exact, "beta_lo": lo, "beta_hi": hi,
        "rel_width": (hi - lo) / exact, "rel_err": hi / exact - 1.0,
        "beta_bound": beta_max_shared_bound(alpha, N) if shared_ok else math.nan,
        "beta_continuous": beta_max(meta_smoothness_interval(alpha, N, fam.mu, fam.L)),
        "solver_checked": check, "solver_grows_below": below, "solver_grows_above": above,
    }])


run.version = version


def specs(profile: str) -> list:
    if profile == "test":
        alphas, Ns, seeds, n_solver = [0.25, 1.0], [1, 4, 16], (0,), 1
    elif profile == "quick":
        alphas, Ns, seeds, n_solver = [0.1, 0.3, 1.0], [1, 2, 4, 8, 16, 32, 64], (0, 1), 4
    else:
        alphas, Ns, seeds, n_solver = [0.1, 0.3, 1.0], [1, 2, 4, 8, 16, 32, 64, 128, 256], tuple(range(5)), 16
    return grid("beta_max", FN, {"alpha_L": alphas, "N": Ns}, seeds=seeds,
                fixed={"d": 24, "mu": 1e-3, "L": 1.0, "B": 2, "solver_N_max": n_solver})


def slope(N, beta, N_min: float) -> float:
    """Least-squares log-log slope of beta against N over N >= N_min (NaN with fewer than two distinct N)."""
    N, beta = np.asarray(N, float), np.asarray(beta, float)
    keep = (N >= N_min) & np.isfinite(beta) & (beta > 0)
    if len(np.unique(N[keep])) < 2:
        return math.nan
    return float(np.polyfit(np.log(N[keep]), np.log(beta[keep]), 1)[0])


def large_N(table: pd.DataFrame) -> float:
    """Where "large N" starts for the slope: the upper half of the N grid (at least N = 4)."""
    Ns = sorted(table["N"].unique())
    return float(max(4, Ns[len(Ns) // 2])) if len(Ns) > 2 else float(Ns[0])


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    n0 = large_N(table)
    for (alpha, g), col in zip(table.groupby("alpha"), plt.cm.viridis(np.linspace(0, 0.8, table["alpha"].nunique()))):
        s = g.groupby("N")
        ex = s["beta_exact"].median()
        ax.plot(ex.index, ex.values, "-", color=col, lw=1.2, label=f"alpha L = {alpha:g}: 2 / L_meta (exact)")
        hi = s["beta_hi"].max()
        ax.plot(hi.index, hi.values, "o", mfc="none", color=col, ms=8,
                label=f"measured (bisection; slope N >= {n0:g}: {slope(g['N'], g['beta_hi'], n0):.3f})")
        if g["beta_bound"].notna().any():
            b = s["beta_bound"].first()
            ax.plot(b.index, b.values, "--", color=col, lw=1,
                    label="2 alpha (2N+1) ((2N+1)/2N)^(2N): lower bound (slope -> 1)")
    ax.set(xscale="log", yscale="log", xlabel="inner steps N", ylabel="largest stable meta step beta_max",
           title="beta_max grows roughly linearly in N (shared curvature)")
    ax.legend(fontsize=6.5)
    ax = axes[1]
    for alpha, g in table.groupby("alpha"):
        s = g.groupby("N")
        ax.plot(s["rel_err"].max().index, np.maximum(s["rel_err"].max().values, 1e-16), "o-",
                label=f"alpha L = {alpha:g}: beta_hi / (2/L_meta) - 1")
        lo_err = (g["beta_lo"] / g["beta_exact"] - 1).groupby(g["N"]).min()
        ax.plot(lo_err.index, np.maximum(-lo_err.values, 1e-16), "x:", label=f"alpha L = {alpha:g}: 1 - beta_lo / "
                "(2/L_meta)")
    ax.axhline(TOL, color="k", ls="--", lw=1, label=f"bracket tolerance {TOL:g}")
    ax.set(xscale="log", yscale="log", xlabel="inner steps N", ylabel="relative distance to 2 / L_meta",
           title="the bracket [beta_lo, beta_hi] contains 2 / L_meta")
    ax.legend(fontsize=6.5)
    fig.suptitle("Largest stable meta step of N-step MAML: meta-GD bisection against 2 / L_meta(alpha, N) "
                 "(THEORY.md §1.2, §14 item 3)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per alpha: the bracket contains 2/L_meta and is narrower than TOL; beta_max is at least the shared bound;
    the MAML solver converges at 0.9 beta_lo and diverges at 1.1 beta_hi; the log-log slope at large N."""
    rows = []
    n0 = large_N(table)
    for alpha, g in table.groupby("alpha"):
        slack = 1e-9 * g["beta_exact"]
        contains = bool(((g["beta_lo"] <= g["beta_exact"] + slack) & (g["beta_exact"] <= g["beta_hi"] + slack)).all())
        narrow = bool((g["rel_width"] <= TOL).all())
        bound = g.dropna(subset=["beta_bound"])
        above_bound = bool((bound["beta_exact"] >= bound["beta_bound"] * (1 - 1e-12)).all())
        sv = g[g["solver_checked"].astype(bool)]
        solver_ok = bool(((sv["solver_grows_below"] == False) & (sv["solver_grows_above"] == True)).all())  # noqa: E712
        rows.append({"alpha": alpha, "n_points": len(g), "max_rel_err": float(g["rel_err"].abs().max()),
                     "max_rel_width": float(g["rel_width"].max()), "bracket_contains_exact": contains,
                     "above_shared_bound": above_bound, "solver_runs": len(sv), "solver_agrees": solver_ok,
                     "slope_large_N": slope(g["N"], g["beta_hi"], n0),
                     "slope_bound_large_N": slope(g["N"], g["beta_bound"], n0),
                     "holds": contains and narrow and above_bound and solver_ok})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("beta_max", "The largest stable meta step of N-step MAML equals 2/L_meta(alpha, N) and, with "
                        "shared curvature, is at least 2 alpha (2N+1) ((2N+1)/2N)^(2N): it grows roughly linearly "
                        "in N (THEORY.md §1.2, §14 item 3)", specs, plot, summarize, order=13)
