"""Predictions 17-22: hypergradient errors of ITD and AID on bilevel problems (THEORY.md §9-10, §14)."""

from __future__ import annotations

import pandas as pd

from convtheory.sweep import grid
from convtheory.theory.predictions import Outcome, Prediction

version = 1
FN19 = "experiments.predictions.hypergradients:run_identities"


def run_identities(params: dict, seed: int) -> pd.DataFrame:
    """Item 19 on one random quadratic bilevel problem: the library's aid-fp (eta = alpha, Q = N) against its itd,
    and its aid-neumann (terms 0..Q) against aid-fp with Q + 1 steps, all at the same (x0, y0)."""
    import torch

    from convtheory.hypergrad import hypergradient
    from convtheory.problems import QuadraticBilevel

    fam = QuadraticBilevel(p=int(params["p"]), q=int(params["q"]), mu=float(params["mu"]), L=float(params["L"]))
    prob = fam.build(seed)
    N, alpha = int(params["N"]), float(params["alpha_L"]) / fam.L

    def hg(method, steps, Q):
        out, _ = hypergradient(prob.f, prob.g, prob.x0, prob.y0, method=method, inner_steps=steps, inner_lr=alpha,
                               solver_steps=Q, solver_lr=alpha)
        return out

    itd, fp = hg("itd", N, N), hg("aid-fp", N, N)
    neu, fp1 = hg("aid-neumann", N, N), hg("aid-fp", N, N + 1)
    scale = float(torch.linalg.vector_norm(itd))
    return pd.DataFrame([{
        "N": N, "alpha": alpha, "hypergrad_norm": scale,
        "fp_vs_itd": float(torch.linalg.vector_norm(fp - itd)) / scale,
        "neumann_vs_fp_q1": float(torch.linalg.vector_norm(neu - fp1)) / float(torch.linalg.vector_norm(fp1)),
    }])


run_identities.version = version


def specs19(profile: str) -> list:
    Ns = {"test": [1, 5], "quick": [1, 2, 5, 10, 20, 50], "full": [1, 2, 5, 10, 20, 50, 100, 200]}[profile]
    seeds = {"test": (0,), "quick": (0, 1, 2), "full": tuple(range(10))}[profile]
    return grid("prediction_19", FN19, {"N": Ns, "alpha_L": [0.5, 1.0]}, seeds=seeds,
                fixed={"p": 5, "q": 10, "mu": 0.1, "L": 1.0})


TOL19 = 1e-12


def judge19(table: pd.DataFrame, profile: str) -> Outcome:
    both = pd.concat([table["fp_vs_itd"], table["neumann_vs_fp_q1"]]).to_numpy()
    worst = float(both.max())
    ok = worst <= TOL19
    which = "fp_vs_itd" if table["fp_vs_itd"].max() >= table["neumann_vs_fp_q1"].max() else "neumann_vs_fp_q1"
    row = table.loc[table[which].idxmax()]
    return Outcome(
        "holds" if ok else "fails",
        measured=f"max rel. diff {worst:.2e} over {len(table)} problems (N up to {int(table['N'].max())})",
        predicted="0 (identity; round-off <= 1e-12)",
        worst_tightness=worst / TOL19, median_tightness=float(pd.Series(both).median()) / TOL19,
        detail=(f"largest: {which} = {row[which]:.2e} at N = {int(row['N'])}, alpha = {row['alpha']:g}, "
                f"seed {int(row['seed'])}"))


PREDICTIONS = [
    Prediction(19, "AID-FP (eta = alpha, Q = N) equals ITD, Neumann with Q terms equals FP with Q + 1 steps, on "
               "quadratic g", experiment="prediction_19", theory="convtheory.problems.bilevel_quadratic:aid_fp_exact",
               source="THEORY.md §14 item 19 [derived]; hypertorch code comment", constants="exact",
               tolerance=TOL19, specs=specs19, judge=judge19),
]
