"""Figure 14: stochastic bilevel optimisers (stocBiO, MRBO, VRBO, ESJ-S) on a noisy quadratic bilevel problem and on
data hyper-cleaning: the exact :math:`\\|\\nabla\\Phi(x_k)\\|` against the per-sample oracle evaluations spent.

Claims (THEORY.md §10-11; Yang, Ji, Liang, NeurIPS 2021, Theorems 1-2): on the quadratic problem (outer step
:math:`1/L_\\Phi`, inner and Neumann step 1/L, exact constants) every method drives :math:`\\|\\nabla\\Phi\\|` (median
of the last three recorded rows) below a tenth of its initial value within the common sample budget (the verdict,
``holds``; a measured claim about these settings, not a theorem; hyper-cleaning, with hand-set steps, is
reported); and the paper's order claim that MRBO and VRBO need fewer samples than stocBiO to reach a given accuracy
(:math:`\\tilde O(\\epsilon^{-1.5})` vs :math:`\\tilde O(\\epsilon^{-2})` for
:math:`\\mathbb E\\|\\nabla\\Phi\\|^2\\le\\epsilon`) is an asymptotic upper bound: at these sizes it is *reported*
(column ``reproduced``), never forced into the verdict. Samples are exact
(:mod:`convtheory.theory.stochastic_bilevel`): a minibatch of n samples evaluated at one point counts n, so the
recursive estimators, which evaluate each batch at two points, pay for both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.stochastic_bilevel:run"
METHODS = ("stocbio", "mrbo", "vrbo", "esj-s")
LABELS = {"stocbio": "stocBiO", "mrbo": "MRBO (STORM momentum)", "vrbo": "VRBO (SARAH, large batch every q)",
          "esj-s": "ESJ-S (Hessian-free)"}
COLORS = {"stocbio": "C2", "mrbo": "C0", "vrbo": "C1", "esj-s": "C3"}
PROBLEMS = {"quadratic": "noisy quadratic bilevel (§1.3)", "hypercleaning": "data hyper-cleaning (minibatches)"}
TARGET = 0.1  # the verdict level: final gradient norm (median of the last 3 rows) below TARGET x initial
VERDICT = ("quadratic",)  # step sizes from exact constants (beta = 1/L_Phi); hyper-cleaning's are hand-set: reported


def _problem(name: str, seed: int):
    """The problem instance (built from ``seed``) with its sample oracles, and the solver settings for it."""
    from convtheory.problems import HyperCleaning
    from convtheory.problems.bilevel_quadratic import QuadraticBilevel
    from convtheory.solvers import quadratic_noise

    if name == "quadratic":
        prob = QuadraticBilevel(p=4, q=8, mu=0.5, L=1.0, gamma=0.1).build(seed)
        noisy = quadratic_noise(prob, sigma_H=0.1, sigma_g=0.2, sigma_J=0.0, sigma_f=0.2)
        beta = 1.0 / prob.constants.extra["L_Phi"]
        return noisy, prob, {"alpha": 1.0, "beta": beta, "beta_esj": 0.5 * beta}
    prob = HyperCleaning(n_train=100, n_val=100, n_test=200, corruption=0.3, reg=0.1).build(seed)
    return prob, prob, {"alpha": 1.0 / prob.constants.L, "beta": 1000.0, "beta_esj": 300.0}


def solver_for(method: str, params: dict, steps: dict):
    """The solver config of ``method``: inner step alpha, outer step beta (ESJ-S: beta_esj), Neumann length Q,
    minibatch ``batch`` for every oracle (VRBO: S2 = batch / 2, S1 = ``big`` every q steps)."""
    from convtheory.solvers import SOLVERS

    B, Q, N = int(params["batch"]), int(params["Q"]), int(params["N"])
    a, b = steps["alpha"], steps["beta"]
    kw = {"stocbio": dict(alpha=a, beta=b, N=N, Q=Q, S=B, D=B, D_H=B),
          "mrbo": dict(alpha=a, beta=b, Q=Q, S=B, D=B, D_H=B, t=1.0, m=2.0, c1=1.0, c2=1.0),
          "vrbo": dict(alpha=a, beta=b, N=N, Q=Q, q=int(params["q"]), S1=int(params["big"]), S2=max(B // 2, 1)),
          "esj-s": dict(alpha=a, beta=steps["beta_esj"], N=N, Q=int(params["Q_esj"]), S=B, D=B)}[method]
    return SOLVERS[method](**kw)


def run(params: dict, seed: int) -> pd.DataFrame:
    """One solver on one problem (built from ``seed``) until it has spent ``sample_budget`` per-sample evaluations: its
    Trace with ``samples`` (cumulative, exact) and ``calls`` (minibatch oracle calls) columns."""
    from convtheory.solvers import Budget, samples_per_step
    from convtheory.solvers import run as run_solver

    source, prob, steps = _problem(params["problem_name"], seed)
    solver = solver_for(params["method"], params, steps)
    budget = int(params["sample_budget"])
    cum = [0]
    while cum[-1] + samples_per_step(solver, len(cum) - 1) <= budget:
        cum.append(cum[-1] + samples_per_step(solver, len(cum) - 1))
    K = len(cum) - 1
    every = max(1, K // int(params.get("rows", 20)))
    trace = run_solver(solver, source, Budget(iterations=K), seed=seed, eval_every=every)
    trace["samples"] = [cum[int(k)] for k in trace["iteration"]]
    trace["calls"] = trace["oracle_grad"] + trace["oracle_hvp"] + trace["oracle_jvp"]
    trace["problem_name"] = params["problem_name"]
    trace["kappa"] = prob.constants.L / prob.constants.mu
    return trace


run.version = version  # the sweep cache keys on the run function's own attribute


def specs(profile: str) -> list:
    fixed = {"Q": 5, "N": 2, "q": 5, "Q_esj": 4, "batch": 64, "big": 512, "rows": 20}
    if profile == "test":
        return grid("stochastic_bilevel", FN, {"problem_name": ["quadratic"], "method": list(METHODS)}, seeds=(0,),
                    fixed={**fixed, "sample_budget": 24_000, "rows": 6})
    quick = profile == "quick"
    seeds = (0, 1) if quick else tuple(range(5))
    out = grid("stochastic_bilevel", FN, {"problem_name": ["quadratic"], "method": list(METHODS)}, seeds=seeds,
               fixed={**fixed, "sample_budget": 40_000 if quick else 400_000})
    # hyper-cleaning: every recorded row costs an exact (Newton) hypergradient, so few rows
    out += grid("stochastic_bilevel", FN, {"problem_name": ["hypercleaning"], "method": list(METHODS)},
                seeds=(0,) if quick else (0, 1), fixed={**fixed, "batch": 32, "big": 200, "rows": 1 if quick else 10,
                                                        "sample_budget": 20_000 if quick else 200_000})
    return out


def samples_to(tr: pd.DataFrame, target: float) -> float:
    """Samples at the first recorded iterate with gradient norm <= target (NaN if never)."""
    hit = tr[tr["grad_norm"] <= target * (1 + 1e-12)]
    return float(hit["samples"].iloc[0]) if len(hit) else float("nan")


def _targets(sub: pd.DataFrame) -> dict:
    """Per seed: TARGET x the initial exact gradient norm (the same start for every method)."""
    return {seed: TARGET * float(t[t["iteration"] == 0]["grad_norm"].iloc[0]) for seed, t in sub.groupby("seed")}


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    probs = [p for p in PROBLEMS if p in set(table["problem_name"])]
    fig, axes = plt.subplots(1, len(probs), figsize=(6.5 * len(probs), 4.4), squeeze=False)
    for i, pname in enumerate(probs):
        ax = axes[0, i]
        sub = table[table["problem_name"] == pname]
        targets = _targets(sub)
        for m in METHODS:
            s = sub[sub["method"] == m]
            if s.empty:
                continue
            g = s.groupby("iteration")
            x = g["samples"].median()
            ax.plot(x.values, g["grad_norm"].median().values, marker=".", color=COLORS[m], label=LABELS[m])
            ax.fill_between(x.values, g["grad_norm"].min().values, g["grad_norm"].max().values, color=COLORS[m],
                            alpha=0.18)
            hits = [samples_to(t, targets[seed]) for seed, t in s.groupby("seed")]
            if np.isfinite(hits).all():
                ax.axvline(float(np.median(hits)), color=COLORS[m], ls=":", lw=1)
        ax.axhline(float(np.median(list(targets.values()))), color="k", ls="--", lw=1,
                   label=f"target: {TARGET:g} x initial" + (" (verdict level)" if pname in VERDICT else " (reported)"))
        ax.set(xlabel="per-sample oracle evaluations (grad + HVP + JVP)", ylabel="exact ||∇Φ(x_k)||", yscale="log",
               title=f"{PROBLEMS[pname]} (kappa = {float(sub['kappa'].median()):.0f})")
        ax.legend(fontsize=7)
    fig.suptitle("Stochastic bilevel optimisers: exact hypergradient norm vs samples (median, min-max over seeds);\n"
                 "dotted: median samples to the target. Theory (upper bounds): MRBO/VRBO O(eps^-1.5) vs stocBiO "
                 "O(eps^-2) samples", fontsize=9)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (problem, method): final (median of the last 3 rows) / initial gradient norm (worst seed; on the quadratic
    problem holds if < TARGET on every seed; hyper-cleaning reported) and the
    median samples to TARGET x initial; per problem and recursive method: samples relative to stocBiO, with
    ``reproduced`` = the paper's "fewer samples than stocBiO" on every seed (reported, no verdict)."""
    rows, need = [], {}
    for (pname, m), s in table.groupby(["problem_name", "method"]):
        targets = _targets(table[table["problem_name"] == pname])
        ratios, hits = [], []
        for seed, tr in s.sort_values("iteration").groupby("seed"):
            g0, gK = tr["grad_norm"].iloc[0], float(tr[tr["iteration"] > 0]["grad_norm"].iloc[-3:].median())
            ratios.append(gK / g0 if not tr["diverged"].any() else np.inf)
            hits.append(samples_to(tr, targets[seed]))
        need[(pname, m)] = np.array(hits)
        rows.append({"problem": pname, "method": m, "check": f"final/initial grad norm < {TARGET:g}",
                     "value": float(np.max(ratios)), "samples_to_target": float(np.median(hits)),
                     "budget": float(s["samples"].max()), "reproduced": None,
                     "holds": bool(np.max(ratios) < TARGET) if pname in VERDICT else None})
    for pname in sorted(set(table["problem_name"])):
        base = need.get((pname, "stocbio"))
        for m in ("mrbo", "vrbo"):
            if base is None or (pname, m) not in need:
                continue
            r = need[(pname, m)] / base
            rows.append({"problem": pname, "method": f"{m} vs stocbio",
                         "check": "samples to target: fewer than stocBiO (paper, asymptotic; reported)",
                         "value": float(np.nanmax(r)) if np.isfinite(r).any() else np.nan,
                         "samples_to_target": float(np.median(need[(pname, m)])),
                         "budget": np.nan, "reproduced": bool(np.all(r < 1)), "holds": None})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("stochastic_bilevel", "stocBiO, MRBO, VRBO and ESJ-S all drive the exact hypergradient "
                        "below a tenth of its initial value within a common sample budget; whether MRBO/VRBO need "
                        "fewer samples than stocBiO (Yang, Ji, Liang 2021, Theorems 1-2; THEORY.md §10-11) is "
                        "reported", specs, plot, summarize, order=14)
