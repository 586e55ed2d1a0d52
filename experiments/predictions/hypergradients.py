"""Predictions 17-22: hypergradient errors of ITD and AID on bilevel problems (THEORY.md §9-10, §14)."""

from __future__ import annotations

from dataclasses import dataclass

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


# ==================================================================================================== shared
def _norm(t) -> float:
    import torch

    return float(torch.linalg.vector_norm(t))


def _fit_rate(N, err, log_prefactor: bool) -> tuple[float, float]:
    """Least-squares fit of log err = a (+ c log N) + N log q_hat; returns (log q_hat, c) (c = 0 without prefactor).

    With ``log_prefactor`` the model has Grazzi's polynomial prefactor (c1 + c2 N) ~ N^c at large N, so the fitted
    log q_hat is not biased by it (THEORY.md §14 item 18)."""
    import numpy as np

    N, y = np.asarray(N, np.float64), np.log(np.asarray(err, np.float64))
    cols = [np.ones_like(N), N] + ([np.log(N)] if log_prefactor else [])
    coef, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y, rcond=None)
    return float(coef[1]), float(coef[2]) if log_prefactor else 0.0


# ============================================================================== a smooth non-quadratic problem
@dataclass(frozen=True)
class LogCoshBilevel:
    """A small smooth bilevel problem whose inner Hessian moves with y, with every constant computable.

    .. math:: g(x,y)=\\tfrac12y^\\top Hy+s\\sum_j\\log\\cosh y_j-y^\\top(Bx+b),\\qquad
              f(x,y)=\\tfrac12\\|y-\\bar y\\|^2+\\tfrac\\gamma2\\|x\\|^2,

    H with eigenvalues in [mu, L] (``spectrum`` as :class:`~convtheory.problems.QuadraticBilevel`, whose data it
    reuses: same seed, same H, B, b, ybar, x0, y0). :math:`\\nabla^2_yg=K(y)=H+s\\,\\mathrm{diag}(\\mathrm{sech}^2y)`,
    so: mu_g = mu (certified: sech^2 >= 0; the infimum over y), L_g = L + s (certified), rho = s 4/(3 sqrt 3)
    exact (sup |d sech^2/dy|), tau = 0 exact (:math:`\\partial_x\\nabla_yg=-B` constant), Lxy = ||B|| exact, and
    the joint Lipschitz constant of (grad f, grad g) of Ji et al. is at most max(L + s + ||B||, 1, gamma).
    Not quadratic: Jacobians change along the inner path, which is what gives ITD its N q^N term (THEORY.md §9,
    §14 items 18, 22). |y| must stay below ~700 (log cosh overflows); the data are O(1).
    """

    p: int = 5
    q: int = 10
    mu: float = 0.2
    L: float = 1.0
    s: float = 1.0
    gamma: float = 0.1
    b_scale: float = 0.5
    spectrum: str = "uniform"

    def build(self, seed: int):
        """Problem with ``f, g, x0, y0``, the exact ``y_star`` and ``hypergradient`` (damped Newton, dense solve)
        and ``extra``: H, B, b, ybar, gamma, s and the constants above."""
        import math

        import torch

        from convtheory.problems import QuadraticBilevel
        from convtheory.problems.base import BilevelProblem
        from convtheory.types import Constants, check_positive

        s = check_positive("s", self.s, allow_zero=True)
        base = QuadraticBilevel(p=self.p, q=self.q, mu=self.mu, L=self.L, gamma=self.gamma,
                                b_scale=self.b_scale, spectrum=self.spectrum).build(seed)
        H, B, b, ybar, gamma = (base.extra[k] for k in ("H", "B", "b", "ybar", "gamma"))

        def g(x, y):
            """0.5 y^T H y + s sum log cosh y - y^T (B x + b)."""
            return 0.5 * (y * (y @ H)).sum(-1) + s * torch.log(torch.cosh(y)).sum(-1) - (y * (x @ B.T + b)).sum(-1)

        f = base.f
        y0 = base.y0

        def y_star(x):
            """argmin_y g(x, y): damped Newton with the closed-form gradient and Hessian (float64)."""
            return logcosh_newton(H, s, x @ B.T + b, y0)

        def exact(x):
            """gamma x + B^T K(y*)^{-1} (y* - ybar), the implicit-function hypergradient (d_x grad_y g = -B)."""
            ys = y_star(x)
            K = H + s * torch.diag(1.0 / torch.cosh(ys) ** 2)
            return gamma * x + torch.linalg.solve(K, ys - ybar) @ B

        Bn = float(torch.linalg.matrix_norm(B, ord=2))
        rho = s * 4.0 / (3.0 * math.sqrt(3.0))
        consts = Constants(L=float(self.L) + s, mu=float(self.mu), rho=rho, tau=0.0,
                           exact=frozenset({"rho", "tau"}),
                           extra={"Lxy": Bn, "L_joint": max(float(self.L) + s + Bn, 1.0, gamma)})
        return BilevelProblem(f=f, g=g, x0=base.x0, y0=base.y0, constants=consts,
                              y_star=y_star, hypergradient=exact,
                              extra={"H": H, "B": B, "b": b, "ybar": ybar, "gamma": gamma, "s": s})


def logcosh_newton(H, s: float, c, y0, tol: float = 1e-14, max_iter: int = 50):
    """Minimiser of 0.5 y^T H y + s sum log cosh y - y^T c by Newton's method with step halving.

    Gradient H y + s tanh y - c, Hessian H + s diag(sech^2 y) (SPD); stops when the gradient norm falls below
    tol times its initial value or stops decreasing. Exact to round-off (the problem is mu-strongly convex)."""
    import torch

    def grad_g(y):
        return y @ H + s * torch.tanh(y) - c

    y, gr = y0, grad_g(y0)
    g0 = float(torch.linalg.vector_norm(gr))
    gn = g0
    for _ in range(max_iter):
        if gn <= tol * g0:
            break
        step = torch.linalg.solve(H + s * torch.diag(1.0 / torch.cosh(y) ** 2), gr)
        t = 1.0
        for _ in range(40):
            y_new = y - t * step
            g_new = grad_g(y_new)
            n_new = float(torch.linalg.vector_norm(g_new))
            if n_new < gn:
                break
            t *= 0.5
        else:
            break
        y, gr, gn = y_new, g_new, n_new
    return y


def logcosh_inner_hessian(prob, y):
    """K(y) = H + s diag(sech^2 y), the exact Hessian of g in y of :class:`LogCoshBilevel` (dense, (q, q))."""
    import torch

    return prob.extra["H"] + prob.extra["s"] * torch.diag(1.0 / torch.cosh(y) ** 2)


def logcosh_phi_hessian(prob, x):
    """Exact Hessian of Phi(x) = f(x, y*(x)) on :class:`LogCoshBilevel` (derived by implicit differentiation):

    :math:`\\nabla^2\\Phi=\\gamma I+B^\\top K^{-1}(I-s\\,\\mathrm{diag}(h'(y^*)\\odot w))K^{-1}B`, :math:`K=K(y^*)`,
    :math:`w=K^{-1}(y^*-\\bar y)`, :math:`h'(y)=-2\\,\\mathrm{sech}^2y\\tanh y` (THEORY.md §14 item 22, exact)."""
    import torch

    ys = prob.y_star(x)
    K = logcosh_inner_hessian(prob, ys)
    B, s = prob.extra["B"], prob.extra["s"]
    w = torch.linalg.solve(K, ys - prob.extra["ybar"])
    hp = -2.0 * torch.tanh(ys) / torch.cosh(ys) ** 2
    KB = torch.linalg.solve(K, B)
    mid = torch.eye(K.shape[0], dtype=K.dtype) - s * torch.diag(hp * w)
    Hphi = prob.extra["gamma"] * torch.eye(B.shape[1], dtype=B.dtype) + KB.T @ mid @ KB
    return 0.5 * (Hphi + Hphi.T)


# ============================================================================================== item 17
FN17 = "experiments.predictions.hypergradients:run_itd_quadratic"


def run_itd_quadratic(params: dict, seed: int) -> pd.DataFrame:
    """Item 17 on one quadratic bilevel problem: for each N the library's itd minus the exact hypergradient,
    against ``theory.itd_error_quadratic`` (the vector) and ``theory.itd_error_bound_quadratic`` (constant
    prefactor, rate q^N)."""
    import numpy as np

    from convtheory.hypergrad import hypergradient
    from convtheory.problems import QuadraticBilevel
    from convtheory.theory import itd_error_bound_quadratic, itd_error_quadratic
    from convtheory.theory.quadratic import gd_contraction

    kappa = float(params["kappa"])
    fam = QuadraticBilevel(p=int(params["p"]), q=int(params["q"]), mu=1.0 / kappa, L=1.0)
    prob = fam.build(seed)
    alpha = float(params["alpha_L"]) / fam.L
    x, y0 = prob.x0, prob.y0
    exact = prob.hypergradient(x)
    scale = _norm(exact)
    npy = {k: prob.extra[k].numpy() for k in ("H", "B", "b", "ybar")}
    ystar = prob.y_star(x)
    rows = []
    for N in params["Ns"]:
        hg, info = hypergradient(prob.f, prob.g, x, y0, method="itd", inner_steps=int(N), inner_lr=alpha)
        meas = (hg - exact).numpy()
        pred = itd_error_quadratic(alpha, int(N), npy["H"], npy["B"], y0.numpy(), x.numpy(), npy["b"],
                                   npy["ybar"])
        bound = itd_error_bound_quadratic(alpha, int(N), fam.mu, fam.L, float(prob.constants.extra["Lxy"]),
                                          _norm(y0 - ystar), _norm(info.inner - prob.extra["ybar"]))
        rows.append({"N": int(N), "alpha": alpha, "rate_q": gd_contraction(alpha, fam.mu, fam.L), "scale": scale,
                     "error": float(np.linalg.norm(meas)), "predicted": float(np.linalg.norm(pred)),
                     "vector_dev": float(np.linalg.norm(meas - pred)), "bound": float(bound)})
    return pd.DataFrame(rows)


run_itd_quadratic.version = version


def specs17(profile: str) -> list:
    Ns = {"test": [0, 1, 5, 10, 20, 40], "quick": [0, 1, 2, 5, 10, 20, 40, 80, 120],
          "full": [0, 1, 2, 5, 10, 20, 40, 80, 120, 200, 300]}[profile]
    kappas = {"test": [10.0], "quick": [10.0, 100.0], "full": [10.0, 100.0, 1000.0]}[profile]
    seeds = {"test": (0,), "quick": (0, 1, 2), "full": tuple(range(10))}[profile]
    return grid("prediction_17", FN17, {"kappa": kappas, "alpha_L": [0.5, 1.0]}, seeds=seeds,
                fixed={"p": 5, "q": 10, "Ns": Ns})


TOL17 = 1e-8  # relative, on the error vector
ATOL17 = 1e-12  # absolute, in units of ||grad Phi||: the round-off of two O(||grad Phi||) hypergradients


def checks17(table: pd.DataFrame) -> dict:
    """The two exact checks of item 17: the error vector equals the closed form up to
    TOL17 ||e_pred|| + ATOL17 ||grad Phi|| (``scaled`` = deviation over that, must be <= 1; ``dev`` = relative
    deviation where the prediction is far above round-off), and its norm stays below the constant-prefactor bound
    (``ratio``)."""
    scaled = table["vector_dev"] / (TOL17 * table["predicted"] + ATOL17 * table["scale"])
    far = table["predicted"] > 1e-6 * table["scale"]
    return {"scaled": scaled, "dev": (table["vector_dev"] / table["predicted"])[far],
            "ratio": table["error"] / table["bound"]}


def judge17(table: pd.DataFrame, profile: str) -> Outcome:
    c = checks17(table)
    scaled, dev, ratio = c["scaled"], c["dev"], c["ratio"]
    ok_dev = bool((scaled <= 1.0).all())
    ok_bound = bool((ratio <= 1.0 + 1e-12).all())
    verdict = "holds" if ok_dev and ok_bound else "fails"
    if not ok_dev:
        i = scaled.idxmax()
        detail = (f"error vector off the closed form by {table.loc[i, 'vector_dev']:.2e} (||e_pred|| = "
                  f"{table.loc[i, 'predicted']:.2e}, ||grad Phi|| = {table.loc[i, 'scale']:.3g}) at N = "
                  f"{int(table.loc[i, 'N'])}, kappa = {table.loc[i, 'kappa']:g}, seed {int(table.loc[i, 'seed'])}")
    elif not ok_bound:
        i = ratio.idxmax()
        detail = (f"||e|| exceeds (||B||/mu) q^N (...) by x{ratio.max():.4g} at N = {int(table.loc[i, 'N'])}, "
                  f"kappa = {table.loc[i, 'kappa']:g}")
    else:
        detail = (f"vector identity within {TOL17:g} ||e_pred|| + {ATOL17:g} ||grad Phi|| at all {len(table)} points "
                  f"(relative {dev.max():.1e} where ||e_pred|| > 1e-6 ||grad Phi||); ||e|| / bound <= "
                  f"{ratio.max():.3g} (a constant prefactor times q^N: no N factor)")
    return Outcome(verdict,
                   measured=f"max ||e_meas - e_pred|| / ||e_pred|| = {dev.max():.2e} (||e_pred|| > 1e-6 ||grad Phi||); "
                            f"max ||e|| / bound {ratio.max():.3g}",
                   predicted="e_ITD = B^T H^-1 P^N [(y0 - y*) - (y_N - ybar)] exactly; "
                             "||e|| <= (||B||/mu) q^N (||y0 - y*|| + ||y_N - ybar||)",
                   worst_tightness=float(scaled.max()), median_tightness=float(scaled.median()), detail=detail)


# ============================================================================================== item 18
FN18 = "experiments.predictions.hypergradients:run_itd_logcosh"


def run_itd_logcosh(params: dict, seed: int) -> pd.DataFrame:
    """Item 18 on one :class:`LogCoshBilevel` problem: for each N the library's itd error against the exact
    hypergradient (Newton + dense solve), next to Ji et al.'s closed form (``theory.itd_error_bound``), the
    Grazzi-shape bound with explicit constants (``theory.itd_error_bound_explicit``), the certified
    q = 1 - alpha mu and the local rate q* = 1 - alpha lambda_min(K(y*)) that the error tends to."""
    import torch

    from convtheory.hypergrad import hypergradient
    from convtheory.theory import itd_error_bound, itd_error_bound_explicit

    fam = LogCoshBilevel(p=int(params["p"]), q=int(params["q"]), mu=float(params["mu"]), s=float(params["s"]),
                         b_scale=float(params["b_scale"]))
    prob = fam.build(seed)
    c = prob.constants
    L_joint = float(c.extra["L_joint"])
    alpha = float(params["alpha_L"]) / L_joint  # alpha <= 1/L (Ji et al.) and <= 1/L_g
    x, y0 = prob.x0, prob.y0
    exact, ystar = prob.hypergradient(x), prob.y_star(x)
    scale = _norm(exact)
    dist0 = _norm(y0 - ystar)
    # ||y_t - y*|| <= ||y0 - y*|| along GD, so ||grad_y f(y_t)|| = ||y_t - ybar|| <= ||y* - ybar|| + dist0 =: M
    M = _norm(ystar - prob.extra["ybar"]) + dist0
    lam_star = torch.linalg.eigvalsh(logcosh_inner_hessian(prob, ystar))
    rows = []
    for N in params["Ns"]:
        hg, _ = hypergradient(prob.f, prob.g, x, y0, method="itd", inner_steps=int(N), inner_lr=alpha)
        ji = itd_error_bound(alpha, int(N), L_joint, c.mu, M, c.tau, c.rho, dist0)
        expl = itd_error_bound_explicit(alpha, int(N), c.mu, c.L, c.rho, c.tau, c.extra["Lxy"], M, 1.0, dist0)
        rows.append({"N": int(N), "alpha": alpha, "scale": scale, "error": _norm(hg - exact),
                     "ji_bound": float(ji), "explicit_bound": float(expl), "rate_q": 1.0 - alpha * c.mu,
                     "rate_q_star": 1.0 - alpha * float(lam_star[0]), "M": M, "dist0": dist0})
    return pd.DataFrame(rows)


run_itd_logcosh.version = version


def specs18(profile: str) -> list:
    Ns = {"test": [0, 1, 2, 5, 10, 20, 30, 40, 50, 60],
          "quick": [0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100, 120],
          "full": [0, 1, 2, 5, 10, 20, 30, 40, 50, 60, 80, 100, 120, 150, 200]}[profile]
    seeds = {"test": (0,), "quick": (0, 1, 2), "full": tuple(range(10))}[profile]
    return grid("prediction_18", FN18, {"alpha_L": [1.0]}, seeds=seeds,
                fixed={"p": 5, "q": 10, "mu": 0.2, "s": 1.0, "b_scale": 0.5, "Ns": Ns})


TOL18 = 0.1  # relative tolerance on the fitted log-rate vs log q*
FLOOR18 = 1e-10  # relative errors below this are at the exact oracle's round-off and are not fitted
NMIN18 = 20  # the tail used for the rate fit (earlier, faster modes and transients bias it)


def checks18(table: pd.DataFrame) -> dict:
    """Bound ratios (must be <= 1) and, per seed, the fitted log-rate (with an N^c prefactor) over the tail
    N >= NMIN18 against log q*."""
    import numpy as np

    fits = []
    for seed, g in table.groupby("seed"):
        t = g[(g["N"] >= NMIN18) & (g["error"] > FLOOR18 * g["scale"])]
        if len(t) < 4:
            continue
        lq, cexp = _fit_rate(t["N"], t["error"], True)
        lq_plain, _ = _fit_rate(t["N"], t["error"], False)
        lstar = float(np.log(t["rate_q_star"].iloc[0]))
        fits.append({"seed": seed, "log_q_hat": lq, "log_q_plain": lq_plain, "log_q_star": lstar,
                     "log_q": float(np.log(t["rate_q"].iloc[0])), "prefactor_exp": cexp,
                     "rel_dev": abs(lq / lstar - 1.0), "points": len(t)})
    return {"ji": table["error"] / table["ji_bound"], "explicit": table["error"] / table["explicit_bound"],
            "fits": pd.DataFrame(fits)}


def judge18(table: pd.DataFrame, profile: str) -> Outcome:
    c = checks18(table)
    ji, ex, fits = c["ji"], c["explicit"], c["fits"]
    measured = f"max error / Ji bound {ji.max():.3g}, / explicit (c1 + c2 N) q^N {ex.max():.3g}"
    predicted = "error <= Ji et al. closed form and <= (c1 + c2 N) q^N; fitted rate -> q* = 1 - alpha lambda_min(K*)"
    if len(fits):
        r = fits["log_q_hat"] / fits["log_q_star"]
        measured += (f"; fitted log q_hat / log q* = {r.min():.3f}..{r.max():.3f} (plain slope ratio "
                     f"{(fits['log_q_plain'] / fits['log_q_star']).median():.3f}, prefactor N^"
                     f"{fits['prefactor_exp'].median():.2f})")
    if (ji > 1.0).any() or (ex > 1.0).any():
        which, r = ("Ji et al.", ji) if ji.max() > 1.0 else ("explicit Grazzi", ex)
        i = r.idxmax()
        verdict = "fails"
        detail = (f"error above the {which} bound by x{r.max():.4g} at N = {int(table.loc[i, 'N'])}, "
                  f"seed {int(table.loc[i, 'seed'])}")
    elif not len(fits):
        verdict, detail = "inconclusive", (f"bounds hold; fewer than 4 points with N >= {NMIN18} above round-off "
                                           "for the rate fit")
    elif fits["rel_dev"].max() > TOL18:
        r = fits.loc[fits["rel_dev"].idxmax()]
        verdict = "fails"
        detail = (f"bounds hold; fitted log-rate {r['log_q_hat']:.4g} vs log q* = {r['log_q_star']:.4g} "
                  f"(rel. dev. {r['rel_dev']:.3f} > {TOL18}) at seed {int(r['seed'])}")
    else:
        verdict = "holds"
        detail = (f"bounds hold (Ji tightness <= {ji.max():.2g}, explicit <= {ex.max():.2g}); fitted log-rate "
                  f"within {fits['rel_dev'].max():.3f} of log q* over {len(fits)} seed(s); certified q = "
                  f"{table['rate_q'].iloc[0]:.4f} vs local q* = {table['rate_q_star'].median():.4f}")
    return Outcome(verdict, measured=measured, predicted=predicted, worst_tightness=float(ji.max()),
                   median_tightness=float(ji.median()), detail=detail)


# ============================================================================================== item 20
FN20 = "experiments.predictions.hypergradients:run_linsolve_steps"


def _steps_to_eps(rel_error, eps: float, limit: int) -> int:
    """Smallest Q in [0, limit] with rel_error(Q) <= eps for a non-increasing rel_error (doubling, then
    bisection: O(log limit) calls); limit + 1 if none. CG's Euclidean error decreases with Q (Hestenes-Stiefel)."""
    if rel_error(0) <= eps:
        return 0
    lo, hi = 0, 1
    while rel_error(hi) > eps:
        lo, hi = hi, 2 * hi
        if lo > limit:
            return limit + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if rel_error(mid) > eps else (lo, mid)
    return hi


def _fp_steps_to_eps(matvec, rhs, v_star, eta, eps: float, limit: int) -> int:
    """Smallest Q with ||v_Q - v*|| <= eps ||v*|| for the library's fixed-point solver, in O(Q) matvecs.

    Richardson is linear, so Q + k steps from 0 equal Q steps followed by k steps on the residual system
    :math:`A\\delta=b-Av_Q` from 0: doubling and bisection continue from the last point below the answer instead of
    restarting (the error (I - eta A)^Q v* is non-increasing for eta <= 1/L)."""
    import torch

    from convtheory.hypergrad import linsolve

    vn = float(torch.linalg.vector_norm(v_star))

    def advance(v, Q, k):
        return v + linsolve.fixed_point(matvec, rhs - matvec(v), k, eta), Q + k

    def bad(v):
        return float(torch.linalg.vector_norm(v - v_star)) > eps * vn

    v_lo, lo = torch.zeros_like(rhs), 0
    if not bad(v_lo):
        return 0
    step = 1
    v_hi, hi = advance(v_lo, lo, step)
    while bad(v_hi):
        if hi > limit:
            return limit + 1
        v_lo, lo = v_hi, hi
        step *= 2
        v_hi, hi = advance(v_lo, lo, step)
    while hi - lo > 1:
        v_mid, mid = advance(v_lo, lo, (hi - lo) // 2)
        if bad(v_mid):
            v_lo, lo = v_mid, mid
        else:
            hi = mid
    return hi


def run_linsolve_steps(params: dict, seed: int) -> pd.DataFrame:
    """Item 20: the AID linear system H v = grad_y f of the quadratic bilevel family (spectrum linspace on
    [1/kappa, 1], q eigenvalues), solved by the library's ``linsolve.fixed_point`` (eta = 1/L) and ``linsolve.cg``.

    Both solvers are orthogonally invariant, so the system is posed in H's eigenbasis: matvec = lambda * v,
    right-hand side ~ N(0, 2 I) (the law of U^T (y0 - ybar) for the family's standard normal y0, ybar), which
    keeps q >> kappa affordable (a dense spectrum: CG cannot finish early on a few isolated eigenvalues).
    Measured: Q to relative Euclidean error eps for each solver, next to ``theory.fixed_point_steps`` /
    ``cg_steps``; at Q_meas and Q_meas // 2 (library calls from 0) FP's error against its closed form
    ||(I - eta H)^Q v*|| / ||v*|| and its bound q^Q, and CG's against 2 sqrt(kappa) r^Q."""
    import math

    import torch

    from convtheory.hypergrad import linsolve
    from convtheory.problems import QuadraticBilevel
    from convtheory.problems.base import make_generator
    from convtheory.theory import cg_error_bound, cg_steps, fixed_point_error_bound, fixed_point_steps

    kappa, eps = float(params["kappa"]), float(params["eps"])
    fam = QuadraticBilevel(p=1, q=int(params["q"]), mu=1.0 / kappa, L=1.0, spectrum="linspace")
    gen = make_generator(seed)
    lam = fam.eigenvalues(gen)
    rhs = math.sqrt(2.0) * torch.randn(lam.shape[0], generator=gen, dtype=torch.float64)
    v_star = rhs / lam
    vn = _norm(v_star)
    eta = 1.0 / fam.L

    def matvec(v):
        return lam * v

    theory = {"fp": fixed_point_steps(eta, fam.mu, fam.L, eps), "cg": cg_steps(kappa, eps)}
    steps = {"fp": _fp_steps_to_eps(matvec, rhs, v_star, eta, eps, 20 * theory["fp"] + 10),
             "cg": _steps_to_eps(lambda Q: _norm(linsolve.cg(matvec, rhs, Q)[0] - v_star) / vn, eps,
                                 20 * theory["cg"] + 10)}
    rows = []
    for name in ("fp", "cg"):
        for Q in sorted({max(steps[name] // 2, 1), steps[name]}):
            if name == "fp":
                err = _norm(linsolve.fixed_point(matvec, rhs, Q, eta) - v_star) / vn
                closed = _norm((1.0 - eta * lam) ** Q * v_star) / vn
                bound = float(fixed_point_error_bound(eta, fam.mu, fam.L, Q))
            else:
                err = _norm(linsolve.cg(matvec, rhs, Q)[0] - v_star) / vn
                closed, bound = math.nan, float(cg_error_bound(kappa, Q))
            rows.append({"solver": name, "kappa": kappa, "eps": eps, "steps": steps[name],
                         "steps_theory": theory[name], "Q": Q, "rel_error": err, "closed_form": closed,
                         "bound": bound})
    return pd.DataFrame(rows)


run_linsolve_steps.version = version


def specs20(profile: str) -> list:
    kappas = {"test": [10.0, 30.0, 100.0], "quick": [10.0, 30.0, 100.0, 300.0],
              "full": [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0]}[profile]
    seeds = {"test": (0,), "quick": (0, 1), "full": tuple(range(5))}[profile]
    return grid("prediction_20", FN20, {"kappa": kappas}, seeds=seeds,
                fixed={"q": {"test": 3000, "quick": 3000, "full": 30000}[profile], "eps": 1e-6})


TOL20 = 0.15  # on the fitted exponent of Q_FP / Q_CG vs kappa (predicted 1/2)
TOL20_FP = 1e-8  # FP error vs its closed form (relative)


def checks20(table: pd.DataFrame) -> dict:
    """FP identity deviations, bound ratios (FP and CG errors, steps vs theory's steps), and the fitted
    exponents of Q_FP / Q_CG against kappa (medians over seeds): measured and from the theory's step counts."""
    import numpy as np

    fp = table[table["solver"] == "fp"]
    dev = (fp["rel_error"] - fp["closed_form"]).abs() / fp["closed_form"]
    ratio = pd.concat([table["rel_error"] / table["bound"], table["steps"] / table["steps_theory"]])
    steps = table.drop_duplicates(["solver", "kappa", "seed"]).pivot_table(
        index="kappa", columns="solver", values=["steps", "steps_theory"], aggfunc="median")
    lk = np.log(steps.index.to_numpy(np.float64))
    meas = np.log(steps[("steps", "fp")] / steps[("steps", "cg")]).to_numpy()
    theo = np.log(steps[("steps_theory", "fp")] / steps[("steps_theory", "cg")]).to_numpy()
    fit = (lambda y: float(np.polyfit(lk, y, 1)[0])) if len(lk) >= 2 else (lambda y: float("nan"))
    return {"fp_dev": dev, "ratio": ratio, "exponent": fit(meas), "exponent_theory": fit(theo), "steps": steps}


def judge20(table: pd.DataFrame, profile: str) -> Outcome:
    import math

    c = checks20(table)
    dev, ratio, e, et = c["fp_dev"], c["ratio"], c["exponent"], c["exponent_theory"]
    st = c["steps"]
    listing = "; ".join(f"kappa {k:g}: FP {st.loc[k, ('steps', 'fp')]:.0f}/{st.loc[k, ('steps_theory', 'fp')]:.0f}, "
                        f"CG {st.loc[k, ('steps', 'cg')]:.0f}/{st.loc[k, ('steps_theory', 'cg')]:.0f}"
                        for k in st.index)
    measured = f"exponent of Q_FP/Q_CG vs kappa {e:.3f}; steps measured/theory: {listing}"
    predicted = (f"exponent 1/2 (theory's step counts give {et:.3f}); FP error = (I - eta H)^Q v* exactly <= q^Q; "
                 f"CG <= 2 sqrt(kappa) r^Q")
    if dev.max() > TOL20_FP:
        verdict, detail = "fails", f"FP error off its closed form by {dev.max():.2e} (relative)"
    elif (ratio > 1.0 + 1e-9).any():
        verdict, detail = "fails", f"an error or a step count exceeds its bound (x{ratio.max():.4g})"
    elif math.isnan(e):
        verdict, detail = "inconclusive", "fewer than 2 kappas: no exponent"
    elif abs(e - 0.5) > TOL20:
        verdict, detail = "fails", f"bounds hold; fitted exponent {e:.3f} is off 1/2 by more than {TOL20}"
    else:
        verdict = "holds"
        detail = (f"FP closed form to {dev.max():.1e}; every error and step count within its bound "
                  f"(worst ratio {ratio.max():.3g}); exponent {e:.3f} within {TOL20} of 1/2")
    return Outcome(verdict, measured=measured, predicted=predicted, worst_tightness=float(ratio.max()),
                   median_tightness=float(ratio.median()), detail=detail)


# ============================================================================================== item 21
FN21 = "experiments.predictions.hypergradients:run_stocbio_bias"
_NOISES = ("H", "F", "G")  # which oracle is noisy: Hessian batches B, outer batch D_F, Jacobian batch D_G


def _stocbio_draws(prob, x, y, eta, Q: int, noise: str, sigma: float, batch: int, n: int, gen):
    """n independent stocBiO estimates at (x, y), the library's ``stocbio_hypergradient`` vmapped over draws.

    The noise is that of ``solvers.quadratic_noise`` with one oracle noisy (``noise``): a batch of m i.i.d.
    samples averages to :math:`H+\\sigma E/\\sqrt m` (E symmetric, N(0, 1) off and N(0, 2) on the diagonal),
    :math:`B+\\sigma F/\\sqrt m`, or an outer objective shifted by :math:`-\\sigma y^\\top z/\\sqrt m`, drawn here in
    that closed form (the same law) so that all n draws are one batched tensor (no loop over draws). Q independent
    Hessian batches per draw. Returns (hg (n, p), v (n, q))."""
    import math

    import torch
    from torch.func import vmap

    from convtheory.solvers import stocbio_hypergradient

    H, B, b, ybar, gamma = (prob.extra[k] for k in ("H", "B", "b", "ybar", "gamma"))
    q, p = B.shape
    dt = H.dtype
    sH, sF, sJ = (sigma / math.sqrt(batch) if noise == k else 0.0 for k in _NOISES)
    W = torch.randn(n, Q, q, q, generator=gen, dtype=dt)
    EH = sH * (W + W.transpose(-1, -2)) / math.sqrt(2.0)
    EJ = sJ * torch.randn(n, q, p, generator=gen, dtype=dt)
    zF = sF * torch.randn(n, q, generator=gen, dtype=dt)

    def one(EH, EJ, zF):
        def F_out(x, y):
            return 0.5 * ((y - ybar) ** 2).sum(-1) + 0.5 * gamma * (x**2).sum(-1) - (y * zF).sum(-1)

        def G_jac(x, y):
            return 0.5 * (y * (y @ H)).sum(-1) - (y * (x @ (B + EJ).T + b)).sum(-1)

        def G_hess(j):
            Hj = H + EH[j]
            return lambda x, y: 0.5 * (y * (y @ Hj)).sum(-1) - (y * (x @ B.T + b)).sum(-1)

        hg, v, _ = stocbio_hypergradient(F_out, G_jac, [G_hess(j) for j in range(Q)], x, y, eta)
        return hg, v

    return vmap(one)(EH, EJ, zF)


def run_stocbio_bias(params: dict, seed: int) -> pd.DataFrame:
    """Item 21 on one quadratic bilevel problem at (x0, y0): n stocBiO draws with one noisy oracle and batch size
    ``batch``. Measured: the Monte-Carlo means of v_Q and of the hypergradient (max |z| against the exact Neumann
    means (I - (I - eta H)^{Q+1}) H^{-1} grad_y f and ``neumann_exact``), the exact bias against
    ``theory.neumann_bias_bound`` (times ||B|| for the hypergradient), and the total variances tr Cov."""
    import torch

    from convtheory.problems import QuadraticBilevel
    from convtheory.problems.base import make_generator
    from convtheory.problems.bilevel_quadratic import fixed_point_v_exact, neumann_exact
    from convtheory.theory import neumann_bias_bound

    fam = QuadraticBilevel(p=5, q=10, mu=float(params["mu"]), L=1.0)
    prob = fam.build(seed)
    x, y = prob.x0, prob.y0
    eta, Q, n = float(params["eta_L"]) / fam.L, int(params["Q"]), int(params["draws"])
    # the noise stream differs from the data's and between runs (no common random numbers across batch sizes)
    gen = make_generator(1_000_003 * (seed + 1) + 7919 * int(params["batch"]) + 31 * Q
                         + _NOISES.index(params["noise"]))
    hg, v = _stocbio_draws(prob, x, y, eta, Q, params["noise"], float(params["sigma"]), int(params["batch"]), n,
                           gen)
    mean_v, mean_hg = fixed_point_v_exact(prob, y, eta, Q + 1), neumann_exact(prob, x, y, eta, Q)
    gyf = y - prob.extra["ybar"]
    v_star = torch.linalg.solve(prob.extra["H"], gyf)
    hg_star = prob.extra["gamma"] * x + v_star @ prob.extra["B"]  # AID hypergradient at y with v solved exactly

    def zmax(draws, mean):
        se = draws.std(0) / n**0.5
        floor = 1e-13 * (1.0 + float(mean.abs().max()))  # a coordinate without noise must match to round-off
        return float(((draws.mean(0) - mean).abs() / se.clamp_min(floor)).max())

    def tvar(draws):
        return float(draws.var(0).sum())

    bound = neumann_bias_bound(eta, fam.mu, fam.L, Q, _norm(gyf))
    Bn = float(prob.constants.extra["Lxy"])
    return pd.DataFrame([{
        "eta": eta, "draws": n, "z_v": zmax(v, mean_v), "z_hg": zmax(hg, mean_hg),
        "bias_v": _norm(mean_v - v_star), "bias_v_mc": _norm(v.mean(0) - v_star), "bias_v_bound": float(bound),
        "bias_hg": _norm(mean_hg - hg_star), "bias_hg_bound": Bn * float(bound),
        "var_v": tvar(v), "var_hg": tvar(hg)}])


run_stocbio_bias.version = version


def specs21(profile: str) -> list:
    batches = {"test": [1, 8, 64], "quick": [1, 4, 16, 64], "full": [1, 2, 4, 8, 16, 32, 64, 128]}[profile]
    noises = {"test": ["H"], "quick": list(_NOISES), "full": list(_NOISES)}[profile]
    Qs = {"test": [3], "quick": [4], "full": [1, 4, 16]}[profile]
    draws = {"test": 400, "quick": 600, "full": 4000}[profile]
    seeds = {"test": (0,), "quick": (0,), "full": (0, 1)}[profile]
    return grid("prediction_21", FN21, {"noise": noises, "batch": batches, "Q": Qs}, seeds=seeds,
                fixed={"mu": 0.2, "eta_L": 1.0, "sigma": 0.1, "draws": draws})


Z21 = 5.0  # max |z| of the Monte-Carlo mean against the exact Neumann mean (Bonferroni-safe at these sizes)
TOL21 = 0.2  # on the fitted slope of log variance vs log batch size (predicted -1)


def checks21(table: pd.DataFrame) -> dict:
    """max |z| of the means, bias / bound ratios, and per (noise, Q, seed) the fitted slope of the variance that
    the noisy oracle drives (v_Q for H and F, the hypergradient for G) against the batch size."""
    import numpy as np

    slopes = []
    for (noise, Q, seed), g in table.groupby(["noise", "Q", "seed"]):
        if g["batch"].nunique() < 2:
            continue
        col = "var_hg" if noise == "G" else "var_v"
        slope = float(np.polyfit(np.log(g["batch"].to_numpy(np.float64)), np.log(g[col].to_numpy()), 1)[0])
        slopes.append({"noise": noise, "Q": Q, "seed": seed, "slope": slope})
    ratio = pd.concat([table["bias_v"] / table["bias_v_bound"], table["bias_hg"] / table["bias_hg_bound"]])
    return {"z": table[["z_v", "z_hg"]].max(axis=1), "ratio": ratio, "slopes": pd.DataFrame(slopes)}


def judge21(table: pd.DataFrame, profile: str) -> Outcome:
    c = checks21(table)
    z, ratio, sl = c["z"], c["ratio"], c["slopes"]
    slope_txt = ", ".join(f"{k}: {v:.3f}" for k, v in sl.groupby("noise")["slope"].median().items()) \
        if len(sl) else "none"
    measured = (f"max |z| of MC mean vs exact Neumann mean {z.max():.2f}; bias / bound <= {ratio.max():.3g}; "
                f"variance slopes vs batch (median) {slope_txt}")
    predicted = (f"E v_Q = (I - (I - eta H)^(Q+1)) H^-1 grad_y f (|z| <= {Z21:g}); ||bias|| <= (1 - eta mu)^(Q+1) "
                 "M / mu (x ||B|| for the hypergradient); variance slope -1 in B, D_F, D_G")
    if z.max() > Z21:
        i = z.idxmax()
        verdict = "fails"
        detail = (f"MC mean off the exact Neumann mean: |z| = {z.max():.2f} at noise {table.loc[i, 'noise']}, "
                  f"batch {int(table.loc[i, 'batch'])}, Q = {int(table.loc[i, 'Q'])}")
    elif (ratio > 1.0 + 1e-12).any():
        verdict, detail = "fails", f"exact bias above the bound (x{ratio.max():.4g})"
    elif not len(sl):
        verdict, detail = "inconclusive", "means and bias bound hold; fewer than 2 batch sizes: no variance slope"
    elif (sl["slope"] + 1.0).abs().max() > TOL21:
        r = sl.loc[(sl["slope"] + 1.0).abs().idxmax()]
        verdict = "fails"
        detail = (f"means and bias bound hold; variance slope {r['slope']:.3f} vs -1 (> {TOL21} off) for noise "
                  f"{r['noise']}, Q = {int(r['Q'])}")
    else:
        verdict = "holds"
        detail = (f"MC means within |z| <= {z.max():.2f}; bias tightness <= {ratio.max():.3g}; variance slopes "
                  f"within {float((sl['slope'] + 1.0).abs().max()):.3f} of -1")
    return Outcome(verdict, measured=measured, predicted=predicted, worst_tightness=float(ratio.max()),
                   median_tightness=float(ratio.median()), detail=detail)


# ============================================================================================== item 22
FN22 = "experiments.predictions.hypergradients:run_smoothness"


def _fd_hessian(grad_fn, x, h: float):
    """Central finite differences of a gradient oracle, (grad(x + h e_i) - grad(x - h e_i)) / (2h) per column,
    symmetrised; error O(h^2) plus round-off / h."""
    import torch

    p = x.shape[0]
    E = torch.eye(p, dtype=x.dtype)
    cols = [(grad_fn(x + h * E[i]) - grad_fn(x - h * E[i])) / (2.0 * h) for i in range(p)]
    Hm = torch.stack(cols, dim=1)
    return 0.5 * (Hm + Hm.T)


def run_smoothness(params: dict, seed: int) -> pd.DataFrame:
    """Item 22 on one problem, at x0 and at x0 + a standard normal shift.

    ``family="quadratic"`` (QuadraticBilevel, mu = 1/kappa, L = 1): ||Hessian of Phi||_2 by torch.func.hessian of
    the exact Phi, against ``theory.hyperobjective_smoothness_quadratic`` (exact), its bound gamma + ||B||^2/mu^2,
    and Ghadimi-Wang's L_Phi = L (1 + kappa)^2 with the joint L of ``bilevel_joint_smoothness_quadratic``.
    ``family="logcosh"`` (:class:`LogCoshBilevel`): ||Hessian|| by central differences of the exact hypergradient
    (Newton + dense solve), against the closed form :func:`logcosh_phi_hessian` and
    ``theory.hyperobjective_smoothness`` with the problem's L (joint), mu, rho, tau = 0 and M = ||y*(x) - ybar||
    (the bound on grad_y f at the point, which is what a Hessian at x needs)."""
    import torch
    from torch.func import hessian

    from convtheory.problems import QuadraticBilevel
    from convtheory.problems.base import make_generator
    from convtheory.theory import (bilevel_joint_smoothness_quadratic, hyperobjective_smoothness,
                                   hyperobjective_smoothness_quadratic, hyperobjective_smoothness_quadratic_bound)

    family = params["family"]
    if family == "quadratic":
        fam = QuadraticBilevel(p=5, q=10, mu=1.0 / float(params["kappa"]), L=1.0)
    else:
        fam = LogCoshBilevel(p=5, q=10, mu=1.0 / float(params["kappa"]), s=float(params["s"]))
    prob = fam.build(seed)
    shift = torch.randn(prob.x0.shape, generator=make_generator(seed + 104729), dtype=prob.x0.dtype)
    B, H, gamma = prob.extra["B"], prob.extra["H"], prob.extra["gamma"]
    rows = []
    for where, x in (("x0", prob.x0), ("x0+z", prob.x0 + shift)):
        if family == "quadratic":
            Hm = hessian(prob.extra["phi"])(x)
            reference = hyperobjective_smoothness_quadratic(gamma, B.numpy(), H.numpy())
            L = bilevel_joint_smoothness_quadratic(gamma, B.numpy(), H.numpy())
            L_Phi = hyperobjective_smoothness(L, fam.mu, prob.constants.M, 0.0, 0.0)
            bound_B = hyperobjective_smoothness_quadratic_bound(gamma, float(prob.constants.extra["Lxy"]), fam.mu)
        else:
            Hm = _fd_hessian(prob.hypergradient, x, float(params["h"]))
            reference = float(torch.linalg.eigvalsh(logcosh_phi_hessian(prob, x)).abs().max())
            c = prob.constants
            M = _norm(prob.y_star(x) - prob.extra["ybar"])
            L_Phi = hyperobjective_smoothness(c.extra["L_joint"], c.mu, M, c.tau, c.rho)
            bound_B = float("nan")
        rows.append({"where": where, "hess_norm": float(torch.linalg.eigvalsh(Hm).abs().max()),
                     "reference": reference, "bound_B": bound_B, "L_Phi": L_Phi})
    return pd.DataFrame(rows)


run_smoothness.version = version


def specs22(profile: str) -> list:
    kappas = {"test": [10.0], "quick": [10.0, 100.0], "full": [3.0, 10.0, 30.0, 100.0, 1000.0]}[profile]
    seeds = {"test": (0,), "quick": (0, 1, 2), "full": tuple(range(10))}[profile]
    return grid("prediction_22", FN22, {"family": ["quadratic", "logcosh"], "kappa": kappas}, seeds=seeds,
                fixed={"s": 1.0, "h": 1e-4})


TOL22 = {"quadratic": 1e-10, "logcosh": 1e-5}  # autograd vs closed form; central differences (O(h^2)) vs closed form


def checks22(table: pd.DataFrame) -> dict:
    """Relative deviation of the measured ||Hessian|| from its exact value (and over its tolerance), and ratios
    to the bounds (gamma + ||B||^2/mu^2 on the quadratic family, Ghadimi-Wang's L_Phi everywhere)."""
    dev = (table["hess_norm"] - table["reference"]).abs() / table["reference"]
    scaled = dev / table["family"].map(TOL22)
    ratio = pd.concat([table["hess_norm"] / table["L_Phi"], (table["hess_norm"] / table["bound_B"]).dropna()])
    return {"dev": dev, "scaled": scaled, "ratio": ratio, "L_Phi_ratio": table["hess_norm"] / table["L_Phi"]}


def judge22(table: pd.DataFrame, profile: str) -> Outcome:
    c = checks22(table)
    scaled, ratio, lr = c["scaled"], c["ratio"], c["L_Phi_ratio"]
    q = table["family"] == "quadratic"
    measured = (f"||Hess Phi|| / L_Phi <= {lr.max():.3g} (median {lr.median():.2g}); deviation from the exact "
                f"value: quadratic {c['dev'][q].max():.1e}, logcosh (finite differences) {c['dev'][~q].max():.1e}")
    predicted = ("quadratic: = gamma + ||B^T H^-2 B|| <= gamma + ||B||^2/mu^2 << L (1 + kappa)^2; logcosh: = closed "
                 "form; both <= L_Phi of Ghadimi & Wang")
    if scaled.max() > 1.0:
        i = scaled.idxmax()
        verdict = "fails"
        detail = (f"||Hess Phi|| = {table.loc[i, 'hess_norm']:.10g} vs exact {table.loc[i, 'reference']:.10g} "
                  f"({table.loc[i, 'family']}, kappa = {table.loc[i, 'kappa']:g}, {table.loc[i, 'where']}, seed "
                  f"{int(table.loc[i, 'seed'])})")
    elif (ratio > 1.0 + 1e-12).any():
        verdict, detail = "fails", f"||Hess Phi|| exceeds a bound by x{ratio.max():.4g}"
    else:
        verdict = "holds"
        bq = (table["hess_norm"] / table["bound_B"])[q]
        detail = (f"exact values matched ({len(table)} points); on the quadratic family ||Hess|| / (gamma + "
                  f"||B||^2/mu^2) <= {bq.max():.3g} and / L(1 + kappa)^2 <= {lr[q].max():.2g}")
    return Outcome(verdict, measured=measured, predicted=predicted, worst_tightness=float(lr.max()),
                   median_tightness=float(lr.median()), detail=detail)


PREDICTIONS = [
    Prediction(17, "ITD error on quadratic g equals B^T H^-1 P^N [(y0 - y*) - (y_N - ybar)]: rate q^N, no N "
               "prefactor", experiment="prediction_17", theory="convtheory.theory.bilevel:itd_error_quadratic",
               source="THEORY.md §1.3, §14 item 17 [derived]", constants="exact", tolerance=TOL17, specs=specs17,
               judge=judge17),
    Prediction(18, "ITD error on a non-quadratic inner problem stays below (c1 + c2 N) q^N and Ji et al.'s bound; "
               "log-rate -> log q*", experiment="prediction_18",
               theory="convtheory.theory.bilevel:itd_error_bound",
               source="Ji, Yang, Liang (ICML 2021) ITD proposition via Huang et al. Thm 1 [secondary]; Grazzi et al. "
                      "(ICML 2020) ITD theorem [uncertain shape, constants derived]; THEORY.md §14 item 18",
               constants="bound", tolerance=TOL18, specs=specs18, judge=judge18),
    Prediction(19, "AID-FP (eta = alpha, Q = N) equals ITD, Neumann with Q terms equals FP with Q + 1 steps, on "
               "quadratic g", experiment="prediction_19", theory="convtheory.problems.bilevel_quadratic:aid_fp_exact",
               source="THEORY.md §14 item 19 [derived]; hypertorch code comment", constants="exact",
               tolerance=TOL19, specs=specs19, judge=judge19),
    Prediction(20, "AID linear solves: FP error (1 - eta mu)^Q, CG <= 2 sqrt(kappa) r^Q; Q_FP / Q_CG grows like "
               "sqrt(kappa)", experiment="prediction_20",
               theory="convtheory.theory.bilevel:fixed_point_steps, cg_steps",
               source="Grazzi et al. (ICML 2020) hierarchy [paper: abstract]; THEORY.md §9, §14 item 20 [derived "
                      "rates]", constants="fitted", tolerance=TOL20, specs=specs20, judge=judge20),
    Prediction(21, "stocBiO Neumann estimator: mean = exact truncated series, bias <= (1 - eta mu)^(Q+1) M / mu, "
               "variance ~ 1/batch", experiment="prediction_21",
               theory="convtheory.theory.bilevel:neumann_bias_bound",
               source="Ji, Yang, Liang (ICML 2021) stocBiO estimator; THEORY.md §1.3, §14 item 21 [derived]",
               constants="bound", tolerance=TOL21, specs=specs21, judge=judge21),
    Prediction(22, "||Hessian of Phi|| <= L_Phi; on quadratic g it equals gamma + ||B^T H^-2 B||, well below "
               "L (1 + kappa)^2", experiment="prediction_22",
               theory="convtheory.theory.bilevel:hyperobjective_smoothness",
               source="Ghadimi & Wang (2018) via Huang et al. Lemma 2 [secondary]; THEORY.md §1.3, §14 item 22 "
                      "[derived]", constants="bound", tolerance=TOL22["logcosh"], specs=specs22, judge=judge22),
]
