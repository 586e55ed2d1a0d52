"""Figure 3: multi-step MAML with the theory's inner step alpha = 1/(8 N L): iterations and oracle calls to reach a
gradient-norm target versus N.

Prediction (THEORY.md §5 and §14 item 6; Ji, Yang, Liang, JMLR 2022). With :math:`\\alpha=1/(cNL)` the inner-loop
Jacobian growth is :math:`(1+\\alpha L)^{2N}\\le e^{2/c}` for every N, so the meta smoothness stays within a constant
factor of its N = 1 value and the number of outer iterations to reach a target is (roughly) flat in N, while each
iteration costs B(N+1) gradients and BN Hessian-vector products: total oracle calls grow linearly in N. The 1/N
scaling is the paper's; the constant c = 8 is recalled, not verified ([uncertain]; ``theory.maml.ji_safe_inner_step``).
The outer step is the guideline's :math:`\\beta=1/((1+\\alpha L)^{2N}L)` (``theory.guidelines.maml_guideline``).

Runs: the library's MAML solver, full batch (deterministic meta-GD), on the convex shared-curvature family and on
the nonconvex family with a negative inner eigenvalue (``experiments.maml_alpha``). On these quadratic families the
iteration count is also predicted exactly, :math:`\\min\\{k:\\|(I-\\beta H_N)^kg_0\\|\\le\\epsilon\\|g_0\\|\\}`; the
black crosses mark it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment
from .maml_alpha import meta_gd

version = 1
FN = "experiments.maml_steps:run"
C_JI = 8.0  # Ji et al.'s constant: recalled, uncertain (THEORY.md §5)


def _exact_iterations(pool, theta0, alpha, beta, N, target, kmax=10**7):
    """Exact first k with ||(I - beta H)^k g0|| <= target ||g0|| on the quadratic meta-objective (bisection)."""
    from convtheory.problems.quadratic import exact_meta_gradient, meta_hessian

    H = meta_hessian(pool, alpha, N).numpy()
    g0 = exact_meta_gradient(theta0, pool, alpha, N).numpy()
    w, V = np.linalg.eigh(H)
    c2 = (V.T @ g0) ** 2
    r = np.abs(1 - beta * w)

    def ok(k):
        return math.sqrt(float(np.sum(c2 * r ** (2 * k)))) <= target * math.sqrt(float(np.sum(c2)))

    if not ok(kmax):
        return math.inf
    lo, hi = 0, 1
    while not ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def run(params: dict, seed: int) -> pd.DataFrame:
    """One (family, N): iterations and oracle calls to ||grad|| <= target ||grad_0|| at alpha = 1/(8 N L)."""
    from convtheory.solvers import Sampling
    from convtheory.solvers.sources import MetaSource, subseeds
    from convtheory.theory.guidelines import maml_guideline
    from convtheory.theory.maml import inner_growth_factor

    from .maml_alpha import make_family

    fam, N, B, target = params["family"], int(params["N"]), int(params.get("B", 8)), float(params["target"])
    family = make_family(fam)
    source_seed, init_seed, _ = subseeds(seed, 3)
    src = MetaSource(family, Sampling(mode="finite-sum", B=B), source_seed, 4)
    pool, theta0 = src.pool, src.init_params(init_seed)
    L = float(pool.constants.L)
    gl = maml_guideline(L, N, c=C_JI)
    alpha, beta = gl.alpha, gl.beta
    k_pred = _exact_iterations(pool, theta0, alpha, beta, N, target)
    trace, _, _ = meta_gd(fam, alpha, beta, N, B, int(k_pred) + 2, seed, eval_every=1)
    ratio = trace["grad_norm"] / trace["grad_norm"].iloc[0]
    hit = trace[ratio <= target]
    k = int(hit["iteration"].iloc[0]) if len(hit) else -1
    row = trace[trace["iteration"] == k].iloc[0] if k >= 0 else trace.iloc[-1]
    return pd.DataFrame([{
        "family": fam, "N": N, "alpha": alpha, "beta": beta, "L": L, "growth": inner_growth_factor(alpha, N, L),
        "iterations": k, "iterations_predicted": k_pred, "oracle_grad": int(row["oracle_grad"]),
        "oracle_hvp": int(row["oracle_hvp"]), "oracle_calls": int(row["oracle_grad"] + row["oracle_hvp"]),
        "calls_per_iteration_predicted": B * (2 * N + 1),
    }])


def specs(profile: str) -> list:
    if profile == "test":
        Ns, seeds, target = [1, 4, 16], (0,), 1e-3
    elif profile == "quick":
        Ns, seeds, target = [1, 2, 4, 8, 16, 32], (0, 1, 2), 1e-4
    else:
        Ns, seeds, target = [1, 2, 4, 8, 16, 32, 64, 128], tuple(range(10)), 1e-6
    out = []
    for fam in ("convex", "nonconvex"):
        out += grid("maml_steps", FN, {"N": Ns}, seeds=seeds, fixed={"family": fam, "target": target, "B": 8})
    return out


def _slope(x, y):
    from convtheory.analysis import fit_power

    return fit_power(np.asarray(x, float), np.asarray(y, float))


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    for fam, mk in (("convex", "s"), ("nonconvex", "o")):
        sub = table[table["family"] == fam]
        for ax, col, pcol, lab in ((axes[0], "iterations", "iterations_predicted", "iterations"),
                                   (axes[1], "oracle_calls", None, "oracle calls")):
            g = sub.groupby("N")[col]
            mid, lo, hi = g.median(), g.min(), g.max()
            fit = _slope(sub["N"], sub[col])
            line, = ax.plot(mid.index, mid.values, mk + "-",
                            label=f"{fam}: measured (median; fitted slope {fit.rate:+.2f})")
            ax.fill_between(mid.index, lo.values, hi.values, color=line.get_color(), alpha=0.2)
            if pcol:
                pr = sub.groupby("N")[pcol].median()
                ax.plot(pr.index, pr.values, "k+", ms=10)
            else:
                Nn = np.array(mid.index, dtype=float)
                k1 = sub.groupby("N")["iterations"].median().to_numpy(float)
                ax.plot(Nn, k1 * 8 * (2 * Nn + 1), "--", color=line.get_color(), lw=1,
                        label=f"{fam}: iterations x B(2N+1) (accounting)")
    axes[0].plot([], [], "k+", ms=10, label="exact prediction min{k: ||(I-beta H)^k g0|| <= eps ||g0||}")
    Nmax = float(table["N"].max())
    axes[1].plot([1, Nmax], [table["oracle_calls"].min(), table["oracle_calls"].min() * Nmax], "k:", lw=1,
                 label="slope 1 (linear in N)")
    axes[0].set(xscale="log", yscale="log", xlabel="inner steps N", ylabel="outer iterations to reach target",
                title="iterations: flat in N at alpha = 1/(8NL) (predicted slope 0)")
    axes[1].set(xscale="log", yscale="log", xlabel="inner steps N", ylabel="gradients + Hessian-vector products",
                title="oracle calls = K B(2N+1): linear in N (slope -> 1)")
    for ax in axes:
        ax.legend(fontsize=6.5)
    eps = table["target"].iloc[0] if "target" in table else float("nan")
    fig.suptitle(f"Multi-step MAML at Ji et al.'s alpha = 1/(8 N L) (constant 8 uncertain), beta = 1/((1+alpha L)^(2N) L):"
                 f" cost to ||grad|| <= {eps:g} ||grad_0|| (min-max over seeds)", fontsize=9.5)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per family: fitted log-log slopes of iterations (predicted 0; holds if |slope| <= 0.15) and of oracle calls
    (predicted 1 asymptotically; holds if the slope over N >= 4 is in [0.85, 1.15]); the measured iteration counts
    equal the exact quadratic prediction; calls per iteration equal B(2N+1); growth factor <= e^(2/8)."""
    rows = []
    for fam, g in table.groupby("family"):
        it = _slope(g["N"], g["iterations"])
        big = g[g["N"] >= 4]
        calls = _slope(big["N"], big["oracle_calls"])
        calls_all = _slope(g["N"], g["oracle_calls"])
        exact_ok = bool((g["iterations"] == g["iterations_predicted"]).all())
        per_it = bool((g["oracle_calls"] == g["iterations"] * g["calls_per_iteration_predicted"]).all())
        growth_ok = bool((g["growth"] <= math.exp(2 / C_JI) + 1e-12).all())
        rows.append({"family": fam, "iterations_slope": it.rate, "iterations_slope_lo": it.ci_low,
                     "iterations_slope_hi": it.ci_high, "max_over_min_iterations":
                     float(g.groupby("N")["iterations"].median().max() / g.groupby("N")["iterations"].median().min()),
                     "calls_slope_N_ge_4": calls.rate, "calls_slope_all": calls_all.rate,
                     "iterations_equal_exact": exact_ok, "calls_per_iteration_equal_B_2N_plus_1": per_it,
                     "holds": bool(abs(it.rate) <= 0.15 and 0.85 <= calls.rate <= 1.15 and exact_ok and per_it
                                   and growth_ok)})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("maml_steps", "With alpha = 1/(8 N L) (Ji, Yang, Liang 2022; constant 8 uncertain) the outer "
                        "iterations to a gradient target are flat in N and the oracle calls grow linearly in N "
                        "(THEORY.md §5, §14 item 6)", specs, plot, summarize, order=3)
