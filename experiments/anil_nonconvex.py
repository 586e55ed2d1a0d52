"""Figure 5: ANIL with a nonconvex inner loss: the meta smoothness grows geometrically with the number of inner steps
N, so the iterations and the cost to reach a gradient-norm target grow with N and the smallest N is best.

Family (defined here, :class:`IndefiniteHeadANIL`): ANIL tasks with a shared linear body and an *indefinite quadratic*
head loss, so the inner loss has negative curvature :math:`-\\ell` along the whole inner path (the robust head of
:class:`convtheory.problems.ANILTasks` was tried first: its negative curvature along the path was too weak to show the
effect, so L_meta stayed flat in N). Parameters :math:`\\phi\\in\\mathbb R^p` (body, outer only), :math:`u\\in\\mathbb
R^k` (head, adapted); task i:

.. math:: \\ell^S_i(\\phi,u)=\\tfrac12(u-M_i\\phi-a_i)^\\top A_i(u-M_i\\phi-a_i),\\qquad
          \\ell^D_i(\\phi,u)=\\tfrac12(u-M_i\\phi-b_i)^\\top C_i(u-M_i\\phi-b_i)+\\tfrac\\gamma2\\|\\phi\\|^2,

:math:`A_i` with eigenvalue :math:`-\\ell` along the shared direction :math:`e_1` and the others in
:math:`[\\mu_+,L]`, :math:`C_i\\succ0`. N head steps of GD with step alpha give
:math:`u_N-M_i\\phi=a_i+P_i^N(u-M_i\\phi-a_i)`, :math:`P_i=I-\\alpha A_i`, so the ANIL meta-objective is an exact
quadratic in :math:`(\\phi,u)` with Hessian
:math:`H_N=\\mathrm{mean}_iJ_i^\\top C_iJ_i+\\gamma\\,\\mathrm{diag}(I_p,0)`,
:math:`J_i=[-P_i^NM_i,\\;P_i^N]`.

Predictions (THEORY.md §7, §14 item 14 [derived]; Ji, Lee, Liang, Poor, NeurIPS 2020): along :math:`e_1`,
:math:`P_i^Ne_1=(1+\\alpha\\ell)^Ne_1`, so :math:`L_{\\rm meta}(N)\\ge c(1+\\alpha\\ell)^{2N}` with
:math:`c=\\mathrm{mean}_i(C_i)_{11}` (an exact lower bound); with the theory step
:math:`\\beta=1/L_{\\rm meta}(N)` the iterations to :math:`\\|\\nabla\\mathcal L\\|\\le\\epsilon` and the cost
(iterations x N) increase with N; the best N is the smallest. Measured: :math:`L_{\\rm meta}(N)` as the largest
|eigenvalue| of the meta-Hessian computed by second-order autograd through the library's ANIL inner loop (checked
against the closed form); the iterations to eps of deterministic full-batch ANIL (``SOLVERS["anil"]``) with
:math:`\\beta=1/L_{\\rm meta}(N)`: the library solver runs the first ``check_iters`` steps and must agree with the
closed-form recursion :math:`g_{k+1}=(I-\\beta H_N)g_k`, which then continues to the target (the same iterates, without
the autograd cost). Also drawn: the descent-lemma bound :math:`K(N)=2L_{\\rm meta}(N)\\Delta_0/\\epsilon^2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 2
FN = "experiments.anil_nonconvex:run"


def _support_loss(params, data):
    A, M, a = data
    r = params["u"] - M @ params["phi"] - a
    return 0.5 * r @ (A @ r)


@dataclass(frozen=True)
class _QueryLoss:
    gamma: float

    def __call__(self, params, data):
        C, M, b = data
        r = params["u"] - M @ params["phi"] - b
        return 0.5 * r @ (C @ r) + 0.5 * self.gamma * (params["phi"] @ params["phi"])


@dataclass(frozen=True)
class IndefiniteHeadANIL:
    """ANIL tasks with a shared linear body and an indefinite quadratic head loss (module docstring). Task family
    protocol of :class:`convtheory.solvers.sources.MetaSource`: ``sample(B, seed)`` and ``init_params(seed)``."""

    p: int = 6
    k: int = 4
    ell: float = 1.0
    mu_pos: float = 0.5
    L: float = 2.0
    gamma: float = 0.1
    coupling: float = 0.5

    def sample(self, B: int, seed: int):
        import torch

        from convtheory.problems.base import MetaTasks, make_generator
        from convtheory.types import Constants

        gen = make_generator(seed)
        k, p = self.k, self.p
        dt = torch.float64

        def rot():  # Haar rotation of the complement of e1 (e1 stays an eigenvector)
            Q, R = torch.linalg.qr(torch.randn(k - 1, k - 1, generator=gen, dtype=dt))
            Q = Q * torch.sign(torch.diagonal(R))
            out = torch.eye(k, dtype=dt)
            out[1:, 1:] = Q
            return out

        A, C = [], []
        for _ in range(B):
            lam = self.mu_pos + (self.L - self.mu_pos) * torch.rand(k - 1, generator=gen, dtype=dt)
            lam[0], lam[-1] = self.mu_pos, self.L
            Q = rot()
            A.append(Q @ torch.diag(torch.cat([torch.tensor([-self.ell], dtype=dt), lam])) @ Q.T)
            G = torch.randn(k, k, generator=gen, dtype=dt) / math.sqrt(k)
            C.append(G @ G.T + 0.5 * torch.eye(k, dtype=dt))
        A, C = torch.stack(A), torch.stack(C)
        M = self.coupling * torch.randn(B, k, p, generator=gen, dtype=dt) / math.sqrt(p)
        a = torch.randn(B, k, generator=gen, dtype=dt)
        b = a + 0.5 * torch.randn(B, k, generator=gen, dtype=dt)
        consts = Constants(L=float(self.L), mu=-float(self.ell), rho=0.0, exact=frozenset({"L", "mu", "rho"}))
        return MetaTasks(support=(A, M, a), query=(C, M, b), loss=_support_loss, query_loss=_QueryLoss(self.gamma),
                         constants=consts, exact={"A": A, "C": C, "M": M, "a": a, "b": b, "inner_params": ("u",)})

    def init_params(self, seed: int):
        import torch

        from convtheory.problems.base import make_generator

        gen = make_generator(seed)
        return {"phi": torch.randn(self.p, generator=gen, dtype=torch.float64),
                "u": torch.randn(self.k, generator=gen, dtype=torch.float64)}


def exact_quadratic(ex: dict, alpha: float, N: int, gamma: float):
    """(H, h, const) with meta-objective 1/2 z^T H z + h^T z + const, z = (phi, u) (numpy, float64)."""
    A, C, M, a, b = (ex[key].numpy() for key in ("A", "C", "M", "a", "b"))
    B, k, p = M.shape
    H = np.zeros((p + k, p + k))
    h = np.zeros(p + k)
    const = 0.0
    for i in range(B):
        PN = np.linalg.matrix_power(np.eye(k) - alpha * A[i], N)
        J = np.hstack([-PN @ M[i], PN])
        s = a[i] - PN @ a[i] - b[i]
        H += J.T @ C[i] @ J
        h += J.T @ C[i] @ s
        const += 0.5 * s @ C[i] @ s
    H, h, const = H / B, h / B, const / B
    H[:p, :p] += gamma * np.eye(p)
    return 0.5 * (H + H.T), h, const


def run(params: dict, seed: int) -> pd.DataFrame:
    """One N: exact and autograd meta-Hessian, L_meta(N), and deterministic ANIL at beta = beta_scale / L_meta(N)
    until the exact meta-gradient norm falls below eps (or the iteration budget ends)."""
    import time


    from convtheory.solvers import SOLVERS, Budget, Sampling, run as solver_loop
    from convtheory.solvers.sources import MetaSource, subseeds
    from convtheory.theory import anil as th

    from .anil_convex import _flat_hessian

    fam = IndefiniteHeadANIL(p=params["p"], k=params["k"], ell=params["ell"], mu_pos=params["mu_pos"],
                             L=params["L"], gamma=params["gamma"])
    N, B = int(params["N"]), int(params["B"])
    alpha = params["alpha_scale"] / params["L"]
    sampling = Sampling(B=B)
    source_seed, init_seed, _ = subseeds(seed, 3)  # as solvers.base.run derives them
    src = MetaSource(fam, sampling, source_seed, B)
    theta0 = src.init_params(init_seed)
    tasks, _ = src.training_tasks(0)
    H, h, const = exact_quadratic(tasks.exact, alpha, N, fam.gamma)
    H_ag, hidx = _flat_hessian(tasks, theta0, alpha, N)  # autograd through the ANIL inner loop
    hessian_err = float(np.abs(H_ag.numpy() - H).max() / np.abs(H).max())
    ev = np.linalg.eigvalsh(H)
    L_meta = float(np.abs(np.linalg.eigvalsh(H_ag.numpy())).max())
    c = float(tasks.exact["C"][:, 0, 0].mean())
    lower = c * (1 + alpha * fam.ell) ** (2 * N)
    head_block = float(np.linalg.norm(H[np.ix_(hidx, hidx)], 2))
    beta = params["beta_scale"] / L_meta
    z0 = np.concatenate([theta0["phi"].numpy(), theta0["u"].numpy()])
    z_star = np.linalg.solve(H, -h)
    F = lambda z: 0.5 * z @ H @ z + h @ z + const  # noqa: E731
    delta0 = float(F(z0) - F(z_star))
    eps = float(params["eps"])
    # the library solver for the first steps (and its seconds per step)
    K_check = int(params["check_iters"])
    solver = SOLVERS["anil"](alpha=alpha, beta=beta, N=N, sampling=sampling, inner_params=("u",))
    t0 = time.perf_counter()
    tr = solver_loop(solver, fam, Budget(iterations=K_check), seed=seed, eval_every=1, eval_tasks=B)
    sec_per_step = float(tr["wall_time"].iloc[-1]) / max(K_check, 1) if "wall_time" in tr else \
        (time.perf_counter() - t0) / max(K_check, 1)
    # the same iterates in closed form: g_{k+1} = (I - beta H) g_k, until the target or the budget
    K = int(params["iterations"])
    g = H @ z0 + h
    step = np.eye(len(z0)) - beta * H
    norms = [float(np.linalg.norm(g))]
    while norms[-1] > eps and len(norms) <= K:
        g = step @ g
        norms.append(float(np.linalg.norm(g)))
    lib = tr["grad_norm"].to_numpy()
    m = min(len(lib), len(norms))
    solver_err = float(np.max(np.abs(lib[:m] - np.asarray(norms[:m])) / np.asarray(norms[:m])))
    iters = len(norms) - 1 if norms[-1] <= eps else math.nan
    keep = sorted(set(np.unique(np.geomspace(1, len(norms), 60).astype(int) - 1).tolist()) | {len(norms) - 1})
    calls_per_step = B * (N + 1)  # N inner head gradients + one outer gradient per task (hvps counted apart)
    rows = [{"iteration": j, "grad_norm": norms[j], "wall_time": j * sec_per_step} for j in keep]
    out = pd.DataFrame(rows)
    for key, val in {"N": N, "seed": seed, "alpha": alpha, "beta": beta, "ell": fam.ell, "c": c,
                     "L_meta": L_meta, "L_meta_exact": float(np.abs(ev).max()), "mu_meta": float(ev.min()),
                     "lower_bound": lower, "head_block": head_block, "hessian_rel_err": hessian_err,
                     "solver_rel_err": solver_err, "eps": eps, "delta0": delta0, "budget": K, "iters": iters,
                     "calls_per_step": calls_per_step,
                     "predicted_K": th.predicted_iterations(L_meta, delta0, eps**2)}.items():
        out[key] = val
    return out


def reach(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["N", "seed", "L_meta", "L_meta_exact", "mu_meta", "lower_bound", "head_block", "c", "hessian_rel_err",
            "solver_rel_err", "iters", "predicted_K", "budget", "calls_per_step"]
    r = table.groupby(["N", "seed"])[cols[2:]].first().reset_index()
    sec = table.sort_values("iteration").groupby(["N", "seed"])["wall_time"].last().values
    r["calls"] = r["iters"] * r["calls_per_step"]
    r["seconds"] = np.where(r["iters"].notna(), sec, np.nan)
    return r


def specs(profile: str) -> list:
    if profile == "test":
        Ns, seeds, K = [1, 2, 4], (0,), 20000
    elif profile == "quick":
        Ns, seeds, K = [1, 2, 3, 4, 6, 8], (0, 1, 2), 200000
    else:
        Ns, seeds, K = [1, 2, 3, 4, 5, 6, 8, 10, 12], tuple(range(5)), 2000000
    fixed = {"p": 6, "k": 4, "ell": 1.0, "mu_pos": 0.5, "L": 2.0, "gamma": 0.1, "B": 8, "alpha_scale": 0.5,
             "beta_scale": 1.0, "eps": 1e-4, "iterations": K, "check_iters": 10}
    return grid("anil_nonconvex", FN, {"N": Ns}, seeds=seeds, fixed=fixed)


def _band(ax, r, y, label, **kw):
    gr = r.groupby("N")[y]
    mid, lo, hi = gr.median(), gr.min(), gr.max()
    line, = ax.plot(mid.index, mid.values, label=label, **kw)
    ax.fill_between(mid.index, lo.values, hi.values, alpha=0.2, color=line.get_color())
    return line


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    r = reach(table)
    Ns = sorted(r["N"].unique())
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.3))
    ax = axes[0]
    s0 = table["seed"].min()
    for N, t in table[table["seed"] == s0].groupby("N"):
        ax.plot(t["iteration"] + 1, t["grad_norm"], color=plt.cm.viridis(Ns.index(N) / max(1, len(Ns) - 1)),
                label=f"N = {N}")
    ax.axhline(table["eps"].iloc[0], color="k", ls=":", lw=1, label="target eps")
    ax.set(xscale="log", yscale="log", xlabel="outer iteration + 1", ylabel="exact meta-gradient norm",
           title=f"convergence at beta = 1/L_meta(N) (seed {s0})")
    ax.legend(fontsize=7)
    ax = axes[1]
    _band(ax, r, "L_meta", "L_meta(N), autograd meta-Hessian", marker="s")
    _band(ax, r, "head_block", "head block ||H_uu||", marker="o", ls="--")
    _band(ax, r, "lower_bound", "c (1 + alpha l)^{2N} (theory lower bound)", color="k", ls=":", marker=".")
    _band(ax, r, "mu_meta", "mu_meta(N) (smallest eigenvalue)", marker="v", color="C4")
    ax.set(yscale="log", xlabel="inner steps N", ylabel="curvature", title="meta-curvature vs N (log scale)")
    ax.legend(fontsize=7)
    ax = axes[2]
    _band(ax, r, "iters", "iterations to eps, measured", marker="o")
    _band(ax, r, "predicted_K", "K(N) = 2 L_meta Delta0 / eps^2 (bound)", color="k", ls="--")
    ax.set(yscale="log", xlabel="inner steps N", ylabel="outer iterations", title="iterations to eps grow with N")
    ax.legend(fontsize=7)
    ax = axes[3]
    _band(ax, r, "calls", "gradient calls to eps: iters x B (N+1)", marker="o")
    ax.set(yscale="log", xlabel="inner steps N", ylabel="gradient calls")
    ax2 = ax.twinx()
    _band(ax2, r, "seconds", "seconds to eps (library step time x iters)", marker="^", color="C3")
    ax2.set(ylabel="seconds", yscale="log")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax.set_title("cost to eps: smallest N is best")
    t = table.iloc[0]
    fig.suptitle(f"ANIL, indefinite quadratic head (head curvature -l, l = {t['ell']:g}; alpha = {t['alpha']:g}): "
                 "meta smoothness grows like (1 + alpha l)^{2N}, iterations and cost grow with N "
                 "(median, min-max band over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per N (medians over seeds; bounds checked on every seed). Verdicts (theory, item 14): L_meta(N) >=
    c(1+alpha l)^{2N} on every seed; iterations to eps (median) non-decreasing in N; cost (gradient calls) above the
    smallest N's; the library's ANIL (autograd Hessian and solver iterates) agrees with the closed form (1e-8);
    measured iterations <= the descent-lemma K(N) on every seed."""
    r = reach(table)
    r["bound_ok"] = r["L_meta"] >= r["lower_bound"] * (1 - 1e-9)
    r["K_ok"] = r["iters"].notna() & (r["iters"] <= r["predicted_K"])
    s = r.groupby("N").agg(L_meta=("L_meta", "median"), lower_bound=("lower_bound", "median"),
                           mu_meta=("mu_meta", "median"), iters=("iters", "median"),
                           reached=("iters", lambda x: int(x.notna().sum())), seeds=("iters", "size"),
                           predicted_K=("predicted_K", "median"), calls=("calls", "median"),
                           seconds=("seconds", "median"), bound_ok=("bound_ok", "all"), K_ok=("K_ok", "all"),
                           library_err=("hessian_rel_err", "max"), solver_err=("solver_rel_err", "max")
                           ).reset_index()
    budget = r["budget"].max() + 1
    it = s["iters"].where(s["reached"] * 2 > s["seeds"]).fillna(budget).to_numpy()
    s["iters_nondecreasing"] = np.r_[True, it[1:] >= np.maximum.accumulate(it)[:-1]]
    calls = s["calls"].fillna(np.inf).to_numpy()
    s["cost_above_smallest_N"] = calls >= calls[0]
    s["library_agrees"] = (s["library_err"] < 1e-8) & (s["solver_err"] < 1e-8)
    s["holds"] = (s["bound_ok"] & s["iters_nondecreasing"] & s["cost_above_smallest_N"] & s["library_agrees"]
                  & s["K_ok"])
    return s


EXPERIMENT = Experiment("anil_nonconvex", "ANIL with a nonconvex (indefinite) head: meta smoothness grows at least "
                        "like c(1+alpha l)^{2N}, iterations and cost to eps grow with N, the smallest N is best "
                        "(THEORY.md §7, §14 item 14)", specs, plot, summarize, order=5)
