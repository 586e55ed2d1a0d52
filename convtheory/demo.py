"""The engines at work: each hypergradient and meta-gradient method against the exact answer, as tidy tables.

Bilevel part: on a quadratic bilevel instance (THEORY.md §1.3) the exact hypergradient is known, and so are the
exact ITD and AID-FP estimates; the table lists each method's error for a range of N (inner steps) and Q
(solver steps) next to the closed-form rate where theory gives one. Meta-learning part: on quadratic tasks
(THEORY.md §1.2) the exact N-step MAML gradient is known; the table lists each meta-gradient method's distance to
it (MAML: round-off; first-order methods: their bias).
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from .hypergrad import hypergradient, meta_gradient
from .problems.bilevel_quadratic import QuadraticBilevel, esj_moments, inner_iterate_exact, itd_error_exact
from .problems.quadratic import QuadraticTasks, exact_meta_gradient


def bilevel_table(seed: int = 0, Ns=(5, 10, 20, 40), Qs=(2, 5, 10, 20)) -> pd.DataFrame:
    """Relative error of every ``hypergradient`` method against the exact hypergradient, next to theory.

    ``predicted`` is exact where the closed form is exact (ITD: THEORY.md §1.3; ESJ: the root-mean-square error
    over directions, sqrt(|e_ITD|^2 + (p+1)|a|^2/Q)); for AID it is the upper bound
    |B| (linear-system error bound) + |B|/mu |y_N - y*| with the CG bound 2 sqrt(kappa) r^Q |v*| and the
    fixed-point bound (1 - eta mu)^Q |v*| (Neumann: Q + 1). ``kind`` says which.
    """
    prob = QuadraticBilevel(p=5, q=10, mu=0.1, L=1.0).build(seed)
    c = prob.constants
    alpha = 1.0 / c.L
    x, y0 = prob.x0, prob.y0
    exact = prob.hypergradient(x)
    scale = float(exact.norm())
    q = 1.0 - alpha * c.mu  # GD contraction factor for alpha <= 1/L
    kappa = c.L / c.mu
    r_cg = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    normB = float(prob.constants.extra["Lxy"])
    rows = []

    def add(method, N, Q, hg, predicted, kind):
        err = float((hg - exact).norm()) / scale
        rows.append({"method": method, "N": N, "Q": Q, "rel_error": err, "predicted": predicted / scale,
                     "kind": kind, "holds": bool(err <= predicted / scale * (1 + 1e-9) + 1e-14)
                     if kind == "bound" else None})

    for N in Ns:
        e_itd = float(itd_error_exact(prob, x, y0, alpha, N).norm())
        for method in ("itd", "itd-forward"):
            hg, _ = hypergradient(prob.f, prob.g, x, y0, method=method, inner_steps=N, inner_lr=alpha)
            add(method, N, None, hg, e_itd, "exact")
    N = max(Ns)
    yN = inner_iterate_exact(prob, x, y0, alpha, N)
    v_star = float(torch.linalg.solve(prob.extra["H"], yN - prob.extra["ybar"]).norm())
    y_err = normB / c.mu * float((yN - prob.y_star(x)).norm())
    for Q in Qs:
        linsys = {"aid-cg": 2 * math.sqrt(kappa) * r_cg**Q, "aid-neumann": q ** (Q + 1), "aid-fp": q**Q}
        for method, factor in linsys.items():
            hg, _ = hypergradient(prob.f, prob.g, x, y0, method=method, inner_steps=N, inner_lr=alpha, solver_steps=Q)
            add(method, N, Q, hg, normB * factor * v_star + y_err, "bound")
    m = esj_moments(prob, x, y0, alpha, N)
    e_itd = float(itd_error_exact(prob, x, y0, alpha, N).norm())
    for Q in (10, 100, 1000):
        hg, _ = hypergradient(prob.f, prob.g, x, y0, method="esj", inner_steps=N, inner_lr=alpha, directions=Q,
                              seed=seed)
        add("esj", N, Q, hg, math.sqrt(e_itd**2 + float(m.variance) / Q), "rms")
    hg, _ = hypergradient(prob.f, prob.g, x, y0, method="exact", inner_steps=0, inner_lr=alpha)
    add("exact", None, None, hg, 0.0, "exact")
    return pd.DataFrame(rows).astype({"N": "Int64", "Q": "Int64"})


def meta_table(seed: int = 0, Ns=(1, 5, 10), B: int = 16) -> pd.DataFrame:
    """Relative distance of every ``meta_gradient`` method to the exact N-step MAML gradient on quadratic tasks."""
    fam = QuadraticTasks(d=8, mu=0.1, L=1.0, query="independent")
    tasks = fam.sample(B, seed)
    theta = fam.init_params(seed)
    rows = []
    for N in Ns:
        alpha = 1.0 / (N * tasks.constants.L)
        exact = exact_meta_gradient(theta, tasks, alpha, N)
        for method, kw in (("maml", {}), ("hfmaml", {"delta": 1e-2}), ("fomaml", {}), ("reptile", {}),
                           ("imaml", {"lam": 1.0, "cg_steps": 20})):
            mg, info = meta_gradient(tasks.loss, theta, tasks.support, tasks.query, method=method, inner_steps=N,
                                     inner_lr=alpha, compile="never", **kw)
            rows.append({"method": method, "N": N, "alpha": alpha,
                         "rel_distance_to_maml": float((mg - exact).norm() / exact.norm()),
                         "grads": info.oracle.grad, "hvps": info.oracle.hvp})
    return pd.DataFrame(rows)


def run(seed: int = 0) -> dict[str, pd.DataFrame]:
    return {"bilevel": bilevel_table(seed), "meta": meta_table(seed)}
