"""Figure 8: iMAML versus MAML. (a) The iMAML meta-gradient's CG error against the number of CG steps Q for several
lambda, next to the CG bound; (b) peak memory of one meta-gradient versus the number of inner steps N, measured.

Predictions: (a) THEORY.md §1.4, §14 item 16 [derived]: per task,
:math:`\\|g_Q-g^*\\|\\le2\\sqrt{\\kappa_\\lambda}r_\\lambda^Q\\|g^*\\|` with
:math:`\\kappa_\\lambda=(\\lambda+h_{\\max})/(\\lambda+h_{\\min})` (:func:`convtheory.theory.imaml.cg_error_bound_imaml`), so a
larger lambda needs fewer CG steps; the reference :math:`g^*` is the dense solve of
:math:`(I+A_i/\\lambda)g=\\nabla\\ell^D_i(\\phi_N)` at the same inner point, and the error against the exact implicit
gradient (:func:`convtheory.solvers.imaml_exact`, exact inner solution) is shown too. (b) THEORY.md §8 [paper:
abstract]: MAML's memory grows linearly with N (it keeps every inner iterate for the backward pass), iMAML's does
not. Memory is measured as the growth of the resident set's high-water mark (``VmHWM`` after resetting it via
``/proc/self/clear_refs``) during one meta-gradient, in a fresh Python process, on a wide float32 MLP; tracemalloc
cannot see torch's CPU allocations.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd

from convtheory.sweep import grid

from .base import Experiment

version = 1
FN = "experiments.imaml_vs_maml:run"


def run(params: dict, seed: int) -> pd.DataFrame:
    return _memory(params, seed) if params["kind"] == "memory" else _error(params, seed)


def _error(params: dict, seed: int) -> pd.DataFrame:
    import torch
    from torch.func import grad, vmap

    from convtheory.hypergrad import meta_gradient
    from convtheory.problems import QuadraticTasks
    from convtheory.solvers import imaml_exact
    from convtheory.theory.imaml import cg_error_bound_imaml, condition_number

    mu, L, d, B = params["mu"], params["L"], params["d"], params["B"]
    fam = QuadraticTasks(d=d, mu=mu, L=L, query="independent")
    tasks = fam.sample(B, seed)
    theta = fam.init_params(seed) if hasattr(fam, "init_params") else torch.zeros(d, dtype=torch.float64)
    A = tasks.exact["A"]
    rows = []
    for lam in params["lams"]:
        alpha = 1.0 / (L + lam)
        N = int(params["N_inner"])
        _, exact_g = imaml_exact(theta, tasks, lam)
        for Q in params["Qs"]:
            g, info = meta_gradient(tasks.loss, theta, tasks.support, tasks.query, method="imaml", inner_steps=N,
                                    inner_lr=alpha, query_loss=tasks.query_loss, lam=lam, cg_steps=Q,
                                    compile="never")
            phi = info.inner
            rhs = vmap(grad(tasks.outer_loss))(phi, tasks.query)
            M = torch.eye(d, dtype=A.dtype) + A / lam
            g_star_i = torch.linalg.solve(M, rhs.unsqueeze(-1)).squeeze(-1)
            g_star = g_star_i.mean(0)
            # per-task CG bound with the task's own spectrum, averaged (triangle inequality)
            eig = torch.linalg.eigvalsh(A)
            bound = float(np.mean([float(cg_error_bound_imaml(lam, float(e[0]), float(e[-1]), Q,
                                                              float(gs.norm())))
                                   for e, gs in zip(eig, g_star_i)]))
            scale = float(g_star.norm())
            rows.append({"kind": "error", "lam": lam, "Q": Q, "N_inner": N,
                         "kappa_lam": condition_number(lam, float(eig[:, 0].min()), float(eig[:, -1].max())),
                         "cg_error": float((g - g_star).norm()) / scale, "cg_bound": bound / scale,
                         "total_error": float((g - exact_g).norm()) / float(exact_g.norm())})
    return pd.DataFrame(rows)


_MEM_SCRIPT = r"""
import gc, json, sys, torch
torch.set_num_threads(1)
from convtheory.hypergrad import meta_gradient
p = json.loads(sys.argv[1])
g = torch.Generator().manual_seed(p["seed"])
d, w, S, B = p["d"], p["width"], p["S"], p["B"]
theta = {"W1": torch.randn(d, w, generator=g) / d ** 0.5, "W2": torch.randn(w, w, generator=g) / w ** 0.5,
         "w3": torch.randn(w, generator=g) / w ** 0.5}
X = torch.randn(B, S, d, generator=g); y = torch.randn(B, S, generator=g)
def loss(params, data):
    x, t = data
    h = torch.tanh(torch.tanh(x @ params["W1"]) @ params["W2"])
    return 0.5 * ((h @ params["w3"] - t) ** 2).mean()
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
out = []
for N in p["Ns"]:
    kw = dict(method=p["method"], inner_steps=N, inner_lr=0.1, compile="never")
    if p["method"] == "imaml":
        kw.update(lam=1.0, cg_steps=p["Q"])
    for rep in range(2):  # the first call warms up one-time allocations; the second is measured
        gc.collect()
        open("/proc/self/clear_refs", "w").write("5")
        base = status("VmRSS")
        mg, info = meta_gradient(loss, theta, (X, y), (X, y), **kw)
        peak = status("VmHWM")
        del mg, info
    out.append({"N": N, "peak_bytes": peak - base})
print(json.dumps(out))
"""


def _memory(params: dict, seed: int) -> pd.DataFrame:
    """Peak resident-set growth of one meta-gradient per N, measured in a fresh Python process (volatile)."""
    arg = json.dumps({**{k: params[k] for k in ("method", "Ns", "d", "width", "S", "B", "Q")}, "seed": seed})
    import os

    # fixed glibc mmap threshold: large blocks are mapped and unmapped, so the resident set follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, arg], capture_output=True, text=True, timeout=600,
                         env=env)
    if res.returncode != 0:
        raise RuntimeError(f"memory subprocess failed: {res.stderr.strip().splitlines()[-1:]}")
    df = pd.DataFrame(json.loads(res.stdout.strip().splitlines()[-1]))
    w, d = params["width"], params["d"]
    n_params = d * w + w * w + w
    df["kind"] = "memory"
    df["method"] = params["method"]
    df["param_bytes"] = 4 * n_params
    df["B"] = params["B"]
    return df


def specs(profile: str) -> list:
    if profile == "test":
        err = {"lams": [0.5, 2.0], "Qs": [1, 3, 6], "seeds": (0,)}
        mem = {"Ns": [1, 8], "width": 512, "seeds": (0,)}
    elif profile == "quick":
        err = {"lams": [0.1, 0.5, 2.0, 8.0], "Qs": [1, 2, 3, 5, 8, 12, 16, 20], "seeds": (0, 1, 2)}
        mem = {"Ns": [1, 2, 4, 8, 16], "width": 1024, "seeds": (0, 1)}
    else:
        err = {"lams": [0.05, 0.1, 0.5, 2.0, 8.0, 32.0], "Qs": [1, 2, 3, 5, 8, 12, 16, 20, 30, 40],
               "seeds": tuple(range(10))}
        mem = {"Ns": [1, 2, 4, 8, 16, 32], "width": 1024, "seeds": (0, 1, 2)}
    out = grid("imaml_vs_maml", FN, {}, seeds=err["seeds"],
               fixed={"kind": "error", "mu": 0.01, "L": 4.0, "d": 20, "B": 8, "N_inner": 100,
                      "lams": err["lams"], "Qs": err["Qs"]})
    # memory runs (volatile, ~15 s each for the fresh process) come after the deterministic error runs and are
    # left out of the test profile
    if profile == "test":
        return out
    out += grid("imaml_vs_maml", FN, {"method": ["maml", "imaml"]}, seeds=mem["seeds"],
                fixed={"kind": "memory", "Ns": mem["Ns"], "width": mem["width"], "d": 32, "S": 64, "B": 2,
                       "Q": 5})
    return out


def plot(table: pd.DataFrame, profile: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    err = table[table["kind"] == "error"]
    for i, lam in enumerate(sorted(err["lam"].unique())):
        sub = err[err["lam"] == lam]
        g = sub.groupby("Q")
        mid, lo, hi = g["cg_error"].median(), g["cg_error"].min(), g["cg_error"].max()
        kap = sub["kappa_lam"].max()
        line, = axes[0].plot(mid.index, mid.values, marker="o", color=f"C{i}",
                             label=f"lambda = {lam:g} (kappa_lam <= {kap:.3g})")
        axes[0].fill_between(mid.index, lo.values, hi.values, alpha=0.2, color=line.get_color())
        b = g["cg_bound"].max()
        axes[0].plot(b.index, b.values, "--", color=line.get_color(), lw=1)
        t = g["total_error"]
        axes[1].plot(t.median().index, t.median().values, marker="s", color=line.get_color(), label=f"lambda = {lam:g}")
        axes[1].fill_between(t.median().index, t.min().values, t.max().values, alpha=0.2, color=line.get_color())
    axes[0].plot([], [], "k--", lw=1, label="CG bound 2 sqrt(kappa_lam) r^Q (per task)")
    axes[0].set(yscale="log", xlabel="CG steps Q", ylabel="relative error vs dense solve at phi_N",
                title="iMAML meta-gradient: CG error", ylim=(1e-17, None))
    axes[0].legend(fontsize=7)
    axes[1].set(yscale="log", xlabel="CG steps Q", ylabel="relative error vs exact implicit gradient",
                title="iMAML vs exact implicit gradient (N inner = %d)" % int(err["N_inner"].iloc[0]),
                ylim=(1e-17, None))
    axes[1].legend(fontsize=7)
    mem = table[table["kind"] == "memory"]
    ax = axes[2]
    for i, method in enumerate(["maml", "imaml"] if not mem.empty else []):
        sub = mem[mem["method"] == method]
        if sub.empty:
            continue
        g = sub.groupby("N")["peak_bytes"]
        mid, lo, hi = g.median() / 2**20, g.min() / 2**20, g.max() / 2**20
        line, = ax.plot(mid.index, mid.values, marker="o", label=f"{method}, measured peak", color=f"C{i}")
        ax.fill_between(mid.index, lo.values, hi.values, alpha=0.2, color=line.get_color())
    if not mem.empty:
        Ns = np.array(sorted(mem["N"].unique()), dtype=float)
        pb = mem["param_bytes"].iloc[0] * mem["B"].iloc[0] / 2**20
        ax.plot(Ns, pb * Ns, "k--", lw=1, label="N x B x |theta| (one copy per inner iterate)")
    ax.set(xlabel="inner steps N", ylabel="peak RSS growth (MiB)",
           title="peak memory of one meta-gradient (wide MLP)")
    if mem.empty:
        ax.text(0.5, 0.5, "memory runs: quick and full profiles only", ha="center", transform=ax.transAxes)
    else:
        ax.set(xscale="log", yscale="log")
        ax.legend(fontsize=7)
    fig.suptitle("iMAML versus MAML: CG accuracy against its bound, and memory against N (median, min-max over seeds)")
    fig.tight_layout()
    return fig


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per lambda: worst CG error over bound (must be <= 1) and CG steps to 1e-6; per method: memory growth
    from the smallest to the largest N (MAML must grow by at least half a parameter copy per extra step and task;
    iMAML by less than 10% + 4 MiB)."""
    rows = []
    err = table[table["kind"] == "error"]
    for lam, sub in err.groupby("lam"):
        t = sub[sub["cg_bound"] > 1e-12]
        worst = float((t["cg_error"] / t["cg_bound"]).max()) if not t.empty else 0.0
        med = sub.groupby("Q")["cg_error"].median()
        hit = med[med <= 1e-6]
        rows.append({"part": "cg_error", "key": f"lambda={lam:g}", "kappa_lam": float(sub["kappa_lam"].max()),
                     "value": worst, "Q_to_1e-6": float(hit.index.min()) if not hit.empty else math.nan,
                     "holds": worst <= 1 + 1e-9})
    mem = table[table["kind"] == "memory"]
    for method, sub in (mem.groupby("method") if not mem.empty else []):
        g = sub.groupby("N")["peak_bytes"].median()
        n0, n1 = g.index.min(), g.index.max()
        growth = float(g[n1] - g[n0])
        per_copy = float(sub["param_bytes"].iloc[0] * sub["B"].iloc[0])
        if method == "maml":
            ok = growth >= 0.5 * per_copy * (n1 - n0)
        else:
            ok = growth <= 0.1 * float(g[n0]) + 4 * 2**20
        rows.append({"part": "memory", "key": method, "kappa_lam": math.nan,
                     "value": growth / 2**20, "Q_to_1e-6": math.nan, "holds": bool(ok),
                     "peak_MiB_smallest_N": float(g[n0]) / 2**20, "peak_MiB_largest_N": float(g[n1]) / 2**20})
    return pd.DataFrame(rows)


EXPERIMENT = Experiment("imaml_vs_maml", "iMAML's CG meta-gradient error stays below 2 sqrt(kappa_lam) r^Q and falls "
                        "faster for larger lambda; MAML's peak memory grows with N, iMAML's does not (THEORY.md §8, "
                        "§14 item 16)", specs, plot, summarize, order=8)
