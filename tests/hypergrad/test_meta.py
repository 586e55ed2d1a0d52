"""meta_gradient against closed forms (quadratic tasks), dense solves (iMAML) and finite differences."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, vmap

from convtheory.hypergrad import meta_gradient
from convtheory.types import InvalidArgumentError, InvalidTypeError

f64 = torch.float64


def quad_loss(w, data):
    A, a = data
    r = w - a
    return 0.5 * r @ A @ r


def random_spd(B, d, mu, L, gen):
    """B symmetric matrices with eigenvalues in [mu, L] (mu and L attained)."""
    Q, _ = torch.linalg.qr(torch.randn(B, d, d, generator=gen, dtype=f64))
    ev = mu + (L - mu) * torch.rand(B, d, generator=gen, dtype=f64)
    ev[:, 0] = mu
    ev[:, -1] = L
    return Q @ torch.diag_embed(ev) @ Q.transpose(-1, -2)


def quad_tasks(B, d, mu, L, seed):
    gen = torch.Generator().manual_seed(seed)
    A = random_spd(B, d, mu, L, gen)
    C = random_spd(B, d, mu, L, gen)
    a = torch.randn(B, d, generator=gen, dtype=f64)
    b = a + 0.3 * torch.randn(B, d, generator=gen, dtype=f64)
    theta = torch.randn(d, generator=gen, dtype=f64)
    return theta, (A, a), (C, b)


def closed_form_maml(theta, support, query, alpha, N):
    """THEORY.md §1.2: grad = E_i[P_i^N C_i (a_i - b_i + P_i^N (theta - a_i))], P_i = I - alpha A_i."""
    (A, a), (C, b) = support, query
    eye = torch.eye(A.shape[-1], dtype=f64)
    PN = torch.linalg.matrix_power(eye - alpha * A, N)
    wN = a + (PN @ (theta - a).unsqueeze(-1)).squeeze(-1)
    return (PN @ C @ (wN - b).unsqueeze(-1)).squeeze(-1).mean(0), wN


def rel(x, y):
    return float((x - y).norm() / max(float(y.norm()), 1e-4))  # floor: absolute 1e-14 when y vanishes


@settings(max_examples=30, deadline=None)
@given(
    d=st.integers(1, 6),
    B=st.integers(1, 16),
    N=st.integers(1, 20),
    alpha_L=st.floats(0.05, 2.2),
    kappa=st.floats(1.0, 20.0),
    seed=st.integers(0, 10_000),
)
def test_maml_equals_closed_form_on_quadratics(d, B, N, alpha_L, kappa, seed):
    L = 1.5
    theta, sup, qry = quad_tasks(B, d, L / kappa, L, seed)
    alpha = alpha_L / L  # inside and outside 1/L, up to 2.2/L (where the inner loop diverges)
    mg, info = meta_gradient(quad_loss, theta, sup, qry, method="maml", inner_steps=N, inner_lr=alpha, compile="never")
    exact, wN = closed_form_maml(theta, sup, qry, alpha, N)
    assert rel(mg, exact) < 1e-10
    assert rel(info.inner, wN) < 1e-10
    assert info.oracle.grad == B * (N + 1) and info.oracle.hvp == B * N


def test_maml_with_zero_steps_is_joint_training_gradient():
    theta, sup, qry = quad_tasks(4, 3, 0.5, 2.0, 0)
    mg, _ = meta_gradient(quad_loss, theta, sup, qry, inner_steps=0, inner_lr=0.1, compile="never")
    C, b = qry
    assert rel(mg, (C @ (theta - b).unsqueeze(-1)).squeeze(-1).mean(0)) < 1e-12


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 5), B=st.integers(1, 8), N=st.integers(1, 8), seed=st.integers(0, 1000))
def test_fomaml_and_reptile_match_hand_computed_directions(d, B, N, seed):
    theta, sup, qry = quad_tasks(B, d, 0.2, 2.0, seed)
    alpha = 0.3
    _, wN = closed_form_maml(theta, sup, qry, alpha, N)
    C, b = qry
    fo, info = meta_gradient(quad_loss, theta, sup, qry, method="fomaml", inner_steps=N, inner_lr=alpha, compile="never")
    assert rel(fo, (C @ (wN - b).unsqueeze(-1)).squeeze(-1).mean(0)) < 1e-11
    assert info.oracle.grad == B * (N + 1) and info.oracle.hvp == 0
    rep, info = meta_gradient(quad_loss, theta, sup, qry, method="reptile", inner_steps=N, inner_lr=alpha, compile="never")
    assert rel(rep, (theta - wN.mean(0)) / alpha) < 1e-11
    assert info.oracle.grad == B * N


def test_reptile_one_step_is_joint_training_gradient():
    theta, sup, qry = quad_tasks(5, 3, 0.2, 2.0, 3)
    rep, _ = meta_gradient(quad_loss, theta, sup, qry, method="reptile", inner_steps=1, inner_lr=0.1, compile="never")
    A, a = sup
    assert rel(rep, (A @ (theta - a).unsqueeze(-1)).squeeze(-1).mean(0)) < 1e-12


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 5), B=st.integers(1, 6), N=st.integers(1, 6), seed=st.integers(0, 1000))
def test_hfmaml_is_exact_on_quadratics(d, B, N, seed):
    theta, sup, qry = quad_tasks(B, d, 0.2, 2.0, seed)
    exact, _ = closed_form_maml(theta, sup, qry, 0.2, N)
    hf, info = meta_gradient(quad_loss, theta, sup, qry, method="hfmaml", inner_steps=N, inner_lr=0.2, delta=0.5,
                             compile="never")
    assert rel(hf, exact) < 1e-10  # central differences of a linear gradient are exact for any delta
    assert info.oracle.grad == B * (N + 1) + 2 * B * N and info.oracle.hvp == 0


@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 5), B=st.integers(1, 6), lam=st.floats(0.1, 10.0), seed=st.integers(0, 1000))
def test_imaml_equals_dense_implicit_gradient(d, B, lam, seed):
    """Inner problem solved to convergence and CG run d steps: (I + A/lam)^{-1} grad l^q(phi*) exactly."""
    theta, sup, qry = quad_tasks(B, d, 0.2, 2.0, seed)
    A, a = sup
    C, b = qry
    eye = torch.eye(d, dtype=f64)
    phi = torch.linalg.solve(A + lam * eye, (A @ a.unsqueeze(-1)).squeeze(-1) + lam * theta)
    g = torch.linalg.solve(eye + A / lam, (C @ (phi - b).unsqueeze(-1)).squeeze(-1)).mean(0)
    alpha = 1.0 / (2.0 + lam)  # 1/L of the proximal problem: contraction 1 - (0.2+lam)/(2+lam) per step
    mg, info = meta_gradient(quad_loss, theta, sup, qry, method="imaml", inner_steps=3000, inner_lr=alpha, lam=lam,
                             cg_steps=d, compile="never")
    assert rel(info.inner, phi) < 1e-10
    assert rel(mg, g) < 1e-8
    assert info.oracle.hvp == B * d


def mlp_loss(p, data):
    x, y = data
    h = torch.tanh(x @ p["W1"] + p["b1"])
    return ((h @ p["W2"] + p["b2"] - y) ** 2).mean()


def mlp_setup(B=3, K=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = {"W1": torch.randn(2, 6, generator=gen, dtype=f64) * 0.7, "b1": torch.randn(6, generator=gen, dtype=f64),
         "W2": torch.randn(6, 1, generator=gen, dtype=f64) * 0.7, "b2": torch.zeros(1, dtype=f64)}
    sx = torch.randn(B, K, 2, generator=gen, dtype=f64)
    qx = torch.randn(B, K, 2, generator=gen, dtype=f64)
    w = torch.randn(B, 2, 1, generator=gen, dtype=f64)
    return p, (sx, torch.sin(sx @ w)), (qx, torch.sin(qx @ w))


def test_maml_matches_finite_differences_on_a_nonconvex_model():
    """tanh MLP (smooth, nonconvex): directional derivative vs central differences, float64."""
    p, sup, qry = mlp_setup()
    N, alpha = 4, 0.1

    def meta_objective(q):
        def task(s, qd):
            w = q
            for _ in range(N):
                g = grad(mlp_loss)(w, s)
                w = {k: w[k] - alpha * g[k] for k in w}
            return mlp_loss(w, qd)
        return vmap(task)(sup, qry).mean()

    mg, _ = meta_gradient(mlp_loss, p, sup, qry, inner_steps=N, inner_lr=alpha, compile="never")
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = {k: torch.randn(t.shape, generator=gen, dtype=f64) for k, t in p.items()}
        h = 1e-5
        plus = meta_objective({k: p[k] + h * v[k] for k in p})
        minus = meta_objective({k: p[k] - h * v[k] for k in p})
        fd = (plus - minus) / (2 * h)
        analytic = sum((mg[k] * v[k]).sum() for k in p)
        assert abs(float(fd - analytic)) <= 1e-7 * max(1.0, abs(float(fd)))


def test_hfmaml_error_shrinks_like_delta_squared_on_smooth_loss():
    p, sup, qry = mlp_setup(seed=2)
    exact, _ = meta_gradient(mlp_loss, p, sup, qry, inner_steps=3, inner_lr=0.1, compile="never")
    errs = []
    for delta in (1e-1, 1e-2):
        hf, _ = meta_gradient(mlp_loss, p, sup, qry, method="hfmaml", inner_steps=3, inner_lr=0.1, delta=delta,
                              compile="never")
        errs.append(sum(float((hf[k] - exact[k]).norm() ** 2) for k in p) ** 0.5)
    assert errs[1] < errs[0] / 30  # O(delta^2): a factor 100 in theory, 30 allowed


def test_anil_with_every_parameter_adapting_equals_maml():
    p, sup, qry = mlp_setup()
    m, _ = meta_gradient(mlp_loss, p, sup, qry, inner_steps=3, inner_lr=0.1, compile="never")
    a, info = meta_gradient(mlp_loss, p, sup, qry, method="anil", inner_steps=3, inner_lr=0.1,
                            inner_params=tuple(p), compile="never")
    for k in p:
        assert torch.allclose(m[k], a[k], rtol=1e-12, atol=1e-14)


def test_anil_adapts_only_the_head_and_matches_its_closed_form():
    """ANIL on a head-only inner loop: the body's adapted value is theta, and the gradient equals the one of
    an explicitly unrolled head loop (torch.func.grad), THEORY.md §7."""
    p, sup, qry = mlp_setup()
    head = ("W2", "b2")
    mg, info = meta_gradient(mlp_loss, p, sup, qry, method="anil", inner_steps=3, inner_lr=0.1, inner_params=head,
                             compile="never")
    assert torch.equal(info.inner["W1"], p["W1"].expand_as(info.inner["W1"]))

    def meta_objective(q):
        def task(s, qd):
            w = dict(q)
            for _ in range(3):
                g = grad(mlp_loss)(w, s)
                w = {k: (w[k] - 0.1 * g[k]) if k in head else w[k] for k in w}
            return mlp_loss(w, qd)
        return vmap(task)(sup, qry).mean()

    ref = grad(meta_objective)(p)
    for k in p:
        assert torch.allclose(mg[k], ref[k], rtol=1e-11, atol=1e-14)


def test_tensor_and_dict_params_agree():
    theta, sup, qry = quad_tasks(4, 3, 0.5, 2.0, 7)
    t, _ = meta_gradient(quad_loss, theta, sup, qry, inner_steps=3, inner_lr=0.2, compile="never")
    d, _ = meta_gradient(lambda p, data: quad_loss(p["w"], data), {"w": theta}, sup, qry, inner_steps=3,
                         inner_lr=0.2, compile="never")
    assert torch.allclose(t, d["w"], rtol=0, atol=0)


def test_dict_data_and_separate_query_loss():
    theta, (A, a), (C, b) = quad_tasks(3, 2, 0.5, 2.0, 8)
    sup = {"A": A, "a": a}
    qry = {"C": C, "b": b}
    mg, _ = meta_gradient(lambda w, s: quad_loss(w, (s["A"], s["a"])), theta, sup, qry, inner_steps=2,
                          inner_lr=0.2, query_loss=lambda w, q: quad_loss(w, (q["C"], q["b"])), compile="never")
    exact, _ = closed_form_maml(theta, (A, a), (C, b), 0.2, 2)
    assert rel(mg, exact) < 1e-12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "mamll"}, "method = 'mamll' is unknown; valid: anil, fomaml"),
        ({"inner_steps": -1}, "inner_steps = -1"),
        ({"inner_lr": 0.0}, r"inner_lr = 0 is invalid; it must be finite and in \(0, inf\)"),
        ({"inner_lr": -0.1}, "inner_lr = -0.1"),
        ({"inner_lr": float("nan")}, "inner_lr = nan"),
        ({"method": "imaml", "lam": -1.0}, "lam = -1"),
        ({"method": "anil"}, "needs inner_params"),
    ],
)
def test_bad_input_raises_named_value_error(kwargs, match):
    theta, sup, qry = quad_tasks(2, 2, 0.5, 2.0, 0)
    with pytest.raises(InvalidArgumentError, match=match):
        meta_gradient(lambda p, d: quad_loss(p["w"], d), {"w": theta}, sup, qry, compile="never", **kwargs)


def test_task_count_mismatch_is_reported():
    theta, sup, qry = quad_tasks(3, 2, 0.5, 2.0, 0)
    with pytest.raises(InvalidArgumentError, match="support has 3 tasks but query has 2"):
        meta_gradient(quad_loss, theta, sup, (qry[0][:2], qry[1][:2]), compile="never")
    with pytest.raises(InvalidArgumentError, match="disagree on the task axis"):
        meta_gradient(quad_loss, theta, (sup[0], sup[1][:2]), qry, compile="never")


def test_bad_types_are_reported():
    theta, sup, qry = quad_tasks(2, 2, 0.5, 2.0, 0)
    with pytest.raises(InvalidTypeError, match="params must be a tensor"):
        meta_gradient(quad_loss, [theta], sup, qry)
    with pytest.raises(InvalidTypeError, match="support must be a tensor"):
        meta_gradient(quad_loss, theta, "abc", qry)
    with pytest.raises(InvalidTypeError, match="inner_steps must be an integer"):
        meta_gradient(quad_loss, theta, sup, qry, inner_steps=1.5)


def test_compiled_path_matches_eager_and_does_not_recompile_for_new_values():
    """Second call compiles; new alpha, parameter and data values reuse the compiled function (float64)."""
    from torch._dynamo.utils import counters

    from convtheory.hypergrad import cache_info, clear_cache

    clear_cache()
    theta, sup, qry = quad_tasks(6, 3, 0.5, 2.0, 11)
    meta_gradient(quad_loss, theta, sup, qry, inner_steps=4, inner_lr=0.1)  # eager, first call
    meta_gradient(quad_loss, theta, sup, qry, inner_steps=4, inner_lr=0.1)  # compiles
    assert cache_info() == {"entries": 1, "compiled": 1}
    frames = counters["frames"]["ok"]
    for i, alpha in enumerate((0.05, 0.2, 0.31)):
        t2, s2, q2 = quad_tasks(6, 3, 0.3, 3.0, 100 + i)
        mg, _ = meta_gradient(quad_loss, t2, s2, q2, inner_steps=4, inner_lr=alpha)
        exact, _ = closed_form_maml(t2, s2, q2, alpha, 4)
        assert rel(mg, exact) < 1e-12
    assert counters["frames"]["ok"] == frames, "a new alpha or new values recompiled"
    meta_gradient(quad_loss, theta, sup, qry, inner_steps=5, inner_lr=0.1)  # new N: a new entry, eager first
    assert cache_info()["entries"] == 2


def test_maml_matches_finite_differences_on_the_nonconvex_family():
    """RobustRegressionTasks (Geman-McClure link, smooth and nonconvex): the exact MAML gradient's directional
    derivatives equal central differences of the unrolled meta-objective (float64, h = 1e-5, tolerance 1e-7)."""
    from convtheory.problems import RobustRegressionTasks

    fam = RobustRegressionTasks(d=4, S=8, D=8)
    tasks = fam.sample(5, 3)
    theta = fam.init_params(4)
    N, alpha = 3, 0.5 / tasks.constants.L

    def meta_objective(w0):
        def task(s, q):
            w = w0
            for _ in range(N):
                w = w - alpha * grad(tasks.loss)(w, s)
            return tasks.outer_loss(w, q)
        return vmap(task)(tasks.support, tasks.query).mean()

    mg, _ = meta_gradient(tasks.loss, theta, tasks.support, tasks.query, inner_steps=N, inner_lr=alpha,
                          query_loss=tasks.outer_loss, compile="never")
    gen = torch.Generator().manual_seed(5)
    for _ in range(4):
        v = torch.randn(theta.shape, generator=gen, dtype=f64)
        fd = (meta_objective(theta + 1e-5 * v) - meta_objective(theta - 1e-5 * v)) / 2e-5
        assert abs(float(fd - mg @ v)) <= 1e-7 * max(1.0, abs(float(fd)))


def test_each_configuration_compiles_on_its_own_code_object():
    """Dynamo falls back to eager once a code object has recompile_limit graphs; every configuration gets its own
    code object, so even with the limit at 1, three configurations are all compiled (no eager fallback)."""
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters

    from convtheory.hypergrad import clear_cache

    clear_cache()
    old = dynamo_config.recompile_limit
    dynamo_config.recompile_limit = 1
    try:
        for N in (1, 2, 3):
            theta, sup, qry = quad_tasks(3, 2, 0.5, 2.0, N)
            before = counters["frames"]["ok"]
            mg, _ = meta_gradient(quad_loss, theta, sup, qry, inner_steps=N, inner_lr=0.1, compile="always")
            assert counters["frames"]["ok"] == before + 1, f"configuration N={N} was not compiled"
            assert rel(mg, closed_form_maml(theta, sup, qry, 0.1, N)[0]) < 1e-12
    finally:
        dynamo_config.recompile_limit = old


@pytest.mark.parametrize("compile_mode", ["never", "always"])
@pytest.mark.parametrize("N", [1, 3])
def test_alpha_grad_equals_the_exact_derivative_of_the_meta_objective(N, compile_mode):
    """meta_gradient(alpha_grad=True): d L / d alpha of the exact N-step meta-objective (closed form differentiated
    by autograd in alpha, float64), to 1e-10 relative; the meta-gradient itself unchanged; same oracle counts."""
    from convtheory.problems import QuadraticTasks
    from convtheory.problems.quadratic import exact_meta_objective

    fam = QuadraticTasks(d=4)
    tasks, theta = fam.sample(6, 3), fam.init_params(3)
    alpha = 0.3
    mg, info = meta_gradient(tasks.loss, theta, tasks.support, tasks.query, inner_steps=N, inner_lr=alpha,
                             query_loss=tasks.query_loss, compile=compile_mode, alpha_grad=True)
    plain, plain_info = meta_gradient(tasks.loss, theta, tasks.support, tasks.query, inner_steps=N, inner_lr=alpha,
                                      query_loss=tasks.query_loss, compile="never")
    a = torch.tensor(alpha, dtype=torch.float64)
    exact = grad(lambda al: exact_meta_objective(theta, tasks, al, N))(a)
    assert torch.allclose(info.extra["alpha_grad"], exact, rtol=1e-10, atol=1e-14)
    assert torch.allclose(mg, plain, rtol=1e-12, atol=1e-14)
    assert info.oracle == plain_info.oracle


def test_alpha_grad_is_refused_where_it_is_not_defined():
    A = torch.eye(2, dtype=torch.float64).expand(3, 2, 2)
    loss = lambda w, A: 0.5 * w @ A @ w  # noqa: E731
    with pytest.raises(InvalidArgumentError, match="alpha_grad"):
        meta_gradient(loss, torch.ones(2, dtype=torch.float64), A, A, method="fomaml", alpha_grad=True)
