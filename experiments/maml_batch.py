"""Figure 2: the error floor of stochastic multi-step MAML (resampling regime) versus the task batch B and the
per-task sample sizes S (support) and D (query).

Prediction (THEORY.md §1.5 and §14 items 7, 28 [derived]). In the resampling regime every step draws B fresh tasks
and MAML moves :math:`\\theta\\leftarrow\\theta-\\beta\\hat G_B(\\theta)`. On quadratic tasks each task's meta-gradient
is affine, :math:`g_i(\\theta)=H_i\\theta-r_i` with :math:`H_i=P_i^NC_iP_i^N`, so with :math:`H=\\mathbb EH_i`,
:math:`\\theta^*=H^{-1}\\mathbb Er_i` and :math:`\\Sigma^*=\\mathrm{Cov}\\,g_i(\\theta^*)` the stationary covariance of
:math:`\\theta-\\theta^*` solves :math:`C=(I-\\beta H)C(I-\\beta H)+\\tfrac{\\beta^2}{B}(\\Sigma^*+\\mathbb E[(H_i-H)C(H_i-H)])`
and the floor is :math:`\\lim_k\\mathbb E\\|\\nabla\\mathcal L(\\theta_k)\\|^2=\\mathrm{tr}(HCH)`. Without the
multiplicative term this is ``theory.quadratic.sgd_noise_floor_lyapunov`` (exactly :math:`\\propto1/B`: log-log
slope -1); the multiplicative term (random task curvature) is added here and makes the exact floor slightly
steeper than 1/B at small B. Within a task, the finite S and D make :math:`\\Sigma^*` (and H) depend on them: the
floor falls as S and D grow, toward the task-to-task part (LinearRegressionTasks).

Moments (H, theta*, Sigma*, the multiplicative term) are Monte-Carlo averages over ``ref_tasks`` tasks (2e4 test,
6e4 quick, 2e5 full) from a reference seed (relative error of order 1%); the measured floor is the time average of :math:`\\|H\\theta_k-\\mathbb Er_i\\|^2` after a burn-in,
with seed-to-seed spread. The step direction is the exact MAML meta-gradient of the sampled batch
(``problems.quadratic.exact_meta_gradient``, equal to the second-order engine's to round-off, as the package's
tests check) on B fresh tasks per step; the engine itself is not called, for speed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.maml_batch:run"
REF_TASKS = 100_000
REF_SEED = 987_654


def _family(params: dict):
    from convtheory.problems import LinearRegressionTasks, QuadraticTasks

    if params["family"] == "quadratic":
        return QuadraticTasks(d=4, mu=0.2, L=1.0, task_spread=1.0, query="independent")
    return LinearRegressionTasks(d=4, S=int(params["S"]), D=int(params["D"]), mu=0.2, L=1.0, sigma2=0.5)


def _affine_parts(tasks, alpha: float, N: int):
    """Per-task (H_i, r_i) with g_i(theta) = H_i theta - r_i (exact, THEORY.md §1.2)."""
    import torch

    from convtheory.problems.quadratic import maml_adapted

    A, c, C, e = (tasks.exact[k] for k in ("A", "c", "C", "e"))
    d = A.shape[-1]
    PN = torch.linalg.matrix_power(torch.eye(d, dtype=A.dtype) - alpha * A, N)
    s = maml_adapted(torch.zeros(d, dtype=A.dtype), A, c, alpha, N)
    H = PN.transpose(-1, -2) @ C @ PN
    r = (PN.transpose(-1, -2) @ (e - (C @ s.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1)
    return H.numpy(), r.numpy()


@functools.lru_cache(maxsize=64)
def reference(key: tuple, alpha: float, N: int, ref_tasks: int = REF_TASKS):
    """Monte-Carlo moments over ref_tasks tasks: H, r, theta*, Sigma*, and the deviations H_i - H."""
    params = dict(key)
    fam = _family(params)
    Hs, rs = [], []
    for j in range(max(1, ref_tasks // 20_000)):
        Hi, ri = _affine_parts(fam.sample(min(20_000, ref_tasks), REF_SEED + j), alpha, N)
        Hs.append(Hi)
        rs.append(ri)
    Hi, ri = np.concatenate(Hs), np.concatenate(rs)
    H, r = Hi.mean(0), ri.mean(0)
    H = 0.5 * (H + H.T)
    theta = np.linalg.solve(H, r)
    n = Hi @ theta - ri
    Sigma = n.T @ n / len(n)
    Dev = Hi - H
    T = np.einsum("nij,nkl->ijkl", Dev, Dev, optimize=True) / len(Dev)  # E[(H_i-H)_ij (H_i-H)_kl]
    return H, r, theta, 0.5 * (Sigma + Sigma.T), T


def predicted_floor(ref, beta: float, B: int) -> tuple[float, float]:
    """(exact floor with the multiplicative term, additive-noise floor of theory.quadratic)."""
    import scipy.linalg

    from convtheory.theory.quadratic import sgd_noise_floor_lyapunov, sgd_stationary_covariance

    H, _, _, Sigma, T = ref
    additive = sgd_noise_floor_lyapunov(beta, H, Sigma, B)
    C = sgd_stationary_covariance(beta, H, Sigma, B)
    P = np.eye(len(H)) - beta * H
    for _ in range(200):
        mult = np.einsum("ijkl,jk->il", T, C)
        C_new = scipy.linalg.solve_discrete_lyapunov(P, beta**2 / B * (Sigma + mult))
        C_new = 0.5 * (C_new + C_new.T)
        done = np.abs(C_new - C).max() <= 1e-12 * np.abs(C_new).max()
        C = C_new
        if done:
            break
    return float(np.trace(H @ C @ H)), additive


def run(params: dict, seed: int) -> pd.DataFrame:
    """One (family, B, S, D): SGD-MAML from theta* for K steps; the time-averaged ||grad||^2 after burn-in (in blocks)
    next to the predicted floor."""
    import torch

    from convtheory.problems.base import make_generator
    from convtheory.problems.quadratic import exact_meta_gradient
    from convtheory.solvers.sources import draw_seed, subseeds, take_tasks

    alpha, N, beta = float(params["alpha"]), int(params["N"]), float(params["beta"])
    B, K = int(params["B"]), int(params["iterations"])
    key = tuple(sorted((k, params[k]) for k in ("family", "S", "D") if k in params))
    ref = reference(key, alpha, N, int(params.get("ref_tasks", REF_TASKS)))
    H, r, theta_star, _, _ = ref
    family = _family(params)
    _, _, step_seed = subseeds(seed, 3)
    # resampling: B fresh i.i.d. tasks per step, never reused. They are drawn in large chunks and sliced, which is
    # the same distribution as one family.sample(B) per step but avoids a small batched QR per step (slow in torch).
    gen = make_generator(step_seed)
    chunk = max(B, (20_000 // B) * B)
    pool, used = None, 0
    theta = torch.tensor(theta_star)
    burn = K // 5
    sq = np.empty(K - burn)
    for k in range(K):
        if pool is None or used + B > chunk:
            pool, used = family.sample(chunk, draw_seed(gen)), 0
        tasks = take_tasks(pool, torch.arange(used, used + B))
        used += B
        theta = theta - beta * exact_meta_gradient(theta, tasks, alpha, N)
        if k >= burn:
            g = H @ theta.numpy() - r
            sq[k - burn] = g @ g
    blocks = np.array_split(sq, 10)
    pred, additive = predicted_floor(ref, beta, B)
    return pd.DataFrame({"block": range(10), "floor_block": [float(b.mean()) for b in blocks],
                         "floor": float(sq.mean()), "predicted": pred, "predicted_additive": additive,
                         "trace_Sigma": float(np.trace(ref[3]))})


def specs(profile: str) -> list:
    if profile == "test":
        Bs, SDs, seeds, K, M = [1, 4, 16], [2, 16], (0,), 600, 20_000
    elif profile == "quick":
        Bs, SDs, seeds, K, M = [1, 2, 4, 8, 16, 32, 64], [2, 4, 8, 16, 32], (0, 1), 2000, 60_000
    else:
        Bs, SDs, seeds, K, M = ([1, 2, 4, 8, 16, 32, 64, 128, 256], [1, 2, 4, 8, 16, 32, 64, 128], tuple(range(5)),
                                10000, 200_000)
    q = {"family": "quadratic", "alpha": 0.3, "N": 2, "beta": 1.0, "ref_tasks": M}
    lr = {"family": "linreg", "alpha": 0.1, "N": 2, "beta": 0.5, "B": 4, "ref_tasks": M}
    out = grid("maml_batch", FN, {"B": Bs}, seeds=seeds, fixed={**q, "iterations": K, "axis": "B"})
    out += grid("maml_batch", FN, {"S": SDs}, seeds=seeds, fixed={**lr, "D": 8, "iterations": K, "axis": "S"})
    out += grid("maml_batch", FN, {"D": SDs}, seeds=seeds, fixed={**lr, "S": 8, "iterations": K, "axis": "D"})
    return out


def _points(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Per axis value: mean floor over seeds, its standard error (seed x block means), the predictions."""
    sub = table[table["axis"] == axis]
    rows = []
    for x, g in sub.groupby(axis):
        per_seed = g.groupby("seed")["floor"].first()
        se = float(g["floor_block"].std(ddof=1) / math.sqrt(len(g)))
        rows.append({"axis": axis, "x": float(x), "measured": float(per_seed.mean()), "lo": float(per_seed.min()),
                     "hi": float(per_seed.max()), "se": se, "predicted": float(g["predicted"].iloc[0]),
                     "predicted_additive": float(g["predicted_additive"].iloc[0])})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    from convtheory.analysis import fit_power

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    titles = {"B": "QuadraticTasks: floor vs task batch B\n(N = 2, alpha = 0.3, beta = 1)",
              "S": "LinearRegressionTasks: floor vs support size S\n(D = 8, B = 4, N = 2, alpha = 0.1, beta = 0.5)",
              "D": "LinearRegressionTasks: floor vs query size D\n(S = 8, B = 4, N = 2, alpha = 0.1, beta = 0.5)"}
    for ax, axis in zip(axes, ("B", "S", "D")):
        p = _points(table, axis)
        if p.empty:
            continue
        ax.plot(p["x"], p["measured"], "o", label="measured E||grad||^2 (mean over seeds)")
        ax.fill_between(p["x"], p["lo"], p["hi"], alpha=0.25, label="min-max over seeds")
        ax.plot(p["x"], p["predicted"], "k-", lw=1.2, label="exact Lyapunov floor (with multiplicative term)")
        ax.plot(p["x"], p["predicted_additive"], "k--", lw=1,
                label="additive Lyapunov floor (theory.quadratic)" + (": slope -1" if axis == "B" else ""))
        if axis == "B":
            fit = fit_power(p["x"], p["measured"])
            ax.plot([], [], " ", label=f"fitted slope {fit.rate:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
        ax.set(xscale="log", yscale="log", xlabel={"B": "tasks per step B", "S": "support samples S",
                                                    "D": "query samples D"}[axis],
               ylabel="stationary E||grad L(theta)||^2", title=titles[axis])
        ax.set_xticks(p["x"], [f"{v:g}" for v in p["x"]], minor=False)
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.legend(fontsize=7)
    fig.suptitle("SGD-MAML error floor in the resampling regime: measured against the exact stationary "
                 "floor (THEORY.md §1.5, §14 items 7, 28)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per axis: max |measured/predicted - 1|; holds if every point is within 3 standard errors + 5% (Monte-Carlo
    moments) of the exact floor; for B also the fitted log-log slope against -1 (holds if within 0.1); for S and D
    whether the floor decreases from the smallest to the largest size."""
    from convtheory.analysis import fit_power

    rows = []
    for axis in ("B", "S", "D"):
        p = _points(table, axis)
        if p.empty:
            continue
        dev = (p["measured"] - p["predicted"]).abs()
        within = bool((dev <= 3 * p["se"] + 0.05 * p["predicted"]).all())
        row = {"axis": axis, "n_points": len(p), "max_rel_dev": float((dev / p["predicted"]).max()),
               "within_3se_plus_5pct": within, "slope": math.nan, "slope_ci_low": math.nan,
               "slope_ci_high": math.nan, "slope_predicted_exact": math.nan,
               "floor_first": float(p["measured"].iloc[0]), "floor_last": float(p["measured"].iloc[-1])}
        ok = within
        if axis == "B":
            fit, fp = fit_power(p["x"], p["measured"]), fit_power(p["x"], p["predicted"])
            row.update(slope=fit.rate, slope_ci_low=fit.ci_low, slope_ci_high=fit.ci_high,
                       slope_predicted_exact=fp.rate)
            ok = ok and abs(fit.rate + 1) <= 0.1
        else:
            ok = ok and row["floor_last"] < row["floor_first"]
        rows.append({**row, "holds": bool(ok)})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("maml_batch", "The stationary error floor of SGD-MAML (resampling) equals the Lyapunov floor: "
                        "~1/B in the task batch (log-log slope -1) and falling with the per-task sample sizes S, D "
                        "(THEORY.md §1.5, §14 items 7, 28)", specs, plot, summarize, order=2)
