"""Quadratic and linear-regression families: exact constants, sampling, and exact MAML oracles vs autograd."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, vmap

from convtheory.problems.base import MetaTasks
from convtheory.problems.quadratic import (
    LinearRegressionTasks,
    QuadraticTasks,
    exact_inner_iterates,
    exact_meta_gradient,
    exact_meta_objective,
    maml_adapted,
    meta_hessian,
    meta_spectrum,
    tasks_from_quadratics,
)
from convtheory.types import InvalidArgumentError, InvalidTypeError

RTOL = 1e-10
FAST = settings(max_examples=25, deadline=None)


# ------------------------------------------------------------------------------------------ references
def unrolled_objective(theta, tasks: MetaTasks, alpha, N):
    """Reference: N explicit GD steps on each task's support loss (autograd), query loss, mean over tasks."""

    def one(sup, qry):
        w = theta
        for _ in range(N):
            w = w - alpha * grad(tasks.loss)(w, sup)
        return tasks.outer_loss(w, qry)

    return vmap(one)(tasks.support, tasks.query).mean()


def term_scale(theta, tasks, alpha, N):
    """Size of the terms the meta-gradient is computed from, mean_i ||P_i^N|| (||C_i|| ||w_N^i|| + ||e_i||).

    Rounding in float64 is relative to these terms (C_i w_N - e_i cancels near the task optimum), so the 1e-10
    tolerance is taken relative to them as well as to the result.
    """
    A, C, e = tasks.exact["A"], tasks.exact["C"], tasks.exact["e"]
    P = torch.eye(A.shape[-1], dtype=A.dtype) - alpha * A
    PN = torch.linalg.matrix_power(P, N)
    wN = maml_adapted(theta, A, tasks.exact["c"], alpha, N)
    r = torch.linalg.matrix_norm(C, ord=2) * wN.norm(dim=-1) + e.norm(dim=-1)
    return float((torch.linalg.matrix_norm(PN, ord=2) * r).mean())


def assert_close(x, ref, scale=0.0, rtol=RTOL, atol=1e-14):
    """atol: when alpha * lambda = 1 exactly, P^N = 0 and the terms vanish in exact arithmetic, while autograd's
    unrolled path still rounds at 1e-16 of the O(1) data (seen with d = 1, mu = L = 1, alpha = 1)."""
    err = float((x - ref).norm())
    assert err <= rtol * (float(ref.norm()) + scale) + atol, (err, float(ref.norm()), scale)


def oracle_case(draw_tasks):
    """Hypothesis strategy: (tasks, theta, alpha, N) with alpha in (0, 2.5/L]."""

    @st.composite
    def case(draw):
        tasks = draw(draw_tasks)
        L = max(tasks.constants.L, 1e-3)
        alpha = draw(st.floats(0.01, 2.5)) / L
        N = draw(st.integers(0, 20))
        d = tasks.exact["A"].shape[-1]
        theta = torch.randn(d, generator=torch.Generator().manual_seed(draw(st.integers(0, 10**6))),
                            dtype=torch.float64)
        return tasks, theta, alpha, N

    return case()


@st.composite
def quadratic_tasks(draw):
    d = draw(st.integers(1, 6))
    L = draw(st.floats(0.1, 10.0))
    mu = L * draw(st.floats(0.01, 1.0))
    fam = QuadraticTasks(d=d, mu=mu, L=L, query=draw(st.sampled_from(["same", "independent"])),
                         query_shift=draw(st.floats(0.0, 2.0)), shared_curvature=draw(st.booleans()))
    return fam.sample(draw(st.integers(1, 16)), draw(st.integers(0, 10**6)))


@st.composite
def regression_tasks(draw):
    d = draw(st.integers(1, 6))
    L = draw(st.floats(0.1, 5.0))
    fam = LinearRegressionTasks(d=d, S=draw(st.integers(1, 8)), D=draw(st.integers(1, 8)), mu=L * 0.1, L=L,
                                sigma2=draw(st.floats(0.0, 1.0)))
    return fam.sample(draw(st.integers(1, 16)), draw(st.integers(0, 10**6)))


# ------------------------------------------------------------------------------------------ exact oracles
@FAST
@given(oracle_case(quadratic_tasks()))
def test_meta_gradient_equals_autograd_through_unrolled_steps(case):
    tasks, theta, alpha, N = case
    ref = grad(unrolled_objective)(theta, tasks, alpha, N)
    assert_close(exact_meta_gradient(theta, tasks, alpha, N), ref, term_scale(theta, tasks, alpha, N))


@FAST
@given(oracle_case(regression_tasks()))
def test_meta_gradient_equals_autograd_on_linear_regression(case):
    tasks, theta, alpha, N = case
    ref = grad(unrolled_objective)(theta, tasks, alpha, N)
    assert_close(exact_meta_gradient(theta, tasks, alpha, N), ref, term_scale(theta, tasks, alpha, N))


@FAST
@given(oracle_case(st.one_of(quadratic_tasks(), regression_tasks())))
def test_meta_objective_equals_unrolled_objective(case):
    tasks, theta, alpha, N = case
    ref = unrolled_objective(theta, tasks, alpha, N)
    got = exact_meta_objective(theta, tasks, alpha, N)
    assert abs(float(got - ref)) <= RTOL * abs(float(ref)) + 1e-13


@FAST
@given(oracle_case(st.one_of(quadratic_tasks(), regression_tasks())))
def test_meta_hessian_equals_hessian_of_exact_objective(case):
    tasks, theta, alpha, N = case
    ref = hessian(exact_meta_objective)(theta, tasks, alpha, N)
    H = meta_hessian(tasks, alpha, N)
    assert_close(H, ref, float(torch.linalg.matrix_norm(H, ord=2)))
    assert torch.equal(H, H.T)


@FAST
@given(oracle_case(quadratic_tasks()))
def test_meta_gradient_matches_theory_closed_form(case):
    """THEORY.md §1.2: grad = E_i[P_i^N C_i (a_i - b_i + P_i^N (theta - a_i))] on the population family."""
    tasks, theta, alpha, N = case
    A, C, a, b = (tasks.exact[k] for k in ("A", "C", "a", "b"))
    PN = torch.linalg.matrix_power(torch.eye(A.shape[-1], dtype=A.dtype) - alpha * A, N)
    inner = a - b + (PN @ (theta - a).unsqueeze(-1)).squeeze(-1)
    ref = (PN @ C @ inner.unsqueeze(-1)).squeeze(-1).mean(0)
    assert_close(exact_meta_gradient(theta, tasks, alpha, N), ref, term_scale(theta, tasks, alpha, N))
    wN = a + (PN @ (theta - a).unsqueeze(-1)).squeeze(-1)
    got = maml_adapted(theta, A, tasks.exact["c"], alpha, N)
    assert float((got - wN).norm()) <= RTOL * (float(wN.norm()) + float(torch.linalg.matrix_norm(PN, 2).max()))


@FAST
@given(oracle_case(st.one_of(quadratic_tasks(), regression_tasks())))
def test_inner_iterates_end_at_maml_adapted(case):
    tasks, theta, alpha, N = case
    A, c = tasks.exact["A"], tasks.exact["c"]
    its = exact_inner_iterates(theta, A, c, alpha, N)
    assert its.shape == (N + 1, A.shape[0], A.shape[-1])
    assert torch.equal(its[0], theta.expand_as(its[0]))
    end = maml_adapted(theta, A, c, alpha, N)
    # rounding made at step t is amplified by at most ||P||^(N - t) in the remaining steps
    p = float(torch.linalg.matrix_norm(torch.eye(A.shape[-1], dtype=A.dtype) - alpha * A, ord=2).max())
    size = its.norm(dim=-1).amax(-1) + alpha * float(c.norm(dim=-1).max())
    scale = max(p ** (N - t) * float(size[t]) for t in range(N + 1))
    assert float((its[-1] - end).norm()) <= RTOL * scale


def test_shared_curvature_meta_smoothness_closed_form():
    """THEORY.md §1.2: shared A = C with spectrum Lambda gives L_meta = max_lambda lambda (1 - alpha lambda)^(2N)."""
    fam = QuadraticTasks(d=4, mu=0.2, L=3.0, shared_curvature=True)
    tasks = fam.sample(5, 3)
    lam = tasks.exact["eigenvalues"][0]
    for alpha, N in [(0.1, 0), (0.1, 7), (0.3, 3), (0.8, 4)]:
        ref = (lam * (1 - alpha * lam) ** (2 * N)).max()
        assert math.isclose(float(meta_spectrum(tasks, alpha, N)[-1]), float(ref), rel_tol=1e-10)


def test_tensor_alpha_is_differentiable_like_unrolled():
    tasks = QuadraticTasks(d=3, query="independent", query_shift=1.0).sample(4, 0)
    theta = torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha = torch.tensor(0.7, dtype=torch.float64)
    ref = grad(lambda a: unrolled_objective(theta, tasks, a, 6))(alpha)
    got = grad(lambda a: exact_meta_objective(theta, tasks, a, 6))(alpha)
    assert math.isclose(float(got), float(ref), rel_tol=1e-10)


def test_indefinite_tasks_from_quadratics():
    """Oracles hold for indefinite inner Hessians (THEORY.md §1.2 nonconvex inner case); constants are exact."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(3, 4, 4, generator=g, dtype=torch.float64))[0]
    lam = torch.tensor([-0.5, 0.3, 1.0, 2.0], dtype=torch.float64).expand(3, 4)
    A = (Q * lam.unsqueeze(-2)) @ Q.transpose(-1, -2)
    A = 0.5 * (A + A.transpose(-1, -2))
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    tasks = tasks_from_quadratics(A, a)
    assert math.isclose(tasks.constants.mu, -0.5, rel_tol=1e-12)
    assert math.isclose(tasks.constants.L, 2.0, rel_tol=1e-12)
    theta = torch.randn(4, generator=g, dtype=torch.float64)
    ref = grad(unrolled_objective)(theta, tasks, 0.2, 9)
    assert_close(exact_meta_gradient(theta, tasks, 0.2, 9), ref, term_scale(theta, tasks, 0.2, 9))


def test_oracles_refuse_bad_arguments():
    tasks = QuadraticTasks(d=2).sample(2, 0)
    theta = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="N = -1"):
        exact_meta_gradient(theta, tasks, 0.1, -1)
    with pytest.raises(InvalidArgumentError, match="alpha = -0.1"):
        meta_hessian(tasks, -0.1, 3)
    with pytest.raises(InvalidArgumentError, match="lacks"):
        exact_meta_objective(theta, MetaTasks(tasks.support, tasks.query, tasks.loss, tasks.constants), 0.1, 1)


# ------------------------------------------------------------------------------------------ constants
@FAST
@given(st.integers(1, 6), st.floats(0.1, 10.0), st.floats(0.01, 1.0), st.integers(1, 8), st.integers(0, 10**6),
       st.sampled_from(["same", "independent"]))
def test_quadratic_constants_are_exact_hessian_extremes(d, L, ratio, B, seed, query):
    mu = ratio * L
    tasks = QuadraticTasks(d=d, mu=mu, L=L, query=query).sample(B, seed)
    w = torch.randn(B, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    H = vmap(hessian(tasks.loss))(w, tasks.support)
    ev = torch.linalg.eigvalsh(H)
    c = tasks.constants
    assert {"L", "mu"} <= c.exact
    assert float(ev.max()) <= c.L * (1 + 1e-12) and float(ev.min()) >= c.mu * (1 - 1e-12) - 1e-12
    assert math.isclose(float(ev.max()), c.L, rel_tol=1e-10) and math.isclose(float(ev.min()), c.mu, rel_tol=1e-9)
    if d >= 2:
        assert c.L == L and c.mu == mu
    assert mu <= c.mu <= c.L <= L
    evC = torch.linalg.eigvalsh(vmap(hessian(tasks.outer_loss))(w, tasks.query))
    assert math.isclose(float(evC.max()), c.extra["L_query"], rel_tol=1e-10)
    assert math.isclose(float(evC.min()), c.extra["mu_query"], rel_tol=1e-9)


@FAST
@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12), st.integers(1, 8), st.integers(0, 10**6))
def test_regression_constants_are_exact_hessian_extremes(d, S, D, B, seed):
    fam = LinearRegressionTasks(d=d, S=S, D=D, mu=0.2, L=2.0, sigma2=0.3)
    tasks = fam.sample(B, seed)
    w = torch.zeros(B, d, dtype=torch.float64)
    evS = torch.linalg.eigvalsh(vmap(hessian(tasks.loss))(w, tasks.support))
    evQ = torch.linalg.eigvalsh(vmap(hessian(tasks.loss))(w, tasks.query))
    c = tasks.constants
    top = max(float(evS.max()), float(evQ.max()))
    bottom = min(float(evS.min()), float(evQ.min()))
    assert math.isclose(c.L, top, rel_tol=1e-10)
    assert abs(c.mu - max(bottom, 0.0)) <= 1e-10 * c.L
    assert c.sigma2 == 0.3 and c.rho == 0.0
    Sigma, lam = fam.population_covariance()
    assert math.isclose(c.extra["L_pop"], float(torch.linalg.eigvalsh(Sigma).max()), rel_tol=1e-12)
    assert math.isclose(c.extra["mu_pop"], float(torch.linalg.eigvalsh(Sigma).min()), rel_tol=1e-10)
    if d >= 2:
        assert math.isclose(c.extra["L_pop"], 2.0, rel_tol=1e-12) and math.isclose(c.extra["mu_pop"], 0.2,
                                                                                    rel_tol=1e-10)


def test_regression_noise_variance_and_covariance_match_population():
    fam = LinearRegressionTasks(d=3, S=400, D=400, mu=0.5, L=2.0, sigma2=0.25)
    tasks = fam.sample(40, 11)
    X, y = tasks.support
    resid = y - (X @ tasks.exact["w_true"].unsqueeze(-1)).squeeze(-1)
    var = float(resid.var())  # 16000 draws: relative standard error about 1.1%
    assert abs(var - 0.25) < 0.06 * 0.25
    emp = (X.transpose(-1, -2) @ X).sum(0) / (40 * 400)
    assert float(torch.linalg.matrix_norm(emp - tasks.exact["Sigma"], 2)) < 0.1


def test_quadratic_optima_spread_and_query_shift():
    fam = QuadraticTasks(d=4, center=2.0, task_spread=0.5, query_shift=0.3)
    tasks = fam.sample(4000, 5)
    a, b = tasks.exact["a"], tasks.exact["b"]
    assert float((a.mean(0) - 1.0).abs().max()) < 0.05  # mean = center / sqrt(d) * 1
    assert abs(float(a.std(0).mean()) - 0.5) < 0.02
    assert abs(float((b - a).std(0).mean()) - 0.3) < 0.02
    A, C = tasks.exact["A"], tasks.exact["C"]
    assert torch.equal(A, C)
    assert torch.allclose(tasks.exact["c"], (A @ a.unsqueeze(-1)).squeeze(-1))


# ------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("fam", [QuadraticTasks(d=3, query="independent", query_shift=1.0),
                                 LinearRegressionTasks(d=3, S=4, D=6)])
def test_sampling_is_deterministic_and_seed_dependent(fam):
    t1, t2, t3 = fam.sample(5, 7), fam.sample(5, 7), fam.sample(5, 8)
    for x, y, z in zip(t1.support + t1.query, t2.support + t2.query, t3.support + t3.query):
        assert torch.equal(x, y)
        assert not torch.equal(x, z)
        assert x.dtype == torch.float64 and x.shape[0] == 5
    assert t1.constants == t2.constants
    assert torch.equal(fam.init_params(3), fam.init_params(3))
    assert not torch.equal(fam.init_params(3), fam.init_params(4))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(fam.sample(5, g1).support[0], fam.sample(5, g2).support[0])


def test_shapes_and_dtype():
    t = QuadraticTasks(d=3).sample(4, 0)
    assert t.support[0].shape == (4, 3, 3) and t.support[1].shape == (4, 3)
    assert t.num_tasks == 4
    r = LinearRegressionTasks(d=3, S=5, D=7, dtype=torch.float32).sample(4, 0)
    assert r.support[0].shape == (4, 5, 3) and r.support[1].shape == (4, 5)
    assert r.query[0].shape == (4, 7, 3) and r.query[1].shape == (4, 7)
    assert r.support[0].dtype == torch.float32 and r.exact["A"].dtype == torch.float32
    assert QuadraticTasks(d=3, dtype=torch.float32).init_params(0).dtype == torch.float32


def test_shared_curvature_is_the_same_across_tasks_and_batches():
    fam = QuadraticTasks(d=3, shared_curvature=True, query="independent")
    t1, t2 = fam.sample(3, 0), fam.sample(2, 1)
    A1, A2 = t1.exact["A"], t2.exact["A"]
    assert torch.equal(A1[0], A1[2]) and torch.equal(A1[0], A2[1])
    assert torch.equal(t1.exact["C"][0], t2.exact["C"][0]) and not torch.equal(A1[0], t1.exact["C"][0])


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("kwargs, match", [
    (dict(mu=2.0, L=1.0), "mu = 2 > L = 1"),
    (dict(mu=0.0), "mu = 0"),
    (dict(mu=-1.0), "mu = -1"),
    (dict(d=0), "d = 0"),
    (dict(task_spread=-0.1), "task_spread = -0.1"),
    (dict(query_shift=-1.0), "query_shift = -1"),
    (dict(query="other"), "query = 'other'"),
    (dict(dtype=torch.int64), "dtype"),
])
def test_quadratic_invalid_config(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        QuadraticTasks(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mu=3.0, L=1.0), "mu = 3 > L = 1"),
    (dict(mu=0.0), "mu = 0"),
    (dict(d=0), "d = 0"),
    (dict(S=0), "S = 0"),
    (dict(sigma2=-0.5), "sigma2 = -0.5"),
])
def test_regression_invalid_config(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        LinearRegressionTasks(**kwargs)


def test_invalid_types_and_batch():
    with pytest.raises(InvalidTypeError):
        QuadraticTasks(d=2.5)
    with pytest.raises(InvalidArgumentError, match="B = 0"):
        QuadraticTasks().sample(0, 0)
    with pytest.raises(InvalidTypeError):
        QuadraticTasks().sample(2, None)
