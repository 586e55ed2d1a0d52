"""Bilevel hypergradient engines against closed forms, autograd, finite differences and ES statistics (float64).

The quadratic family (THEORY.md §1.3): g = 0.5 y^T H y - y^T (Bx + b), f = 0.5 ||y - ybar||^2 + gamma/2 ||x||^2,
spec(H) in [mu, L]; y* = H^{-1}(Bx + b); grad Phi = gamma x + B^T H^{-1} (y* - ybar); N GD steps from y0 give
y_N = y* + P^N (y0 - y*), P = I - alpha H, and dy_N/dx = J_N = (I - P^N) H^{-1} B.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convtheory.hypergrad.bilevel import METHODS, hypergradient
from convtheory.tree import flatten, unflatten
from convtheory.types import InvalidArgumentError, InvalidTypeError, OracleCount

DT = torch.float64
MU, L, GAMMA = 0.5, 2.0, 0.3


# ---------------------------------------------------------------------------------------------- instances
def _spd(q, gen, mu=MU, L=L):
    O, _ = torch.linalg.qr(torch.randn(q, q, generator=gen, dtype=DT))
    eig = mu + (L - mu) * torch.rand(q, generator=gen, dtype=DT)
    eig[0], eig[-1] = mu, L
    H = O @ torch.diag(eig) @ O.T
    return 0.5 * (H + H.T)


def quadratic(p: int, q: int, seed: int, gamma: float = GAMMA) -> SimpleNamespace:
    """A random quadratic bilevel instance with its closed forms."""
    gen = torch.Generator().manual_seed(seed)
    H = _spd(q, gen)
    B = torch.randn(q, p, generator=gen, dtype=DT)
    b, ybar, y0 = (torch.randn(q, generator=gen, dtype=DT) for _ in range(3))
    x = torch.randn(p, generator=gen, dtype=DT)
    Hinv = torch.linalg.inv(H)

    def g(x, y):
        return 0.5 * y @ H @ y - y @ (B @ x + b)

    def f(x, y):
        return 0.5 * ((y - ybar) ** 2).sum() + 0.5 * gamma * (x**2).sum()

    def y_star(x):
        return torch.linalg.solve(H, B @ x + b)

    def exact(x):
        return gamma * x + B.T @ Hinv @ (y_star(x) - ybar)

    def PN(N, alpha):
        return torch.linalg.matrix_power(torch.eye(q, dtype=DT) - alpha * H, N)

    def y_N(x, N, alpha):
        ys = y_star(x)
        return ys + PN(N, alpha) @ (y0 - ys)

    def J_N(N, alpha):
        return (torch.eye(q, dtype=DT) - PN(N, alpha)) @ Hinv @ B

    def itd_closed(x, N, alpha):
        return gamma * x + J_N(N, alpha).T @ (y_N(x, N, alpha) - ybar)

    return SimpleNamespace(**locals())


def nonquadratic(p: int, q: int, seed: int, gamma: float = GAMMA) -> SimpleNamespace:
    """g = 0.5 y^T H y - y^T(Bx+b) + sum log cosh(y + Cx) (mu >= 0.5, L <= 3), f with softplus and x-y coupling.

    ``grad_y_g`` is written by hand (tanh is the derivative of log cosh), independent of autograd.
    """
    gen = torch.Generator().manual_seed(seed)
    H = _spd(q, gen)
    B, C = torch.randn(q, p, generator=gen, dtype=DT), torch.randn(q, p, generator=gen, dtype=DT)
    b, ybar, y0 = (torch.randn(q, generator=gen, dtype=DT) for _ in range(3))
    x = torch.randn(p, generator=gen, dtype=DT)

    def logcosh(z):
        return z + F.softplus(-2 * z) - torch.log(torch.tensor(2.0, dtype=DT))

    def g(x, y):
        return 0.5 * y @ H @ y - y @ (B @ x + b) + logcosh(y + C @ x).sum()

    def grad_y_g(x, y):
        return H @ y - (B @ x + b) + torch.tanh(y + C @ x)

    def f(x, y):
        return F.softplus(y - ybar).sum() + 0.5 * gamma * (x**2).sum() + 0.2 * torch.sin(x).sum() * y.sum()

    def y_N(x, N, alpha):
        y = y0
        for _ in range(N):
            y = y - alpha * grad_y_g(x, y)
        return y

    def y_star(x):
        return y_N(x, 500, 1.0 / 3.0)  # contraction 1 - 0.5/3 per step: converged to round-off

    return SimpleNamespace(**locals())


def close(a, b, tol):
    return float(torch.linalg.vector_norm(a - b)) <= tol * (1.0 + float(torch.linalg.vector_norm(b)))


def central_differences(fn, x, h=1e-5):
    E = torch.eye(x.numel(), dtype=DT)
    return torch.stack([(fn(x + h * e) - fn(x - h * e)) / (2 * h) for e in E])


def hg(prob, method, N, alpha, **kw):
    return hypergradient(prob.f, prob.g, prob.x, prob.y0, method=method, inner_steps=N, inner_lr=alpha, **kw)


dims = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)
steps = st.integers(0, 12)
fracs = st.floats(0.2, 1.0)  # alpha = frac / L


# -------------------------------------------------------------------------------------------------- ITD
@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds, N=steps, frac=fracs)
def test_itd_is_the_gradient_of_the_unrolled_objective(p, q, seed, N, frac):
    """itd = torch.func.grad of x -> f(x, y_N(x)) and = gamma x + B^T (I - P^N) H^{-1} (y_N - ybar), to 1e-10."""
    prob, alpha = quadratic(p, q, seed), frac / L

    def unrolled(x):
        y = prob.y0
        for _ in range(N):
            y = y - alpha * torch.func.grad(prob.g, argnums=1)(x, y)
        return prob.f(x, y)

    out, info = hg(prob, "itd", N, alpha)
    assert close(out, torch.func.grad(unrolled)(prob.x), 1e-10)
    assert close(out, prob.itd_closed(prob.x, N, alpha), 1e-10)
    assert close(info.inner, prob.y_N(prob.x, N, alpha), 1e-10)
    assert info.oracle == OracleCount(grad=N + 1, hvp=N, jvp=N)


@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds, N=steps, frac=fracs)
def test_itd_forward_equals_itd_and_its_jacobian_is_J_N(p, q, seed, N, frac):
    """Forward-mode ITD = reverse-mode ITD to 1e-10; extra['jacobian'] = (I - P^N) H^{-1} B."""
    prob, alpha = quadratic(p, q, seed), frac / L
    fwd, info = hg(prob, "itd-forward", N, alpha)
    assert close(fwd, hg(prob, "itd", N, alpha)[0], 1e-10)
    assert close(info.extra["jacobian"], prob.J_N(N, alpha), 1e-10)
    assert info.oracle == OracleCount(grad=N + 1, hvp=p * N, jvp=p * N)


# -------------------------------------------------------------------------------------------------- AID
@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds, N=steps, frac=fracs)
def test_aid_fp_with_eta_alpha_and_Q_N_equals_itd(p, q, seed, N, frac):
    """THEORY.md §14 item 19: on quadratics AID-FP with eta = alpha, Q = N is ITD exactly."""
    prob, alpha = quadratic(p, q, seed), frac / L
    fp, _ = hg(prob, "aid-fp", N, alpha, solver_steps=N)
    assert close(fp, hg(prob, "itd", N, alpha)[0], 1e-10)


@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds, N=steps, Q=steps, frac=fracs, eta_frac=fracs)
def test_aid_neumann_Q_equals_aid_fp_Q_plus_1(p, q, seed, N, Q, frac, eta_frac):
    """Neumann with terms 0..Q equals the fixed point with Q + 1 steps (same eta = solver_lr)."""
    prob, alpha, eta = quadratic(p, q, seed), frac / L, eta_frac / L
    nm, info_nm = hg(prob, "aid-neumann", N, alpha, solver_steps=Q, solver_lr=eta)
    fp, info_fp = hg(prob, "aid-fp", N, alpha, solver_steps=Q + 1, solver_lr=eta)
    assert close(nm, fp, 1e-10)
    # closed form of the Neumann v: (I - (I - eta H)^{Q+1}) H^{-1} (y_N - ybar)
    r = prob.y_N(prob.x, N, alpha) - prob.ybar
    v = r - torch.linalg.matrix_power(torch.eye(q, dtype=DT) - eta * prob.H, Q + 1) @ r
    assert close(info_nm.extra["v"], torch.linalg.solve(prob.H, v), 1e-10)
    assert info_nm.oracle == OracleCount(grad=N + 1, hvp=Q, jvp=1)
    assert info_fp.oracle == OracleCount(grad=N + 1, hvp=Q, jvp=1)  # Q + 1 FP steps cost Q products


@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds, N=steps, frac=fracs)
def test_aid_cg_with_dim_y_steps_is_exact_at_y_N(p, q, seed, N, frac):
    """CG is exact in q = dim y steps: aid-cg = gamma x + B^T H^{-1} (y_N - ybar); residuals end near 0."""
    prob, alpha = quadratic(p, q, seed), frac / L
    out, info = hg(prob, "aid-cg", N, alpha, solver_steps=q)
    y_N = prob.y_N(prob.x, N, alpha)
    assert close(out, GAMMA * prob.x + prob.B.T @ torch.linalg.solve(prob.H, y_N - prob.ybar), 1e-10)
    res = info.extra["residual_norms"]
    assert res.shape == (q + 1,)
    assert torch.isclose(res[0], torch.linalg.vector_norm(y_N - prob.ybar))
    assert float(res[-1]) <= 1e-10 * (1 + float(res[0]))
    assert info.oracle == OracleCount(grad=N + 1, hvp=q, jvp=1)


def test_aid_methods_converge_to_exact_as_N_and_Q_grow():
    """Errors to the exact hypergradient decrease in Q (at large N) and in N (at large Q), and fall below 1e-8."""
    prob = quadratic(4, 6, seed=7)
    alpha, exact = 1 / L, prob.exact(prob.x)  # q = 1 - mu/L = 0.75, 0.75^110 ~ 1e-14

    def err(method, N, Q):
        return float(torch.linalg.vector_norm(hg(prob, method, N, alpha, solver_steps=Q)[0] - exact))

    Qs = (1, 2, 4, 8, 16, 32, 64, 110)
    for method in ("aid-neumann", "aid-fp"):
        errs = [err(method, 110, Q) for Q in Qs]
        assert all(a > b for a, b in zip(errs, errs[1:])), (method, errs)
        assert errs[-1] < 1e-8
        errs_N = [err(method, N, 110) for N in (2, 8, 32, 110)]
        assert all(a > b for a, b in zip(errs_N, errs_N[1:])), (method, errs_N)
        assert errs_N[-1] < 1e-8
    cg_errs = [err("aid-cg", 110, Q) for Q in (1, 3, 6)]
    assert cg_errs[0] > cg_errs[1] > cg_errs[2] and cg_errs[2] < 1e-8
    cg_errs_N = [err("aid-cg", N, 6) for N in (2, 8, 32, 110)]
    assert all(a > b for a, b in zip(cg_errs_N, cg_errs_N[1:])) and cg_errs_N[-1] < 1e-8


# ------------------------------------------------------------------------------------------------ exact
@settings(max_examples=25, deadline=None)
@given(p=dims, q=dims, seed=seeds)
def test_exact_equals_closed_form(p, q, seed):
    """Newton + dense solve = gamma x + B^T H^{-1} (H^{-1}(Bx + b) - ybar); one Newton step on a quadratic."""
    prob = quadratic(p, q, seed)
    out, info = hg(prob, "exact", 3, 0.1)
    assert close(out, prob.exact(prob.x), 1e-10)
    assert close(info.inner, prob.y_star(prob.x), 1e-10)
    assert info.extra["newton_steps"] == 1
    assert info.oracle == OracleCount(grad=3, hvp=2 * q, jvp=1)


# ---------------------------------------------------------------------------------------- non-quadratic
@settings(max_examples=10, deadline=None)
@given(p=st.integers(1, 4), q=st.integers(1, 4), seed=seeds, N=st.integers(1, 10))
def test_nonquadratic_itd_and_exact_match_finite_differences(p, q, seed, N):
    """itd = central differences of x -> f(x, y_N(x)); exact = central differences of Phi with a converged y*.

    Tolerance 1e-6 relative: truncation O(h^2) ~ 1e-10 and round-off ~ 1e-11 at h = 1e-5.
    """
    prob, alpha = nonquadratic(p, q, seed), 1.0 / 3.0
    fd_itd = central_differences(lambda x: prob.f(x, prob.y_N(x, N, alpha)), prob.x)
    assert close(hg(prob, "itd", N, alpha)[0], fd_itd, 1e-6)
    assert close(hg(prob, "itd-forward", N, alpha)[0], fd_itd, 1e-6)
    fd_phi = central_differences(lambda x: prob.f(x, prob.y_star(x)), prob.x)
    out, info = hg(prob, "exact", N, alpha)
    assert close(out, fd_phi, 1e-6)
    # y* can be large (|y*| ~ 10 when x is): the residual recomputed here carries round-off ~ 1e-15 |terms|
    assert float(torch.linalg.vector_norm(prob.grad_y_g(prob.x, info.inner))) < 1e-12 * (1 + float(
        torch.linalg.vector_norm(info.inner)) ** 2)
    # AID with a converged inner solve and CG in q steps agrees with exact too
    assert close(hg(prob, "aid-cg", 300, alpha, solver_steps=q)[0], out, 1e-9)


# ------------------------------------------------------------------------------------------------- dicts
def test_dict_valued_x_and_y_give_the_flat_numbers():
    """Every method on dict x and y = the same numbers as on the flattened tensors."""
    prob = quadratic(5, 5, seed=3)
    x_like = {"a": torch.zeros(2, dtype=DT), "b": torch.zeros(1, 3, dtype=DT)}
    y_like = {"u": torch.zeros(3, dtype=DT), "v": torch.zeros(2, 1, dtype=DT)}

    def f_d(xd, yd):
        return prob.f(flatten(xd), flatten(yd))

    def g_d(xd, yd):
        return prob.g(flatten(xd), flatten(yd))

    xd, yd = unflatten(prob.x, x_like), unflatten(prob.y0, y_like)
    kw = dict(inner_steps=4, inner_lr=0.4, solver_steps=3, directions=7, seed=5)
    for method in METHODS:
        flat, info_flat = hypergradient(prob.f, prob.g, prob.x, prob.y0, method=method, **kw)
        tree, info_tree = hypergradient(f_d, g_d, xd, yd, method=method, **kw)
        assert isinstance(tree, dict) and tree["b"].shape == (1, 3), method
        assert isinstance(info_tree.inner, dict) and info_tree.inner["v"].shape == (2, 1), method
        assert close(flatten(tree), flat, 1e-12), method
        assert close(flatten(info_tree.inner), info_flat.inner, 1e-12), method
        assert info_tree.oracle == info_flat.oracle, method


# --------------------------------------------------------------------------------------------------- ESJ
def _esj_setup(p=4, q=5, N=5):
    prob, alpha = quadratic(p, q, seed=13), 1 / L
    itd = hg(prob, "itd", N, alpha)[0]
    a = prob.J_N(N, alpha).T @ (prob.y_N(prob.x, N, alpha) - prob.ybar)  # a = J_N^T grad_y f
    return prob, alpha, N, itd, float(a @ a)


@pytest.mark.parametrize("sphere", [False, True])
def test_esj_mean_over_many_directions_is_itd(sphere):
    """Q = 20000 directions: ||esj - itd|| <= 4 sqrt(MSE), MSE = (p+1)||a||^2/Q (Gaussian), (p-1)||a||^2/Q (sphere).

    ||esj - itd||^2 / MSE is about a weighted chi-square with mean 1, so exceeding 16 has probability below 1e-4.
    """
    prob, alpha, N, itd, a2 = _esj_setup()
    p, Q = prob.p, 20000
    out, info = hg(prob, "esj", N, alpha, directions=Q, seed=0, sphere=sphere)
    mse = ((p - 1) if sphere else (p + 1)) * a2 / Q
    assert float(torch.linalg.vector_norm(out - itd)) <= 4 * mse**0.5
    assert info.extra["directions"].shape == (Q, p)
    assert info.oracle == OracleCount(grad=(Q + 1) * N + 1)
    if sphere:
        assert torch.allclose(torch.linalg.vector_norm(info.extra["directions"], dim=1), torch.ones(Q, dtype=DT))
        assert info.extra["scale"] == p


@pytest.mark.parametrize("sphere", [False, True])
def test_esj_mse_over_seeds_matches_formula(sphere):
    """Empirical MSE over R = 600 seeds (Q = 10 each) is within 4 of its standard errors of (p +- 1)||a||^2/Q."""
    prob, alpha, N, itd, a2 = _esj_setup()
    p, Q, R = prob.p, 10, 600
    sq = torch.stack(
        [
            torch.linalg.vector_norm(hg(prob, "esj", N, alpha, directions=Q, seed=s, sphere=sphere)[0] - itd) ** 2
            for s in range(R)
        ]
    )
    predicted = ((p - 1) if sphere else (p + 1)) * a2 / Q
    se = float(sq.std() / R**0.5)
    assert abs(float(sq.mean()) - predicted) <= 4 * se
    assert se < 0.1 * predicted  # the test can tell p + 1 from p (or p - 1 from p)


def test_esj_is_exact_for_p_1_on_the_sphere_and_reproducible():
    """p = 1, sphere: p u u^T = 1, so esj = itd for any Q; same seed -> same numbers, other seed -> others."""
    prob, alpha = quadratic(1, 3, seed=2), 1 / L
    out, _ = hg(prob, "esj", 6, alpha, directions=3, seed=1, sphere=True)
    assert close(out, hg(prob, "itd", 6, alpha)[0], 1e-10)
    prob = quadratic(3, 3, seed=2)
    a, _ = hg(prob, "esj", 6, alpha, directions=3, seed=1)
    b, _ = hg(prob, "esj", 6, alpha, directions=3, seed=torch.Generator().manual_seed(1))
    c, _ = hg(prob, "esj", 6, alpha, directions=3, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # directions defaults to solver_steps
    d, info = hg(prob, "esj", 6, alpha, solver_steps=3, seed=1)
    assert torch.equal(a, d) and info.extra["directions"].shape == (3, 3)


# ----------------------------------------------------------------------------------------- oracle counts
@pytest.mark.parametrize(
    "method, expected, g_calls",
    [
        ("itd", OracleCount(grad=5, hvp=4, jvp=4), 4),
        ("itd-forward", OracleCount(grad=5, hvp=8, jvp=8), 8),
        ("aid-cg", OracleCount(grad=5, hvp=3, jvp=1), 4 + 1 + 1),
        ("aid-neumann", OracleCount(grad=5, hvp=3, jvp=1), 4 + 1 + 1),
        ("aid-fp", OracleCount(grad=5, hvp=2, jvp=1), 4 + 1 + 1),
        ("esj", OracleCount(grad=(5 + 1) * 4 + 1), 4 + 4),
        ("exact", OracleCount(grad=3, hvp=2 * 3, jvp=1), 2 + 2 + 1),
    ],
)
def test_oracle_counts_are_exact(method, expected, g_calls):
    """N = 4, Q = 3, 5 ES directions, p = 2, q = 3; also the number of Python calls of g (a vmapped call is one).

    g calls: an inner step or a mixed product each trace g once; AID's Hessian-vector products share one reverse
    pass through grad_y g (one call for all Q); a fused VJP/JVP of grad_y g (itd, itd-forward) once per step; a dense
    Hessian once; f is called exactly once.
    """
    prob = quadratic(2, 3, seed=1)
    calls = {"f": 0, "g": 0}

    def f(x, y):
        calls["f"] += 1
        return prob.f(x, y)

    def g(x, y):
        calls["g"] += 1
        return prob.g(x, y)

    _, info = hypergradient(
        f, g, prob.x, prob.y0, method=method, inner_steps=4, inner_lr=0.4, solver_steps=3, directions=5, seed=0
    )
    assert info.oracle == expected
    assert calls == {"f": 1, "g": g_calls}


def test_tensor_step_sizes_and_vmap_over_x():
    """Tensor alpha gives the float-alpha numbers; itd and the AID methods vmap over a batch of x (tasks)."""
    prob = quadratic(3, 4, seed=4)
    X = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    for method in ("itd", "itd-forward", "aid-cg", "aid-neumann", "aid-fp"):
        ref = hg(prob, method, 6, 0.4, solver_steps=3)[0]
        out = hypergradient(prob.f, prob.g, prob.x, prob.y0, method=method, inner_steps=6,
                            inner_lr=torch.tensor(0.4, dtype=DT), solver_steps=3)[0]
        assert close(out, ref, 1e-14), method

        def one(x, method=method):
            return hypergradient(prob.f, prob.g, x, prob.y0, method=method, inner_steps=6, inner_lr=0.4,
                                 solver_steps=3)[0]

        batched = torch.func.vmap(one)(X)
        assert close(batched, torch.stack([one(x) for x in X]), 1e-13), method


@pytest.mark.parametrize("method", ["itd", "aid-cg"])
def test_engine_compiles_into_one_graph(method):
    """torch.compile(fullgraph=True) captures the whole engine (tensor alpha, no graph breaks); same numbers."""
    prob = quadratic(3, 4, seed=1)

    def fn(x, alpha):
        return hypergradient(prob.f, prob.g, x, prob.y0, method=method, inner_steps=5, inner_lr=alpha,
                             solver_steps=4)[0]

    compiled = torch.compile(fn, fullgraph=True, backend="eager")
    out = compiled(prob.x, torch.tensor(0.4, dtype=DT))
    assert close(out, fn(prob.x, 0.4), 1e-14)


# ----------------------------------------------------------------------------------------- invalid input
_OK = dict(inner_steps=2, inner_lr=0.1)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(method="newton"), InvalidArgumentError, ["aid-cg", "esj", "itd"]),
        (dict(inner_steps=-1), InvalidArgumentError, ["inner_steps", "-1", ">= 0"]),
        (dict(inner_steps=2.5), InvalidTypeError, ["inner_steps"]),
        (dict(solver_steps=-3), InvalidArgumentError, ["solver_steps", "-3", ">= 0"]),
        (dict(inner_lr=0.0), InvalidArgumentError, ["inner_lr", "(0, inf)"]),
        (dict(inner_lr=-0.5), InvalidArgumentError, ["inner_lr", "-0.5"]),
        (dict(solver_lr=float("inf")), InvalidArgumentError, ["solver_lr", "inf"]),
        (dict(delta=-1e-3), InvalidArgumentError, ["delta", "-0.001"]),
        (dict(delta=float("nan")), InvalidArgumentError, ["delta", "nan"]),
        (dict(method="esj", directions=5), InvalidArgumentError, ["seed", "None"]),
        (dict(method="esj", directions=0, seed=1), InvalidArgumentError, ["directions", "0", ">= 1"]),
        (dict(method="esj", seed=1, solver_steps=0), InvalidArgumentError, ["directions", ">= 1"]),
        (dict(method="esj", directions=2, seed="abc"), InvalidTypeError, ["seed"]),
        (dict(sphere=1), InvalidTypeError, ["sphere"]),
    ],
)
def test_invalid_arguments_raise_naming_the_value(kwargs, exc, words):
    prob = quadratic(2, 2, seed=0)
    with pytest.raises(exc) as err:
        hypergradient(prob.f, prob.g, prob.x, prob.y0, **{**_OK, **kwargs})
    for w in words:
        assert w in str(err.value), (w, str(err.value))


@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, {}, {"a": [1.0]}])
def test_x_and_y0_must_be_tensors_or_dicts(bad):
    prob = quadratic(2, 2, seed=0)
    with pytest.raises(InvalidTypeError, match="x must be"):
        hypergradient(prob.f, prob.g, bad, prob.y0, **_OK)
    with pytest.raises(InvalidTypeError, match="y0 must be"):
        hypergradient(prob.f, prob.g, prob.x, bad, **_OK)
    with pytest.raises(InvalidTypeError):
        hypergradient(prob.f, "g", prob.x, prob.y0, **_OK)
