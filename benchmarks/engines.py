"""Engines against the natural torch baselines, eager and under torch.compile (performance issue, target 2).

Meta-gradients (``meta_gradient``: fomaml, reptile, anil, imaml) on workload A of ../shared/bench/peer_maml.py
(MLP 1-40-40-1, 25 sine tasks, 10 support + 10 query points, alpha = 0.01, data drawn like the harness: float64
from a fixed seed, then cast), and hypergradients (``hypergradient``: itd, aid-cg, aid-neumann) on QuadraticBilevel
(p = 100, q = 1000: x in R^100, y in R^1000, mu = 0.1, L = 1, alpha = eta = 1/L) and on HyperCleaning (digits,
W in R^{65 x 10}, x in R^{n_train}, alpha = eta = 1/L).

Implementations per (workload, method):
  engine            convtheory's engine, eager (meta: compile="never"; bilevel: the plain call)
  engine-compile    the same, compiled (meta: compile="always", its own cache; bilevel: torch.compile of the call)
  func              the same maths hand-written with torch.func (vmap over tasks, grad/jvp/vjp), eager
  func-compile      torch.compile of ``func``
  autograd          a Python loop (tasks / steps) with torch.autograd.grad, eager
  torchopt          AID-CG only, torchopt.diff.implicit.custom_root with torchopt's CG, when torchopt imports

Correctness first: in float32 every implementation must agree with ``func`` (max|g - g_ref| / max|g_ref| < 1e-4) or
it is reported and not timed; before that, in float64, each engine must match an exact oracle where one exists
(closed forms on QuadraticTasks for fomaml, reptile, anil, imaml and maml; itd_hypergradient_exact, neumann_exact
and the dense-solve AID answer on QuadraticBilevel) to 1e-8. Timing: warm-up, interleaved shuffled rounds,
medians, float32, one thread (``../shared/bench`` protocol). Writes ``engines.json`` and ``engines.md``.

    python benchmarks/engines.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import grad, jvp, vjp, vmap

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from convtheory.hypergrad import hypergradient, meta_gradient  # noqa: E402

CHECK_RTOL = 1e-4  # float32 gate against the func reference (the harness's threshold)
ORACLE_RTOL = 1e-8  # float64 gate against the exact oracle
META_METHODS = ("fomaml", "reptile", "anil", "imaml")
BILEVEL_METHODS = ("itd", "aid-cg", "aid-neumann")
ANIL_HEAD = ("4.weight", "4.bias")
REFERENCE = "func"


class GateError(RuntimeError):
    """An engine disagrees with its exact oracle (float64) or its baseline (float32)."""


@dataclass
class Settings:
    quick: bool = False
    reps: int = 20
    warmup: int = 3
    meta_N: int = 5
    meta_alpha: float = 0.01
    imaml_lam: float = 1.0
    imaml_Q: int = 5
    meta_tasks: int = 25
    p: int = 100
    q: int = 1000
    bilevel_N: int = 20
    bilevel_Q: int = 10
    hc_train: int = 800
    hc_val: int = 400
    compile: bool = True
    compile_imaml: bool = True
    meta_methods: tuple = META_METHODS
    bilevel_methods: tuple = BILEVEL_METHODS
    problems: tuple = ("quadratic", "hypercleaning")
    notes: list = field(default_factory=list)


# =========================================================================================== meta: workload A
def sinusoid_tasks(T: int, K: int, Q: int, seed: int, dtype) -> tuple:
    """((xs, ys), (xq, yq)) as in the harness's make_tasks: amplitude in [0.1, 5], phase in [0, pi], x in [-5, 5]."""
    g = torch.Generator().manual_seed(seed + 1)
    f64 = torch.float64
    amp = 0.1 + 4.9 * torch.rand(T, 1, 1, generator=g, dtype=f64)
    phase = math.pi * torch.rand(T, 1, 1, generator=g, dtype=f64)
    xs = -5 + 10 * torch.rand(T, K, 1, generator=g, dtype=f64)
    xq = -5 + 10 * torch.rand(T, Q, 1, generator=g, dtype=f64)
    ys, yq = amp * torch.sin(xs + phase), amp * torch.sin(xq + phase)
    xs, ys, xq, yq = (t.to(dtype) for t in (xs, ys, xq, yq))
    return (xs, ys), (xq, yq)


def mlp_params(seed: int, dtype) -> dict:
    """The harness's MLP 1-40-40-1 initial values (nn.Sequential under torch.manual_seed), as a dict."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)).to(dtype)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def mlp_loss(p: dict, batch) -> torch.Tensor:
    x, y = batch
    h = F.relu(F.linear(x, p["0.weight"], p["0.bias"]))
    h = F.relu(F.linear(h, p["2.weight"], p["2.bias"]))
    return ((F.linear(h, p["4.weight"], p["4.bias"]) - y) ** 2).mean()


def _dot(a: dict, b: dict) -> torch.Tensor:
    return sum((a[k] * b[k]).sum() for k in a)


def _axpy(a, x: dict, y: dict) -> dict:
    return {k: a * x[k] + y[k] for k in x}


# ------------------------------------------------------------------------------ torch.func baselines (per task)
def func_meta(method: str, loss, N: int, alpha: float, lam: float, Q: int, head=ANIL_HEAD, hvp: str = "jvp"):
    """(eager_fn, pure_fn): (params, support, query) -> meta-gradient dict, written with torch.func only.
    ``pure_fn`` is what torch.compile gets; it differs from ``eager_fn`` for anil only (outer torch.func.grad
    instead of torch.autograd.grad, the faster eager idiom) and for imaml when ``hvp`` differs."""
    def adapt(p, s):
        for _ in range(N):
            g = grad(loss)(p, s)
            p = {k: p[k] - alpha * g[k] for k in p}
        return p

    if method == "fomaml":
        def meta(p, s, q):
            g = vmap(lambda s_, q_: grad(loss)(adapt(p, s_), q_))(s, q)
            return {k: v.mean(0) for k, v in g.items()}
        return meta, meta

    if method == "reptile":
        def meta(p, s, q):
            w = vmap(lambda s_: adapt(p, s_))(s)
            return {k: (p[k] - w[k].mean(0)) / alpha for k in p}
        return meta, meta

    if method == "anil":
        def task_loss(p, s_, q_):
            head_p = {k: p[k] for k in head}
            body = {k: v for k, v in p.items() if k not in head}
            for _ in range(N):
                g = grad(lambda h: loss({**body, **h}, s_))(head_p)
                head_p = {k: head_p[k] - alpha * g[k] for k in head_p}
            return loss({**body, **head_p}, q_)

        def meta_loss(p, s, q):
            return vmap(task_loss, in_dims=(None, 0, 0))(p, s, q).mean()

        def eager(p, s, q):
            pp = {k: v.detach().requires_grad_(True) for k, v in p.items()}
            gs = torch.autograd.grad(meta_loss(pp, s, q), list(pp.values()))
            return dict(zip(pp, gs))
        return eager, grad(meta_loss)

    if method == "imaml":
        def make(hvp_kind):
            def task(p, s_, q_):
                gp = grad(lambda w: loss(w, s_) + 0.5 * lam * _dot(_axpy(-1.0, p, w), _axpy(-1.0, p, w)))
                phi = p
                for _ in range(N):
                    g = gp(phi)
                    phi = {k: phi[k] - alpha * g[k] for k in phi}
                b = grad(loss)(phi, q_)
                gl = grad(loss)

                if hvp_kind == "jvp":  # forward-over-reverse, the textbook torch.func HVP
                    def A(v):
                        return _axpy(1.0 / lam, jvp(lambda w: gl(w, s_), (phi,), (v,))[1], v)
                else:  # reverse-over-reverse
                    def A(v):
                        return _axpy(1.0 / lam, grad(lambda w: _dot(gl(w, s_), v))(phi), v)
                x = {k: torch.zeros_like(v) for k, v in b.items()}
                r = pdir = b
                rs = _dot(r, r)
                for _ in range(Q):
                    Ap = A(pdir)
                    den = _dot(pdir, Ap)
                    a = rs / torch.where(den == 0, torch.ones_like(den), den)
                    x = _axpy(a, pdir, x)
                    r = _axpy(-a, Ap, r)
                    rs_new = _dot(r, r)
                    pdir = _axpy(rs_new / torch.where(rs == 0, torch.ones_like(rs), rs), pdir, r)
                    rs = rs_new
                return x

            def meta(p, s, q):
                g = vmap(task, in_dims=(None, 0, 0))(p, s, q)
                return {k: v.mean(0) for k, v in g.items()}
            return meta
        # jvp under vmap does not compile (see convtheory/hypergrad/meta.py), so the compiled baseline uses
        # reverse-over-reverse HVPs, as the engine does
        return make(hvp), make("vjp")
    raise ValueError(method)


# --------------------------------------------------------------------------- torch.autograd baselines (loops)
def autograd_meta(method: str, loss, N: int, alpha: float, lam: float, Q: int, head=ANIL_HEAD):
    """Python loop over tasks and steps with torch.autograd.grad: (params, support, query) -> meta-gradient."""
    def task_data(data, t):
        return tuple(d[t] for d in data)

    def meta(p, s, q):
        names = list(p)
        theta = {k: v.detach().requires_grad_(True) for k, v in p.items()}
        B = s[0].shape[0]
        acc = None
        for t in range(B):
            st, qt = task_data(s, t), task_data(q, t)
            if method in ("fomaml", "reptile"):
                w = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
                for _ in range(N):
                    g = torch.autograd.grad(loss(w, st), list(w.values()))
                    w = {k: (w[k] - alpha * gk).detach().requires_grad_(True) for k, gk in zip(names, g)}
                if method == "fomaml":
                    d = dict(zip(names, torch.autograd.grad(loss(w, qt), list(w.values()))))
                else:
                    d = {k: (theta[k] - w[k]).detach() / alpha for k in names}
            elif method == "anil":
                hp = {k: theta[k] for k in head}
                for _ in range(N):
                    g = torch.autograd.grad(loss({**theta, **hp}, st), list(hp.values()), create_graph=True)
                    hp = {k: hp[k] - alpha * gk for k, gk in zip(head, g)}
                d = dict(zip(names, torch.autograd.grad(loss({**theta, **hp}, qt), list(theta.values()))))
            elif method == "imaml":
                phi = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
                for _ in range(N):
                    prox = loss(phi, st) + 0.5 * lam * sum(((phi[k] - theta[k].detach()) ** 2).sum() for k in names)
                    g = torch.autograd.grad(prox, list(phi.values()))
                    phi = {k: (phi[k] - alpha * gk).detach().requires_grad_(True) for k, gk in zip(names, g)}
                b = dict(zip(names, torch.autograd.grad(loss(phi, qt), list(phi.values()))))
                gs = torch.autograd.grad(loss(phi, st), list(phi.values()), create_graph=True)

                def A(v):
                    hv = torch.autograd.grad(gs, list(phi.values()), [v[k] for k in names], retain_graph=True)
                    return {k: v[k] + h / lam for k, h in zip(names, hv)}
                x = {k: torch.zeros_like(v) for k, v in b.items()}
                r = pdir = b
                rs = _dot(r, r)
                for _ in range(Q):
                    Ap = A(pdir)
                    den = _dot(pdir, Ap)
                    a = rs / torch.where(den == 0, torch.ones_like(den), den)
                    x = _axpy(a, pdir, x)
                    r = _axpy(-a, Ap, r)
                    rs_new = _dot(r, r)
                    pdir = _axpy(rs_new / torch.where(rs == 0, torch.ones_like(rs), rs), pdir, r)
                    rs = rs_new
                d = {k: v.detach() for k, v in x.items()}
            else:
                raise ValueError(method)
            acc = d if acc is None else {k: acc[k] + d[k] for k in names}
        return {k: v / B for k, v in acc.items()}
    return meta


def engine_meta(method: str, loss, N: int, alpha: float, lam: float, Q: int, compile_mode: str):
    kw = {"inner_params": ANIL_HEAD} if method == "anil" else {}
    if method == "imaml":
        kw = {"lam": lam, "cg_steps": Q}

    def meta(p, s, q):
        return meta_gradient(loss, p, s, q, method=method, inner_steps=N, inner_lr=alpha, compile=compile_mode,
                             **kw)[0]
    return meta


# ----------------------------------------------------------------------------- float64 oracle (quadratic tasks)
def meta_oracle_check(method: str, N: int = 4, alpha: float = 0.3, lam: float = 2.0, d: int = 6, B: int = 5) -> float:
    """Engine (compile="never", float64) vs a closed form on QuadraticTasks; returns the relative error.
    Support loss 0.5 w^T A w - c^T w (+ const), query 0.5 w^T C w - e^T w (+ const); P = I - alpha A.
    fomaml: mean C w_N - e; reptile: (theta - mean w_N) / alpha; maml: mean (P^N)^T (C w_N - e);
    anil (params {"body": w[:3], "head": w[3:]}, head adapts): the same with P = I - alpha S A, S the head
    projector; imaml (Q = d CG steps, exact in exact arithmetic): lam (A + lam I)^{-1} (C phi_N - e), phi_N the N-th
    GD iterate on the proximal problem."""
    from convtheory.problems import QuadraticTasks
    from convtheory.problems.quadratic import maml_adapted, quadratic_loss

    tasks = QuadraticTasks(d=d, mu=0.5, L=2.0, query="independent").sample(B, seed=3)
    theta = torch.randn(d, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    A, c, Cq, e = (tasks.exact[k] for k in ("A", "c", "C", "e"))
    I = torch.eye(d, dtype=torch.float64)
    mv = lambda M, v: (M @ v.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    if method in ("maml", "fomaml", "reptile"):
        wN = maml_adapted(theta, A, c, alpha, N)
        if method == "fomaml":
            exact = (mv(Cq, wN) - e).mean(0)
        elif method == "reptile":
            exact = (theta - wN.mean(0)) / alpha
        else:
            PN = torch.linalg.matrix_power(I - alpha * A, N)
            exact = mv(PN.transpose(-1, -2), mv(Cq, wN) - e).mean(0)
        got, _ = meta_gradient(quadratic_loss, theta, tasks.support, tasks.query, method=method, inner_steps=N,
                               inner_lr=alpha, compile="never")
    elif method == "anil":
        h = d // 2
        S = torch.diag(torch.cat([torch.zeros(h), torch.ones(d - h)]).double())
        P = I - alpha * S @ A
        w = theta.expand(B, d)
        for _ in range(N):
            w = w - alpha * mv(S, mv(A, w) - c)
        exact = mv(torch.linalg.matrix_power(P, N).transpose(-1, -2), mv(Cq, w) - e).mean(0)

        def loss(p, data):
            return quadratic_loss(torch.cat([p["body"], p["head"]]), data)
        g, _ = meta_gradient(loss, {"body": theta[:h], "head": theta[h:]}, tasks.support, tasks.query, method="anil",
                             inner_steps=N, inner_lr=alpha, inner_params=("head",), compile="never")
        got = torch.cat([g["body"], g["head"]])
    elif method == "imaml":
        M = A + lam * I
        phi = maml_adapted(theta, M, c + lam * theta, alpha, N)
        exact = (lam * torch.linalg.solve(M, mv(Cq, phi) - e)).mean(0)
        got, _ = meta_gradient(quadratic_loss, theta, tasks.support, tasks.query, method="imaml", inner_steps=N,
                               inner_lr=alpha, lam=lam, cg_steps=d, compile="never")
    else:
        raise ValueError(method)
    return C.rel_err(got, exact)


# ================================================================================================ bilevel
def bilevel_problems(st: Settings) -> dict:
    """{name: (problem float32, problem float64 or None, alpha, description)}."""
    from convtheory.problems import HyperCleaning, QuadraticBilevel

    out = {}
    if "quadratic" in st.problems:
        fam = dict(p=st.p, q=st.q, mu=0.1, L=1.0)
        p32 = QuadraticBilevel(**fam, dtype=torch.float32).build(0)
        p64 = QuadraticBilevel(**fam, dtype=torch.float64).build(0)
        out[f"QuadraticBilevel p={st.p} q={st.q}"] = (p32, p64, 1.0 / p32.constants.L,
                                                      f"QuadraticBilevel(p={st.p}, q={st.q}, mu=0.1, L=1), seed 0")
    if "hypercleaning" in st.problems:
        fam = dict(n_train=st.hc_train, n_val=st.hc_val)
        p32 = HyperCleaning(**fam, dtype=torch.float32).build(0)
        out[f"HyperCleaning n_train={st.hc_train}"] = (p32, None, 1.0 / p32.constants.L,
                                                       f"HyperCleaning(n_train={st.hc_train}, n_val={st.hc_val}), "
                                                       "W 65x10, seed 0")
    return out


def func_bilevel(method: str, f, g, N: int, alpha: float, Q: int):
    """torch.func hand-written: itd = grad of x -> f(x, y_N(x)); AID = y_N, then CG / Neumann with jvp-of-grad
    HVPs and one vjp for the mixed term."""
    gy = grad(g, argnums=1)

    if method == "itd":
        def outer(x, y0):
            y = y0
            for _ in range(N):
                y = y - alpha * gy(x, y)
            return f(x, y)
        return grad(outer)

    def hg(x, y0):
        y = y0
        for _ in range(N):
            y = y - alpha * gy(x, y)
        y = y.detach()
        fx, fy = grad(f, argnums=(0, 1))(x, y)
        hvp = lambda v: jvp(lambda yy: gy(x, yy), (y,), (v,))[1]  # noqa: E731
        if method == "aid-cg":
            v = torch.zeros_like(fy)
            r = pdir = fy
            rr = (r * r).sum()
            for _ in range(Q):
                Ap = hvp(pdir)
                den = (pdir * Ap).sum()
                a = torch.where(den > 0, rr / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(rr))
                v = v + a * pdir
                r = r - a * Ap
                rr_new = (r * r).sum()
                beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, torch.ones_like(rr)), torch.zeros_like(rr))
                pdir = r + beta * pdir
                rr = rr_new
        else:  # neumann, terms 0..Q, step alpha
            term = acc = fy
            for _ in range(Q):
                term = term - alpha * hvp(term)
                acc = acc + term
            v = alpha * acc
        _, pull = vjp(lambda xx: gy(xx, y), x)
        return fx - pull(v)[0]
    return hg


def autograd_bilevel(method: str, f, g, N: int, alpha: float, Q: int):
    """torch.autograd.grad throughout: itd by create_graph unrolling, AID by double backward."""
    def hg(x, y0):
        x = x.detach().requires_grad_(True)
        if method == "itd":
            y = y0.detach().requires_grad_(True)
            for _ in range(N):
                (gyv,) = torch.autograd.grad(g(x, y), y, create_graph=True)
                y = y - alpha * gyv
            return torch.autograd.grad(f(x, y), x, materialize_grads=True)[0]
        y = y0.detach().requires_grad_(True)
        for _ in range(N):
            (gyv,) = torch.autograd.grad(g(x.detach(), y), y)
            y = (y - alpha * gyv).detach().requires_grad_(True)
        fx, fy = torch.autograd.grad(f(x, y), (x, y), materialize_grads=True)
        (gyv,) = torch.autograd.grad(g(x, y), y, create_graph=True)

        def hvp(v):
            return torch.autograd.grad(gyv, y, v, retain_graph=True)[0]
        with torch.no_grad():
            if method == "aid-cg":
                v = torch.zeros_like(fy)
                r = pdir = fy
                rr = (r * r).sum()
                for _ in range(Q):
                    with torch.enable_grad():
                        Ap = hvp(pdir)
                    den = (pdir * Ap).sum()
                    a = rr / den if den > 0 else torch.zeros_like(rr)
                    v = v + a * pdir
                    r = r - a * Ap
                    rr_new = (r * r).sum()
                    pdir = r + (rr_new / rr if rr > 0 else 0.0) * pdir
                    rr = rr_new
            else:
                term = acc = fy
                for _ in range(Q):
                    with torch.enable_grad():
                        term = term - alpha * hvp(term)
                    acc = acc + term
                v = alpha * acc
        (mixed,) = torch.autograd.grad(gyv, x, v)
        return fx - mixed
    return hg


def engine_bilevel(method: str, f, g, N: int, alpha: float, Q: int):
    def hg(x, y0):
        return hypergradient(f, g, x, y0, method=method, inner_steps=N, inner_lr=alpha, solver_steps=Q)[0]
    return hg


def torchopt_aid_cg(f, g, N: int, alpha: float, Q: int):
    """AID-CG through torchopt.diff.implicit.custom_root: solver_fn(y_init, x) runs N GD steps on g; the optimality
    condition grad_y g(x, y) = 0 has the solver's signature (torchopt's iMAML example pattern); torchopt's CG with
    Q iterations solves the linear system; argnums=1 differentiates with respect to x. Not exercised where torchopt
    is not installed (it is an optional extra)."""
    import torchopt

    def optimality(y, x):
        return grad(g, argnums=1)(x, y)

    @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=torchopt.linear_solve.solve_cg(maxiter=Q))
    def solve(y_init, x):
        y = y_init.detach()
        with torch.enable_grad():
            for _ in range(N):
                yy = y.requires_grad_(True)
                y = (yy - alpha * torch.autograd.grad(g(x.detach(), yy), yy)[0]).detach()
        return y

    def hg(x, y0):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(f(x, solve(y0, x)), x, materialize_grads=True)[0]
    return hg


def bilevel_oracle_check(method: str, prob64, alpha: float, N: int, Q: int) -> float:
    """float64 engine vs the exact answer on QuadraticBilevel: itd -> itd_hypergradient_exact; aid-neumann ->
    neumann_exact at y_N; aid-cg (run with max(Q, 80) steps, converged to round-off at kappa = 10) -> the dense-solve
    AID answer gamma x + B^T H^{-1}(y_N - ybar) at the exact y_N."""
    from convtheory.problems.bilevel_quadratic import (inner_iterate_exact, itd_hypergradient_exact,
                                                       neumann_exact)

    x, y0, m = prob64.x0, prob64.y0, prob64.extra
    yN = inner_iterate_exact(prob64, x, y0, alpha, N)
    if method == "itd":
        exact = itd_hypergradient_exact(prob64, x, y0, alpha, N)
    elif method == "aid-neumann":
        exact = neumann_exact(prob64, x, yN, alpha, Q)
    elif method == "aid-cg":
        U, lam = m["eigenvectors"], m["eigenvalues"]
        exact = m["gamma"] * x + (((yN - m["ybar"]) @ U) / lam) @ U.T @ m["B"]
        Q = max(Q, 80)
    else:
        raise ValueError(method)
    got, _ = hypergradient(prob64.f, prob64.g, x, y0, method=method, inner_steps=N, inner_lr=alpha, solver_steps=Q)
    return C.rel_err(got, exact)


# ================================================================================================ driver
def _gate_and_time(label: dict, impls: dict, args_: tuple, st: Settings, engine_names=("engine", "engine-compile"),
                   skipped: dict | None = None) -> tuple[list, dict]:
    """Run every implementation once (first-call seconds), compare with REFERENCE, time those that agree."""
    check = {**label, "rel_err_vs_reference": {}, "first_call_s": {}, "not_timed": dict(skipped or {}),
             "reference": REFERENCE}
    outs, fns = {}, {}
    for name in [REFERENCE] + [n for n in impls if n != REFERENCE]:
        fn = (lambda f_=impls[name]: f_(*args_))
        try:
            out, secs = C.first_call(fn)
        except Exception as exc:  # noqa: BLE001 - a baseline that breaks is a finding, not a crash
            check["not_timed"][name] = f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            C.log(f"{label}: {name} not timed: {check['not_timed'][name]}")
            if name == REFERENCE:
                raise
            continue
        check["first_call_s"][name] = secs
        outs[name] = out
        err = check["rel_err_vs_reference"][name] = C.rel_err(out, outs[REFERENCE])
        if err < CHECK_RTOL:
            fns[name] = fn
        else:
            check["not_timed"][name] = f"disagrees with {REFERENCE}: rel err {err:.2e} >= {CHECK_RTOL:g}"
            C.log(f"{label}: {name} not timed: {check['not_timed'][name]}")
    check["passed"] = all(n in fns for n in impls if n in engine_names)
    rows = []
    stats = {k: C.summarize(v) for k, v in C.time_interleaved(fns, st.reps, st.warmup).items()}
    for name, s in stats.items():
        rows.append({**label, "impl": name, "kind": "engine" if name.startswith("engine") else "baseline",
                     "mode": "compiled" if name.endswith("compile") else "eager", **s,
                     "first_call_s": check["first_call_s"][name],
                     "rel_err_vs_reference": check["rel_err_vs_reference"][name]})
    C.log(f"{label}: " + ", ".join(f"{k} {s['median_ms']:.2f} ms" for k, s in stats.items()))
    return rows, check


def run_meta(st: Settings, oracle: dict) -> tuple[list, list]:
    s, q = sinusoid_tasks(st.meta_tasks, 10, 10, 0, torch.float32)
    p = mlp_params(0, torch.float32)
    rows, checks = [], []
    for method in st.meta_methods:
        N, a, lam, Q = st.meta_N, st.meta_alpha, st.imaml_lam, st.imaml_Q
        if oracle.get(method, {}).get("passed") is False:
            checks.append({"workload": "A", "method": method, "passed": False,
                           "not_timed": {"engine": "failed the float64 oracle check"}})
            continue
        eager_f, pure_f = func_meta(method, mlp_loss, N, a, lam, Q)
        impls = {REFERENCE: eager_f, "autograd": autograd_meta(method, mlp_loss, N, a, lam, Q),
                 "engine": engine_meta(method, mlp_loss, N, a, lam, Q, "never")}
        skipped = {}
        if st.compile and (method != "imaml" or st.compile_imaml):
            impls["func-compile"] = torch.compile(pure_f)
            impls["engine-compile"] = engine_meta(method, mlp_loss, N, a, lam, Q, "always")
        elif st.compile:
            skipped = {n: "compile skipped for imaml in this run (its CG loop of nested reverse passes compiles for "
                          "minutes; run without --quick)" for n in ("func-compile", "engine-compile")}
        label = {"workload": f"A: MLP 1-40-40-1, {st.meta_tasks} tasks", "method": method, "N": N}
        r, c = _gate_and_time(label, impls, (p, s, q), st, skipped=skipped)
        rows += r
        checks.append(c)
    return rows, checks


def run_bilevel(st: Settings, oracle: dict) -> tuple[list, list, dict]:
    rows, checks, problems = [], [], {}
    opt = C.optional_packages(["torchopt"])["torchopt"]
    for name, (p32, p64, alpha, desc) in bilevel_problems(st).items():
        problems[name] = desc + f", alpha = eta = 1/L = {alpha:.4g}"
        x, y0 = p32.x0, p32.y0
        for method in st.bilevel_methods:
            N, Q = st.bilevel_N, st.bilevel_Q
            if oracle.get(f"{name}/{method}", {}).get("passed") is False:
                checks.append({"workload": name, "method": method, "passed": False,
                               "not_timed": {"engine": "failed the float64 oracle check"}})
                continue
            impls = {REFERENCE: func_bilevel(method, p32.f, p32.g, N, alpha, Q),
                     "autograd": autograd_bilevel(method, p32.f, p32.g, N, alpha, Q),
                     "engine": engine_bilevel(method, p32.f, p32.g, N, alpha, Q)}
            if st.compile:
                impls["func-compile"] = torch.compile(func_bilevel(method, p32.f, p32.g, N, alpha, Q))
                impls["engine-compile"] = torch.compile(engine_bilevel(method, p32.f, p32.g, N, alpha, Q))
            skipped = {}
            if method == "aid-cg":
                if "not installed" in opt:
                    skipped["torchopt"] = "torchopt not installed"
                else:
                    impls["torchopt"] = torchopt_aid_cg(p32.f, p32.g, N, alpha, Q)
            label = {"workload": name, "method": method, "N": N, "Q": None if method == "itd" else Q}
            r, c = _gate_and_time(label, impls, (x, y0), st, skipped=skipped)
            if "torchopt" in c["rel_err_vs_reference"] and p64 is not None:
                c["torchopt_note"] = "error vs the float32 func reference in rel_err_vs_reference"
            rows += r
            checks.append(c)
    return rows, checks, problems


def run_oracles(st: Settings) -> dict:
    """float64 checks of every engine against its exact oracle, before anything is timed."""
    out = {}
    for method in ("maml",) + tuple(st.meta_methods):
        err = meta_oracle_check(method)
        out[method] = {"family": "QuadraticTasks(d=6, B=5), float64", "rel_err": err, "passed": err < ORACLE_RTOL}
    if "quadratic" in st.problems:
        from convtheory.problems import QuadraticBilevel

        p64 = QuadraticBilevel(p=st.p, q=st.q, mu=0.1, L=1.0, dtype=torch.float64).build(0)
        for method in st.bilevel_methods:
            err = bilevel_oracle_check(method, p64, 1.0, st.bilevel_N, st.bilevel_Q)
            out[f"QuadraticBilevel p={st.p} q={st.q}/{method}"] = {
                "family": f"QuadraticBilevel(p={st.p}, q={st.q}), float64", "rel_err": err,
                "passed": err < ORACLE_RTOL}
    for k, v in out.items():
        C.log(f"oracle {k}: rel err {v['rel_err']:.2e} ({'ok' if v['passed'] else 'FAILED'})")
    return out


def summary(rows: list) -> list:
    """Per (workload, method): engine eager / best eager baseline, engine compiled / best compiled baseline, and
    the best engine mode over the best baseline of any mode."""
    out = []
    keys = list(dict.fromkeys((r["workload"], r["method"]) for r in rows))
    for wl, m in keys:
        rs = [r for r in rows if (r["workload"], r["method"]) == (wl, m)]
        by = {r["impl"]: r["median_ms"] for r in rs}
        base = {k: v for k, v in by.items() if not k.startswith("engine")}
        best_e = min(((v, k) for k, v in base.items() if not k.endswith("compile")), default=(None, None))
        best_c = min(((v, k) for k, v in base.items() if k.endswith("compile")), default=(None, None))
        best_any = min(((v, k) for k, v in base.items()), default=(None, None))
        eng = min((v for k, v in by.items() if k.startswith("engine")), default=None)
        ratio = lambda a, b: (a / b) if (a is not None and b) else None  # noqa: E731
        out.append({
            "workload": wl, "method": m,
            "engine_ms": by.get("engine"), "best_eager_baseline": best_e[1], "best_eager_baseline_ms": best_e[0],
            "ratio_eager": ratio(by.get("engine"), best_e[0]),
            "engine_compile_ms": by.get("engine-compile"), "best_compiled_baseline": best_c[1],
            "best_compiled_baseline_ms": best_c[0], "ratio_compiled": ratio(by.get("engine-compile"), best_c[0]),
            "best_baseline": best_any[1], "ratio_best_engine_to_best_baseline": ratio(eng, best_any[0]),
            "engine_compile_first_call_s": next((r["first_call_s"] for r in rs if r["impl"] == "engine-compile"), None),
            "func_compile_first_call_s": next((r["first_call_s"] for r in rs if r["impl"] == "func-compile"), None),
        })
    return out


def markdown(res: dict) -> str:
    f = C.fmt
    st = res["settings"]
    lines = [f"# Engines against torch baselines ({'--quick' if st['quick'] else 'full'})", "",
             C.md_environment(res["environment"]), "",
             f"float32, 1 thread, {st['warmup']} warm-up calls, {st['reps']} interleaved rounds, medians. "
             f"Meta: N = {st['meta_N']}, alpha = {st['meta_alpha']}, iMAML lam = {st['imaml_lam']}, "
             f"Q = {st['imaml_Q']}, ANIL head = {list(ANIL_HEAD)}. Bilevel: N = {st['bilevel_N']}, "
             f"Q = {st['bilevel_Q']}; " + "; ".join(res["problems"].values()) + ".", "",
             "## Summary: ms per call (median) and engine / best baseline", ""]
    lines.append(C.md_table(
        ["workload", "method", "engine ms", "best eager baseline", "ms", "ratio", "engine-compile ms",
         "best compiled baseline", "ms", "ratio", "engine-compile 1st call s", "func-compile 1st call s"],
        [[s["workload"], s["method"], f(s["engine_ms"]), f(s["best_eager_baseline"]), f(s["best_eager_baseline_ms"]),
          f(s["ratio_eager"]), f(s["engine_compile_ms"]), f(s["best_compiled_baseline"]),
          f(s["best_compiled_baseline_ms"]), f(s["ratio_compiled"]), f(s["engine_compile_first_call_s"], ".1f"),
          f(s["func_compile_first_call_s"], ".1f")] for s in res["summary"]]))
    lines += ["", "## Every implementation", ""]
    lines.append(C.md_table(
        ["workload", "method", "impl", "median ms", "p25", "p75", "first call s", "rel err vs func"],
        [[r["workload"], r["method"], r["impl"], f(r["median_ms"]), f(r["p25_ms"]), f(r["p75_ms"]),
          f(r["first_call_s"], ".2f"), f(r["rel_err_vs_reference"], ".1e")] for r in res["rows"]]))
    lines += ["", "## Correctness gate", "", "float64 engine vs exact oracle (tolerance "
              f"{ORACLE_RTOL:g}):", ""]
    lines.append(C.md_table(["engine", "oracle family", "rel err", "passed"],
                            [[k, v["family"], f(v["rel_err"], ".1e"), v["passed"]] for k, v in res["oracle"].items()]))
    lines += ["", f"float32 implementations vs `{REFERENCE}` (tolerance {CHECK_RTOL:g}): every timed row above passed; "
              "not timed:"]
    nt = [f"- {c['workload']} / {c['method']}: {k}: {v}" for c in res["checks"] for k, v in c["not_timed"].items()]
    lines += nt or ["- none"]
    lines += ["", f"torchopt: {res['torchopt']}."]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller problems, no compiled iMAML")
    p.add_argument("--out", type=pathlib.Path, default=C.DEFAULT_OUT)
    p.add_argument("--reps", type=int, default=None)
    p.add_argument("--no-compile", action="store_true", help="eager implementations only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--meta-methods", nargs="*", default=None, choices=list(META_METHODS))
    p.add_argument("--bilevel-methods", nargs="*", default=None, choices=list(BILEVEL_METHODS))
    p.add_argument("--problems", nargs="*", default=None, choices=["quadratic", "hypercleaning"])
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test size
    return p.parse_args(argv)


def settings_from(args) -> Settings:
    if args.tiny:
        st = Settings(quick=True, reps=2, warmup=1, meta_N=1, imaml_Q=2, meta_tasks=4, p=10, q=30, bilevel_N=3,
                      bilevel_Q=3, hc_train=60, hc_val=30, compile=False)
    elif args.quick:
        st = Settings(quick=True, reps=5, warmup=1, meta_N=2, imaml_Q=3, p=100, q=1000, bilevel_N=10, bilevel_Q=5,
                      hc_train=400, hc_val=200, compile_imaml=False)
    else:
        st = Settings()
    if args.reps is not None:
        st.reps = args.reps
    if args.no_compile:
        st.compile = False
    for name in ("meta_methods", "bilevel_methods", "problems"):
        if getattr(args, name) is not None:
            setattr(st, name, tuple(getattr(args, name)))
    return st


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    st = settings_from(args)
    t0 = time.perf_counter()
    oracle = run_oracles(st)
    meta_rows, meta_checks = run_meta(st, oracle)
    bi_rows, bi_checks, problems = run_bilevel(st, oracle)
    rows = meta_rows + bi_rows
    res = {
        "environment": C.environment(),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(st).items()},
        "problems": problems,
        "oracle": oracle,
        "checks": meta_checks + bi_checks,
        "rows": rows,
        "summary": summary(rows),
        "torchopt": C.optional_packages(["torchopt"])["torchopt"],
    }
    res["gate_passed"] = all(v["passed"] for v in oracle.values()) and all(c["passed"] for c in res["checks"])
    res["settings"]["wall_s"] = time.perf_counter() - t0
    C.write_json(args.out / "engines.json", res)
    md = markdown(res)
    C.write_text(args.out / "engines.md", md)
    print(md)
    C.log(f"wrote {args.out / 'engines.json'} and .md; wall {res['settings']['wall_s']:.0f} s")
    return res


if __name__ == "__main__":
    sys.exit(0 if main()["gate_passed"] else 1)
