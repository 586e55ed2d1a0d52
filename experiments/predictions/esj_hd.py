"""Predictions 25-27: the ESJ hypergradient on quadratics, hypergradient descent's step size, Alpha-MAML's inner
rate (THEORY.md §1.3, §11, §12, §14 items 25-27).

- 25 (exact): the library's ``hypergradient(method="esj")`` against its ``itd`` on the quadratic bilevel family:
  per draw, the forward difference is exact for every delta (the estimate equals
  :math:`\\nabla_xf+\\frac sQU^\\top Ua` with the directions U it reports); over R seeded draws the mean is the ITD
  hypergradient and the MSE is :math:`(p+1)\\|a\\|^2/Q` (Gaussian), :math:`(p-1)\\|a\\|^2/Q` (unit sphere times p), and
  without the factor p the mean shrinks to :math:`\\nabla_xf+a/p`; total error = ITD truncation + ES variance. On a
  non-quadratic inner problem (hyper-representation, tanh) the per-draw smoothing error grows like delta
  (fitted log-log slope 1), and directions for a fixed relative MSE grow like p + 1 (fitted slope in p).
- 26 (fitted): SGD-HD (Baydin et al. 2018) written here as a pure function on an exact quadratic: the HD
  hypergradient is :math:`h_t=g^\\top Hg\\,(\\alpha_{ls}(g)-\\alpha)` exactly, alpha freezes at
  :math:`\\sqrt{\\alpha_0^2+2\\beta_{hyp}\\Delta f}` when that stays below 1/L, inside [1/L, 1/mu] when it does
  not, and oscillates or diverges when :math:`\\beta_{hyp}g^\\top Hg>2`.
- 27 (fitted): the library's ``alpha-maml`` solver on one-step MAML quadratic tasks: each alpha update is exactly
  :math:`\\alpha_{t+1}-\\alpha^*(\\theta_t)=(1-\\eta_\\alpha c_t)(\\alpha_t-\\alpha^*(\\theta_t))`,
  :math:`c_t=\\mathbb E[g_S^\\top Cg_S]`, so alpha is driven toward :math:`\\alpha^*(\\theta_t)`; and its Trace oracle
  counts against MAML's at equal iterations (seed 003's claim: no extra gradient evaluations).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from convtheory.sweep import grid
from convtheory.theory.predictions import Outcome, Prediction

version = 1

# ============================================================================================ item 25: ESJ
FN25M = "experiments.predictions.esj_hd:run_esj_moments"
FN25S = "experiments.predictions.esj_hd:run_esj_smoothing"
#: Monte-Carlo tolerance: |measured - exact| <= Z25 standard errors of the mean over R draws (the CI is the
#: sample standard error; Z25 = 4 keeps a false alarm below ~1e-4 per compared number under a normal law).
Z25 = 4.0
#: R ||mean - exact mean||^2 / (exact MSE about the mean) has expectation 1 and standard deviation <= sqrt(2)
#: (a trace-weighted chi-square); 4 standard deviations above 1.
BIAS25 = 1.0 + 4.0 * math.sqrt(2.0)
FD25 = 1e-8  # per-draw identity ||esj - (grad_x f + s/Q U^T U a)|| / ||a|| (round-off of the difference)
SLOPE25_DELTA = 0.1  # |fitted slope of smoothing error in delta - 1|
SLOPE25_P = 0.15  # |fitted slope of directions-for-target in p - exact slope|
EPS25 = 0.1  # relative RMS target for the directions count: MSE <= EPS25^2 ||a||^2
LAW_MOMENTS = {"gaussian": "gaussian", "sphere_scaled": "sphere", "sphere": "sphere_unscaled"}


def mc_summary(samples, center) -> dict:
    """Monte-Carlo summary of R estimates (the rows of ``samples``) against an exact ``center``: the mean squared
    distance with its standard error (sample standard deviation / sqrt(R)), and the sample mean."""
    e = ((samples - center) ** 2).sum(-1)
    return {"mse": float(e.mean()), "mse_se": float(e.std(correction=1)) / math.sqrt(samples.shape[0]),
            "mean": samples.mean(0)}


def run_esj_moments(params: dict, seed: int) -> pd.DataFrame:
    """R seeded ESJ hypergradients (the library's, Q directions, delta cycling through ``deltas``) on one
    quadratic bilevel problem, against its ITD hypergradient and the exact moments. One row per direction law:
    the law run (``gaussian`` or ``sphere_scaled``) and, for the sphere, also the unscaled estimate (``sphere``,
    the authors' meta-learning path) obtained by dividing the ES part by p; column ``estimator`` (the runner
    overwrites a column named like a parameter, so not ``law``)."""
    import torch
    from torch.func import grad

    import convtheory.theory as th
    from convtheory.hypergrad import hypergradient
    from convtheory.problems import QuadraticBilevel
    from convtheory.problems.bilevel_quadratic import esj_moments

    p, Q, R, N, law = int(params["p"]), int(params["Q"]), int(params["R"]), int(params["N"]), params["law"]
    prob = QuadraticBilevel(p=p, q=int(params["q"]), mu=float(params["mu"]), L=float(params["L"])).build(seed)
    alpha, x, y0 = float(params["alpha_L"]) / prob.constants.L, prob.x0, prob.y0
    kw = dict(inner_steps=N, inner_lr=alpha)
    itd, info = hypergradient(prob.f, prob.g, x, y0, method="itd", **kw)
    gxf = grad(prob.f, argnums=0)(x, info.inner)
    a = itd - gxf
    exact = prob.hypergradient(x)
    deltas = [float(d) for d in params["deltas"]]
    hgs, fd = [], []
    for r in range(R):  # Monte-Carlo repetitions of one library call each (not a loop over tasks)
        hg, inf = hypergradient(prob.f, prob.g, x, y0, method="esj", directions=Q, seed=100_003 * seed + r,
                                sphere=law == "sphere_scaled", delta=deltas[r % len(deltas)], **kw)
        U, s = inf.extra["directions"], inf.extra["scale"]
        fd.append(float(torch.linalg.vector_norm(hg - (gxf + (s / Q) * (U.T @ (U @ a))))))
        hgs.append(hg)
    HG = torch.stack(hgs)
    a_norm, itd_err = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(itd - exact))
    laws = {law: HG} if law == "gaussian" else {law: HG, "sphere": gxf + (HG - gxf) / p}
    rows = []
    for name, S in laws.items():
        mom = esj_moments(prob, x, y0, alpha, N, LAW_MOMENTS[name])
        var = float(mom.variance) / Q
        m = mc_summary(S, itd)
        bias_pred = float(torch.linalg.vector_norm(mom.mean - itd))
        tot = ((S - exact) ** 2).sum(-1)
        rows.append({
            "estimator": name, "p": p, "Q": Q, "R": R, "N": N, "alpha": alpha, "a_norm": a_norm, "itd_error": itd_err,
            "mse": m["mse"], "mse_se": m["mse_se"], "mse_pred": th.esj_mse(a_norm, p, Q, name),
            "mse_pred_moments": bias_pred**2 + var,
            "bias_stat": R * float(((m["mean"] - mom.mean) ** 2).sum()) / var,
            "mean_dist": float(torch.linalg.vector_norm(m["mean"] - itd)), "mean_dist_pred": th.esj_bias(a_norm, p, name),
            "total_mse": float(tot.mean()), "total_se": float(tot.std(correction=1)) / math.sqrt(R),
            "total_pred": (math.nan if name == "sphere" else th.esj_total_mse(itd_err, a_norm, p, Q, name)),
            "fd_dev": max(fd) / a_norm, "deltas": len(deltas)})
    return pd.DataFrame(rows)


run_esj_moments.version = version


def run_esj_smoothing(params: dict, seed: int) -> pd.DataFrame:
    """The per-draw smoothing error of the library's ESJ on a non-quadratic inner problem (hyper-representation with
    a tanh embedding): ||esj(delta) - esj(0)|| / ||a|| with the same Q directions (same seed) for every delta, where
    esj(0) = grad_x f + (1/Q) U^T U a is its delta -> 0 limit and a = itd - grad_x f (the library's itd)."""
    import torch
    from torch.func import grad

    from convtheory.hypergrad import hypergradient
    from convtheory.problems import HyperRepresentation
    from convtheory.tree import flatten

    fam = HyperRepresentation(num_tasks=int(params["B"]), d_in=int(params["d_in"]), k=int(params["k"]),
                              n_support=int(params["S"]), n_query=int(params["D"]), embedding="tanh")
    prob = fam.build(seed)
    alpha, N, Q = float(params["alpha_L"]) / prob.constants.L, int(params["N"]), int(params["Q"])
    x, y0 = prob.x0, prob.y0
    itd, info = hypergradient(prob.f, prob.g, x, y0, method="itd", inner_steps=N, inner_lr=alpha)
    gxf = flatten(grad(prob.f, argnums=0)(x, info.inner))
    a = flatten(itd) - gxf
    rows = []
    for delta in params["deltas"]:
        hg, inf = hypergradient(prob.f, prob.g, x, y0, method="esj", inner_steps=N, inner_lr=alpha, directions=Q,
                                seed=seed, delta=float(delta))
        U = inf.extra["directions"]
        lin = gxf + (U.T @ (U @ a)) / Q
        rows.append({"delta": float(delta), "p": int(a.numel()), "Q": Q, "N": N,
                     "smooth_err": float(torch.linalg.vector_norm(flatten(hg) - lin) / torch.linalg.vector_norm(a))})
    return pd.DataFrame(rows)


run_esj_smoothing.version = version


def specs25(profile: str) -> list:
    fixed = {"q": 10, "mu": 0.1, "L": 1.0, "N": 10, "alpha_L": 0.5, "deltas": [1e-4, 1e-2, 1.0, 100.0]}
    smooth = {"B": 4, "d_in": 4, "k": 2, "S": 8, "D": 8, "N": 20, "alpha_L": 1.0, "Q": 4,
              "deltas": [1e-5, 1e-4, 1e-3, 1e-2]}
    if profile == "test":
        R, seeds, sseeds = 48, (0,), (0,)
        parts = [{"p": [2, 32], "law": ["gaussian"], "Q": [16]}, {"p": [8], "law": ["sphere_scaled"], "Q": [16]}]
    elif profile == "quick":
        R, seeds, sseeds = 80, (0,), (0, 1)
        parts = [{"p": [2, 8, 32, 64], "law": ["gaussian"], "Q": [4]},
                 {"p": [2, 32], "law": ["gaussian", "sphere_scaled"], "Q": [16]}]
    else:
        R, seeds, sseeds = 1000, (0, 1, 2), tuple(range(10))
        parts = [{"p": [2, 4, 8, 16, 32, 64, 128], "law": ["gaussian", "sphere_scaled"], "Q": [1, 4, 16, 64]}]
        smooth["deltas"] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    out = []
    for axes in parts:
        out += grid("prediction_25_moments", FN25M, axes, seeds=seeds, fixed={**fixed, "R": R})
    return out + grid("prediction_25_smoothing", FN25S, {"Q": [smooth.pop("Q")]}, seeds=sseeds, fixed=smooth)


def _loglog_slope(x, y) -> float:
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def judge25(table: pd.DataFrame, profile: str) -> Outcome:
    import convtheory.theory as th

    m = table[table["experiment"] == "prediction_25_moments"].copy()
    s = table[table["experiment"] == "prediction_25_smoothing"]
    fails, checks = [], []
    # exact, per draw: the forward difference is exact for every delta
    fd = float(m["fd_dev"].max())
    checks.append(fd / FD25)
    if not fd <= FD25:
        r = m.loc[m["fd_dev"].idxmax()]
        fails.append(f"finite difference not exact: {fd:.2e} > {FD25:g} (p = {r['p']}, {r['estimator']})")
    # exact: theory.esj_mse agrees with problems.esj_moments
    cons = float((abs(m["mse_pred"] - m["mse_pred_moments"]) / m["mse_pred"]).max())
    if not cons <= 1e-10:
        fails.append(f"theory.esj_mse and problems.esj_moments disagree by {cons:.2e} (relative)")
    # exact within the Monte-Carlo CI: MSE, total MSE, mean
    m["z"] = (m["mse"] - m["mse_pred"]) / m["mse_se"]
    m["z_total"] = (m["total_mse"] - m["total_pred"]) / m["total_se"]
    za = np.abs(m["z"].to_numpy())
    zt = np.abs(m["z_total"].dropna().to_numpy())
    checks += list(za / Z25) + list(zt / Z25) + list(m["bias_stat"] / BIAS25)
    for _, r in m.iterrows():
        where = f"{r['estimator']}, p = {r['p']}, Q = {r['Q']}, seed {r['seed']}"
        if not abs(r["z"]) <= Z25:
            fails.append(f"MSE {r['mse']:.4g} vs exact {r['mse_pred']:.4g} ({r['z']:+.1f} s.e.; {where})")
        if math.isfinite(r["total_pred"]) and not abs(r["z_total"]) <= Z25:
            fails.append(f"total MSE {r['total_mse']:.4g} vs {r['total_pred']:.4g} ({r['z_total']:+.1f} s.e.; {where})")
        if not r["bias_stat"] <= BIAS25:
            fails.append(f"mean off the exact mean: R||m - E||^2/var = {r['bias_stat']:.2f} > {BIAS25:.2f} ({where})")
    # fitted: smoothing error O(delta) on a non-quadratic inner problem
    d_slopes = [_loglog_slope(g["delta"], g["smooth_err"]) for _, g in s.groupby("seed")]
    for sl in d_slopes:
        checks.append(abs(sl - 1.0) / SLOPE25_DELTA)
    if not d_slopes:
        fails.append("no smoothing runs")
    elif not max(abs(sl - 1.0) for sl in d_slopes) <= SLOPE25_DELTA:
        fails.append(f"smoothing error slope in delta {d_slopes} not within {SLOPE25_DELTA} of 1")
    # fitted: directions for MSE <= eps^2 ||a||^2 grow like p + 1
    gz = m[m["estimator"] == "gaussian"].assign(Q_eps=lambda t: np.ceil(t["Q"] * t["mse"] / t["a_norm"] ** 2 / EPS25**2))
    p_rows = []
    for Q, g in gz.groupby("Q"):
        per_p = g.groupby("p")["Q_eps"].mean()
        if len(per_p) >= 2:
            fitted, exact = _loglog_slope(per_p.index, per_p.values), th.esj_directions_slope(list(per_p.index))
            p_rows.append((int(Q), fitted, exact, int(per_p.index.min()), int(per_p.index.max())))
            checks.append(abs(fitted - exact) / SLOPE25_P)
            if not abs(fitted - exact) <= SLOPE25_P:
                fails.append(f"directions-for-target slope in p {fitted:.3f} vs exact {exact:.3f} (Q = {Q})")
    if not p_rows:
        fails.append("fewer than two dimensions p: the p-slope cannot be fitted")
    ratio = (m["mse"] / m["mse_pred"]).to_numpy()
    pslope = "; ".join(f"{f:.3f} (exact {e:.3f}, p {lo}-{hi}, Q = {q})" for q, f, e, lo, hi in p_rows)
    measured = (f"MSE/exact {ratio.min():.3f}-{ratio.max():.3f} (max |z| {za.max():.2f}) over {len(m)} "
                f"(law, p, Q) with R = {int(m['R'].max())}; FD identity dev {fd:.1e}; smoothing slope in delta "
                f"{', '.join(f'{v:.3f}' for v in d_slopes)}; Q_eps slope in p {pslope}")
    predicted = ("(p+1)||a||^2/Q gaussian, (p-1)||a||^2/Q sphere x p, (1-1/p)||a|| bias unscaled (esj_mse, esj_bias); "
                 f"FD exact; slope 1 in delta; slope of log(p+1) in p (-> 1, esj_complexity); |z| <= {Z25:g}")
    detail = ("; ".join(fails[:4]) + (f" (+{len(fails) - 4} more)" if len(fails) > 4 else "")) if fails else (
        f"all within {Z25:g} Monte-Carlo s.e.; the mean bias on non-quadratic g is O(delta^2) for symmetric "
        "directions (odd moments vanish), so the O(delta) measured is the per-draw smoothing error")
    return Outcome("fails" if fails else "holds", measured, predicted, worst_tightness=float(max(checks)),
                   median_tightness=float(np.median(za / Z25)), detail=detail)


# ============================================================================ item 26: hypergradient descent
FN26 = "experiments.predictions.esj_hd:run_sgd_hd"
TOL26 = 0.1  # |alpha_T / hd_freeze_step - 1| for runs whose predicted freeze point is <= FREEZE_LOW / L
IDENT26 = 1e-9  # relative residual of h_t = g^T H g (alpha_ls - alpha)
FREEZE_LOW, FREEZE_HIGH, R_LARGE = 0.5, 1.2, 4.0
FROZEN26 = 1e-6  # ||g_T|| / ||g_0|| and |alpha_T - alpha_{T/2}| / alpha_T below this: frozen
ROUNDOFF26 = 1e-5  # the identity is checked where ||g_t|| >= this times ||g_0|| (below, theta - theta* cancels)


def sgd_hd(H, theta_star, theta0, alpha0: float, beta_hyp: float, T: int, blowup: float = 1e8):
    """SGD-HD (Baydin et al., ICLR 2018; THEORY.md §12.1) on f(theta) = 1/2 (theta - theta*)^T H (theta - theta*):
    g_t = H(theta_t - theta*), a_t = a_{t-1} + beta_hyp g_t^T g_{t-1} (a_{-1} = alpha0, g_{-1} = 0),
    theta_{t+1} = theta_t - a_t g_t. Returns (a, G): the steps used, shape (n,), and the gradients g_0..g_{n-1},
    shape (n, d); stops early once ||g_t|| > blowup ||g_0|| or is not finite (n < T)."""
    import torch

    theta, g_prev, a = theta0.clone(), torch.zeros_like(theta0), float(alpha0)
    alphas, grads = [], []
    g0 = None
    for _ in range(T):  # sequential in t by nature
        g = H @ (theta - theta_star)
        n = float(torch.linalg.vector_norm(g))
        g0 = n if g0 is None else g0
        if not math.isfinite(n) or n > blowup * g0:
            break
        a = a + beta_hyp * float(g @ g_prev)
        alphas.append(a)
        grads.append(g)
        theta, g_prev = theta - a * g, g
    return torch.tensor(alphas, dtype=theta0.dtype), torch.stack(grads)


def run_sgd_hd(params: dict, seed: int) -> pd.DataFrame:
    """One SGD-HD run on a seeded quadratic (QuadraticTasks' support loss, spectrum in [mu, L] with both ends) from
    theta_0 = 0, with beta_hyp = r / (g_0^T H g_0) (so r is the initial relaxation rate of alpha); the HD identity
    residual, the final alpha against hd_freeze_step and the line-search range, freezing and oscillation."""
    import torch

    import convtheory.theory as th
    from convtheory.problems import QuadraticTasks

    d, mu, L, T, r = int(params["d"]), float(params["mu"]), float(params["L"]), int(params["T"]), float(params["r"])
    task = QuadraticTasks(d=d, mu=mu, L=L).sample(1, seed).exact
    H, ts = task["A"][0], task["a"][0]
    theta0 = torch.zeros_like(ts)
    g0 = H @ (theta0 - ts)
    beta = r / float(g0 @ H @ g0)
    f_gap = 0.5 * float((theta0 - ts) @ H @ (theta0 - ts))
    alpha0 = float(params["alpha0_L"]) / L
    a, G = sgd_hd(H, ts, theta0, alpha0, beta, T)
    n = len(a)
    # exact identity h_t = g_{t-1}^T H g_{t-1} (alpha_ls(g_{t-1}) - a_{t-1}), vectorised over t
    Gp, Gn = G[:-1], G[1:]
    q = torch.einsum("ti,ij,tj->t", Gp, H, Gp)
    gg = (Gp**2).sum(1)
    h = (Gn * Gp).sum(1)
    res = (h - (gg - a[:-1] * q)).abs() / (gg + a[:-1].abs() * q)
    above = gg.sqrt() >= ROUNDOFF26 * float(torch.linalg.vector_norm(G[0]))  # g = H(theta - theta*) loses digits
    ident = float(res[above].max()) if bool(above.any()) else 0.0
    Hn = H.numpy()
    for t in sorted({0, 1, 2, (n - 1) // 4}):  # the theory functions on a few steps
        if t + 1 < n and bool(above[t]):
            g_t, g_n = Gp[t].numpy(), Gn[t].numpy()
            step = th.hd_line_search_step(g_t, Hn)
            dev_h = abs(-th.hd_hypergradient(g_n, g_t) - th.hd_relaxation_rate(g_t, Hn, 1.0) * (step - float(a[t])))
            ident = max(ident, dev_h / (float(gg[t]) + abs(float(a[t])) * float(q[t])))
    diverged = n < T
    da = torch.diff(a)
    big = da.abs() > 1e-12 * a.abs().max().clamp_min(1e-300)
    dd = da[big]
    osc = float((torch.sign(dd[1:]) != torch.sign(dd[:-1])).double().mean()) if len(dd) > 2 else 0.0
    aT = float(a[-1])
    return pd.DataFrame([{
        "alpha0": alpha0, "r": r, "beta_hyp": beta, "f_gap": f_gap, "steps": n, "alpha_T": aT,
        "alpha_max": float(a.max()), "alpha_min": float(a.min()),
        "alpha_freeze_pred": th.hd_freeze_step(alpha0, beta, f_gap), "inv_L": 1.0 / L, "inv_mu": 1.0 / mu,
        "g_ratio": float(torch.linalg.vector_norm(G[-1]) / torch.linalg.vector_norm(G[0])),
        "late_move": abs(aT - float(a[n // 2])) / max(abs(aT), 1e-300), "oscillation": osc,
        "identity_dev": ident, "diverged": diverged}])


run_sgd_hd.version = version


def specs26(profile: str) -> list:
    if profile == "test":
        rs, a0s, seeds, T = [0.01, 0.05, 1.0, 10.0], [0.0, 0.1], (0,), 3000
    elif profile == "quick":
        rs, a0s, seeds, T = [0.003, 0.01, 0.05, 0.3, 1.0, 1.5, 10.0, 100.0], [0.0, 0.1], (0, 1), 4000
    else:
        rs = [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3, 0.5, 1.0, 1.5, 2.5, 3.0, 5.0, 10.0, 100.0]
        a0s, seeds, T = [0.0, 0.03, 0.1, 0.3], tuple(range(5)), 10000
    return grid("prediction_26", FN26, {"r": rs, "alpha0_L": a0s}, seeds=seeds,
                fixed={"d": 10, "mu": 0.1, "L": 1.0, "T": T})


def regime26(t: pd.DataFrame) -> pd.Series:
    """below: predicted freeze point <= FREEZE_LOW / L with r < 1; into: >= FREEZE_HIGH / L with r <= 1.5 (alpha's
    relaxation does not overshoot at the start); large: r >= R_LARGE (beta_hyp g^T H g > 2 at the start);
    between: the rest (reported, not judged)."""
    pred = t["alpha_freeze_pred"] / t["inv_L"]
    return pd.Series(np.select([(pred <= FREEZE_LOW) & (t["r"] < 1), (pred >= FREEZE_HIGH) & (t["r"] <= 1.5),
                                t["r"] >= R_LARGE], ["below", "into", "large"], "between"), index=t.index)


def judge26(table: pd.DataFrame, profile: str) -> Outcome:
    t = table.assign(regime=lambda x: regime26(x))
    fails, missing = [], [g for g in ("below", "into", "large") if not (t["regime"] == g).any()]
    ident = float(t["identity_dev"].max())
    if not ident <= IDENT26:
        fails.append(f"HD identity h_t = g^T H g (alpha_ls - alpha) off by {ident:.1e}")
    frozen = (t["g_ratio"] <= FROZEN26) & (t["late_move"] <= FROZEN26) & ~t["diverged"]
    b = t[t["regime"] == "below"].assign(ratio=lambda x: x["alpha_T"] / x["alpha_freeze_pred"])
    for _, r in b.iterrows():
        if not (abs(r["ratio"] - 1) <= TOL26 and frozen[r.name]):
            fails.append(f"below-range run (r = {r['r']:g}, alpha0 = {r['alpha0']:g}, seed {r['seed']}): alpha_T = "
                         f"{r['alpha_T']:.4g} vs freeze point {r['alpha_freeze_pred']:.4g}, frozen {bool(frozen[r.name])}")
    i = t[t["regime"] == "into"]
    for _, r in i.iterrows():
        if not (r["inv_L"] * (1 - 1e-9) <= r["alpha_T"] <= r["inv_mu"] * (1 + 1e-9) and frozen[r.name]):
            fails.append(f"run r = {r['r']:g}, alpha0 = {r['alpha0']:g}, seed {r['seed']}: alpha_T = "
                         f"{r['alpha_T']:.4g} not frozen in [1/L, 1/mu] = [{r['inv_L']:g}, {r['inv_mu']:g}]")
    lg = t[t["regime"] == "large"]
    wild = lg["diverged"] | (lg["oscillation"] >= 0.3) | (lg["alpha_min"] < 0)
    for _, r in lg[~wild].iterrows():
        fails.append(f"large r = {r['r']:g} (seed {r['seed']}) neither diverged nor oscillated")
    ratios = b["ratio"].to_numpy() if len(b) else np.array([np.nan])
    tight = np.abs(ratios - 1) / TOL26
    measured = (f"below 1/L: alpha_T / freeze point {np.nanmin(ratios):.3f}-{np.nanmax(ratios):.3f} "
                f"({len(b)} runs, alpha_T <= {b['alpha_T'].max() if len(b) else math.nan:.3g} L^-1); into: "
                f"alpha_T L in {i['alpha_T'].min() / i['inv_L'].min() if len(i) else math.nan:.3g}-"
                f"{i['alpha_T'].max() / i['inv_L'].min() if len(i) else math.nan:.3g} ({len(i)} runs); large r: "
                f"{int(wild.sum())}/{len(lg)} diverged or oscillated; HD identity dev {ident:.1e}")
    predicted = ("alpha_T = sqrt(alpha0^2 + 2 beta_hyp (f0 - f*)) (hd_freeze_step) when below 1/L, else in [1/L, 1/mu] "
                 "(hd_line_search_step); oscillation/divergence for beta_hyp g^T H g > 2 (hd_relaxation_rate); "
                 f"h_t = g^T H g (alpha_ls - alpha) exactly; tol {TOL26:g}")
    lit = (f"THEORY.md §14 item 26's 'drifts into [1/L, 1/mu]' holds only once beta_hyp (f0 - f*) reaches ~1/(2L^2): "
           f"{len(b)} small-beta_hyp runs froze below 1/L, at the predicted point")
    if fails:
        verdict, detail = "fails", "; ".join(fails[:3]) + (f" (+{len(fails) - 3} more)" if len(fails) > 3 else "")
    elif missing:
        verdict, detail = "inconclusive", f"no run in regime(s) {', '.join(missing)} at this profile; {lit}"
    else:
        verdict, detail = "holds", lit
    return Outcome(verdict, measured, predicted, worst_tightness=float(np.nanmax(np.append(tight, ident / IDENT26))),
                   median_tightness=float(np.nanmedian(tight)), detail=detail)


# ================================================================================ item 27: Alpha-MAML
FN27 = "experiments.predictions.esj_hd:run_alpha_maml_rate"
IDENT27 = 1e-10  # relative residual of alpha_{t+1} - alpha*_t = (1 - eta c_t)(alpha_t - alpha*_t)


def alpha_maml_curvature(theta, ex) -> float:
    """c(theta) = E_i[g_i^T C_i g_i], g_i = A_i(theta - a_i): the curvature of the one-step post-adaptation loss in
    alpha (THEORY.md §14 item 27 [derived]); numpy, tasks batched."""
    g = np.einsum("bij,bj->bi", ex["A"], theta - ex["a"])
    return float(np.mean(np.einsum("bi,bij,bj->b", g, ex["C"], g)))


def run_alpha_maml_rate(params: dict, seed: int) -> pd.DataFrame:
    """The library's alpha-maml solver (N = 1, full batch) stepped by hand with the seeds ``solvers.run`` derives,
    recording theta_t: per iteration alpha_t, alpha*(theta_t) (theory.alpha_maml_optimal_step), c_t and the
    residual of the exact update; plus the Traces of ``solvers.run`` for maml and alpha-maml with the same settings
    (their cumulative oracle counts per iteration and the Trace's alpha, which must equal the hand-stepped one)."""
    import torch

    import convtheory.theory as th
    from convtheory.problems import QuadraticTasks
    from convtheory.solvers import SOLVERS, Budget, Sampling, run
    from convtheory.solvers.sources import MetaSource, subseeds

    fam = QuadraticTasks(d=int(params["d"]), mu=float(params["mu"]), L=float(params["L"]), query="independent",
                         query_shift=float(params["query_shift"]))
    B, K, eta = int(params["B"]), int(params["iterations"]), float(params["eta_alpha"])
    common = dict(alpha=float(params["alpha0"]), beta=float(params["beta0"]), N=1, sampling=Sampling(B=B))
    solver = SOLVERS["alpha-maml"](**common, eta_alpha=eta, eta_beta=float(params["eta_beta"]))
    source_seed, init_seed, step_seed = subseeds(seed, 3)
    src = MetaSource(fam, solver.sampling, source_seed, 1)
    state = solver.init(src, init_seed)
    ex = {k: src.pool.exact[k].numpy().astype(np.float64) for k in ("A", "a", "C", "b")}
    gen = torch.Generator().manual_seed(step_seed)
    rows = []
    for k in range(K + 1):
        th_k = state.theta.numpy().astype(np.float64)
        ok = bool(np.all(np.isfinite(th_k))) and float(np.abs(th_k).max()) < 1e6
        a_k = float(state.alpha)
        a_star = th.alpha_maml_optimal_step(th_k, ex["A"], ex["a"], ex["C"], ex["b"]) if ok else math.nan
        c_k = alpha_maml_curvature(th_k, ex) if ok else math.nan
        row = {"iteration": k, "alpha": a_k, "alpha_star": a_star, "curvature": c_k, "gap": abs(a_k - a_star),
               "identity_dev": math.nan, "clamped": False, "diverged": not ok}
        rows.append(row)
        if not ok or k == K:
            break
        state, _ = solver.step(state, src, gen)
        a_n = float(state.alpha)
        row["identity_dev"] = abs((a_n - a_star) - (1 - eta * c_k) * (a_k - a_star)) / (abs(a_k) + abs(a_star) + abs(a_n))
        row["clamped"] = a_n <= solver.alpha_min
    out = pd.DataFrame(rows)
    traces = {name: run(SOLVERS[name](**common, **extra), fam, Budget(iterations=K), seed, eval_every=K, eval_tasks=B)
              for name, extra in (("maml", {}), ("alpha-maml", {"eta_alpha": eta, "eta_beta": float(params["eta_beta"])}))}
    for name, tr in traces.items():
        key = "maml" if name == "maml" else "am"
        tr = tr.set_index("iteration")
        for col in ("oracle_grad", "oracle_hvp", "oracle_jvp", "oracle_fn"):
            out[f"{key}_{col}"] = out["iteration"].map(tr[col])
        if name == "alpha-maml":
            out["trace_alpha"] = out["iteration"].map(tr["alpha"])
    out["B"] = B
    return out


run_alpha_maml_rate.version = version + 1  # 2: alpha-maml charges exactly MAML's oracles


def specs27(profile: str) -> list:
    from experiments import alpha_maml as am

    fixed = {"d": 5, "mu": 0.1, "L": 1.0, "B": 8, "query_shift": 0.5, "eta_beta": 0.05}
    if profile == "test":
        axes, seeds, K = {"alpha0": [0.3, 1.2], "beta0": [0.5], "eta_alpha": [0.05]}, (0,), 40
        reuse = am.specs("test")
    elif profile == "quick":
        axes, seeds, K = {"alpha0": [0.05, 1.25], "beta0": [0.5], "eta_alpha": [0.2]}, (0,), 150
        reuse = [s for s in am.specs("quick") if s.params["alpha0"] in (0.05, 1.25) and s.params["beta0"] == 1.0
                 and s.seed in (0, 1)]
    else:
        axes, seeds, K = {"alpha0": [0.05, 0.5, 1.25], "beta0": [0.2, 1.0], "eta_alpha": [0.05, 0.2]}, (0, 1, 2), 500
        reuse = am.specs("full")
    return grid("prediction_27", FN27, axes, seeds=seeds, fixed={**fixed, "iterations": K}) + reuse


def judge27(table: pd.DataFrame, profile: str) -> Outcome:
    from experiments import alpha_maml as am

    mine = table[table["experiment"] == "prediction_27"]
    fails, notes = [], []
    ok_rows = mine[~mine["clamped"].astype(bool) & mine["identity_dev"].notna()]
    ident = float(ok_rows["identity_dev"].max()) if len(ok_rows) else math.nan
    if not ident <= IDENT27:
        fails.append(f"alpha update is not the exact step toward alpha*(theta_t): residual {ident:.1e}")
    trace_dev = float((mine["alpha"] - mine["trace_alpha"]).abs().max())
    if not trace_dev <= 1e-12:
        fails.append(f"hand-stepped alpha differs from solvers.run's Trace by {trace_dev:.1e}")
    # drift toward alpha*(theta_t): the gap at the end is below the gap at the start, every non-diverged run
    runs = [(k, g.sort_values("iteration")) for k, g in mine.groupby(["alpha0", "beta0", "eta_alpha", "seed"])]
    gaps = [(k, g["gap"].iloc[0], g["gap"].iloc[-1]) for k, g in runs if not g["diverged"].any()]
    exp = table[table["experiment"] == "alpha_maml"]
    if len(exp):
        r = am.reach(exp)
        r = r[(r["method"] == "alpha-maml") & ~r["diverged"]]
        gaps += [((a0, b0, "exp", s), g0, gT) for a0, b0, s, g0, gT in
                 zip(r["alpha0"], r["beta0"], r["seed"], r["gap0"], r["gapT"])]
    judged = [(k, g0, gT) for k, g0, gT in gaps if g0 > 1e-3]
    ratios = np.array([gT / g0 for _, g0, gT in judged]) if judged else np.array([np.nan])
    for k, g0, gT in judged:
        if not gT <= g0:
            fails.append(f"alpha moved away from alpha*(theta): gap {g0:.3g} -> {gT:.3g} at {k}")
    eta_c = float((mine["eta_alpha"] * mine["curvature"]).max())
    # oracle counts at equal iterations (seed 003: Alpha-MAML needs no extra gradient evaluations)
    last = mine.dropna(subset=["maml_oracle_grad", "am_oracle_grad"]).sort_values("iteration").groupby(
        ["alpha0", "beta0", "eta_alpha", "seed"]).tail(1)
    diffs = {c: (last[f"am_oracle_{c}"] - last[f"maml_oracle_{c}"]).to_numpy() for c in ("grad", "hvp", "jvp", "fn")}
    extra_per_step = (diffs["grad"] / (last["iteration"] * last["B"]).clip(lower=1)).to_numpy()
    if any(np.any(d != 0) for d in diffs.values()):
        bad = {c: sorted(set(int(v) for v in d)) for c, d in diffs.items() if np.any(d != 0)}
        fails.append(f"oracle counts differ at equal iterations (alpha-maml - maml: {bad}; "
                     f"{sorted(set(float(v) for v in extra_per_step))} extra gradients per task per iteration): the "
                     "library's AlphaMAML.step evaluates grad l^D_i(theta'_i) and grad l^S_i(theta) again although "
                     "MAML's own pass computes both (convtheory/solvers/meta.py, AlphaMAML.step), so seed 003's "
                     "'no extra gradient computations' does not hold for this implementation")
    if not judged:
        notes.append("no non-diverged run with an initial gap > 1e-3")
    measured = (f"alpha update residual {ident:.1e}; gap_T / gap_0 {np.nanmax(ratios):.3g} worst, "
                f"{np.nanmedian(ratios):.3g} median over {len(judged)} runs (max eta c = {eta_c:.3g}); extra "
                f"oracle_grad of alpha-maml over maml at equal iterations: {sorted(set(int(v) for v in diffs['grad']))}")
    predicted = ("alpha_{t+1} - alpha*(theta_t) = (1 - eta c_t)(alpha_t - alpha*(theta_t)) (alpha_maml_optimal_step), "
                 f"so gap_T < gap_0 while eta c < 2; oracle counts equal to MAML's (seed 003); residual <= {IDENT27:g}")
    if fails:
        verdict = "fails"
        detail = "; ".join(fails[:3]) + (f" (+{len(fails) - 3} more)" if len(fails) > 3 else "")
        if not any("alpha" in f and "oracle" not in f for f in fails):
            detail = "the alpha fixed-point parts hold (exact update, gap shrinks); " + detail
    elif notes:
        verdict, detail = "inconclusive", "; ".join(notes)
    else:
        verdict, detail = "holds", "alpha tracks alpha*(theta_t) by the exact relaxation; oracle counts equal"
    return Outcome(verdict, measured, predicted, worst_tightness=float(np.nanmax(ratios)),
                   median_tightness=float(np.nanmedian(ratios)), detail=detail)


PREDICTIONS = [
    Prediction(25, "ESJ on quadratic g: FD exact for all delta; unbiased for ITD with MSE (p+1)||a||^2/Q (Gaussian), "
               "(p-1)||a||^2/Q (sphere x p), mean shrunk by 1/p unscaled; O(delta) smoothing error otherwise; "
               "directions for a target grow like p",
               experiment="prediction_25_moments, prediction_25_smoothing",
               theory="convtheory.theory.esj:esj_mse", source="Sow, Ji, Liang (arXiv 2110.07004); THEORY.md §1.3, "
               "§11, §14 item 25 [derived]; seed 000 for O(p eps^-2 log 1/eps)", constants="exact", tolerance=Z25,
               specs=specs25, judge=judge25),
    Prediction(26, "SGD-HD on a quadratic: h_t = g^T H g (alpha_ls - alpha); small beta_hyp: alpha freezes at "
               "sqrt(alpha0^2 + 2 beta_hyp Df) below 1/L, in [1/L, 1/mu] above; large beta_hyp g^T H g: "
               "oscillates or diverges", experiment="prediction_26",
               theory="convtheory.theory.hd:hd_line_search_step", source="Baydin et al. (ICLR 2018); THEORY.md "
               "§12.1, §14 item 26 [derived]; freeze point derived here (hd_freeze_step)", constants="fitted",
               tolerance=TOL26, specs=specs26, judge=judge26),
    Prediction(27, "Alpha-MAML (N = 1, quadratic tasks): the alpha update is the exact step toward alpha*(theta_t) "
               "= E[g_S^T C(theta - b)] / E[g_S^T C g_S], so alpha_t tracks it; no extra oracle calls over MAML",
               experiment="prediction_27, alpha_maml", theory="convtheory.theory.hd:alpha_maml_optimal_step",
               source="Behl, Baydin, Torr (2019); THEORY.md §12.2, §14 item 27 [derived]; seed 003 for the "
               "oracle claim", constants="fitted", tolerance=IDENT27, specs=specs27, judge=judge27),
]
