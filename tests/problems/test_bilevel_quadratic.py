"""Quadratic bilevel family (THEORY.md §1.3): oracles, closed-form estimator answers and constants checked against
autograd (torch.func), dense solves, explicit loops, finite differences and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacrev, jvp, vmap

from convtheory.problems.base import BilevelProblem
from convtheory.problems.bilevel_quadratic import (
    QuadraticBilevel,
    aid_fp_exact,
    esj_moments,
    fixed_point_v_exact,
    inner_iterate_exact,
    itd_error_exact,
    itd_hypergradient_exact,
    neumann_exact,
)
from convtheory.types import Constants, InvalidArgumentError, InvalidTypeError

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def instances(draw):
    """A random small instance (p, q in 1..6) and a seed for the test's own random draws."""
    p, q = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    mu = draw(st.floats(0.05, 1.0))
    kappa = 1.0 if q == 1 else draw(st.floats(1.0, 20.0))
    cfg = QuadraticBilevel(
        p=p,
        q=q,
        mu=mu,
        L=mu * kappa,
        gamma=draw(st.floats(0.0, 1.0)),
        b_scale=draw(st.floats(0.1, 2.0)),
        spectrum=draw(st.sampled_from(["uniform", "linspace"])),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return cfg.build(seed), torch.Generator().manual_seed(seed + 1)


def rel_close(a, b, rtol):
    """||a - b|| <= rtol * max(1, ||b||)."""
    return float(torch.linalg.vector_norm(a - b)) <= rtol * max(1.0, float(torch.linalg.vector_norm(b)))


def unrolled_yN(prob: BilevelProblem, x, y0, alpha, N):
    """N explicit GD steps on g(x, .) with autograd gradients (the reference ITD forward pass)."""
    gy = grad(prob.g, argnums=1)
    y = y0
    for _ in range(N):
        y = y - alpha * gy(x, y)
    return y


def unrolled_itd(prob, x, y0, alpha, N):
    return grad(lambda xx: prob.f(xx, unrolled_yN(prob, xx, y0, alpha, N)))(x)


def dense_ift(prob, x, y):
    """grad_x f - (d_x grad_y g)^T [grad_yy g]^{-1} grad_y f at (x, y), all by torch.func."""
    Hyy = hessian(prob.g, argnums=1)(x, y)
    Jyx = jacrev(grad(prob.g, argnums=1), argnums=0)(x, y)  # (q, p)
    fy = grad(prob.f, argnums=1)(x, y)
    fx = grad(prob.f, argnums=0)(x, y)
    return fx - Jyx.T @ torch.linalg.solve(Hyy, fy)


def hvp_y(prob, x, y, v):
    return jvp(lambda yy: grad(prob.g, argnums=1)(x, yy), (y,), (v,))[1]


def mixed_vjp(prob, x, y, v):
    """(d_x grad_y g)^T v by autograd."""
    return grad(lambda xx: torch.dot(grad(prob.g, argnums=1)(xx, y), v))(x)


def rand(prob, gen, which):
    like = prob.x0 if which == "x" else prob.y0
    return torch.randn(like.shape, generator=gen, dtype=like.dtype)


# --------------------------------------------------------------------------------------------- exact oracles
@SETTINGS
@given(instances())
def test_y_star_is_stationary(inst):
    prob, gen = inst
    x = rand(prob, gen, "x")
    gy = grad(prob.g, argnums=1)(x, prob.y_star(x))
    scale = 1.0 + float(torch.linalg.vector_norm(prob.extra["B"] @ x + prob.extra["b"]))
    assert float(torch.linalg.vector_norm(gy)) <= 1e-10 * scale


@SETTINGS
@given(instances())
def test_hypergradient_equals_dense_implicit_function_formula(inst):
    prob, gen = inst
    x = rand(prob, gen, "x")
    assert rel_close(prob.hypergradient(x), dense_ift(prob, x, prob.y_star(x)), 1e-9)


@SETTINGS
@given(instances())
def test_hypergradient_equals_central_finite_differences_of_phi(inst):
    prob, gen = inst
    x = rand(prob, gen, "x")
    phi = lambda xx: prob.f(xx, prob.y_star(xx))  # noqa: E731
    h = 1e-3  # Phi is quadratic: central differences are exact up to rounding
    E = torch.eye(x.numel(), dtype=x.dtype)
    fd = torch.stack([(phi(x + h * e) - phi(x - h * e)) / (2 * h) for e in E])
    assert rel_close(fd, prob.hypergradient(x), 1e-6)


@SETTINGS
@given(instances())
def test_x_star_is_stationary_and_attains_phi_star(inst):
    prob, _ = inst
    xs = prob.extra["x_star"]
    assert rel_close(prob.hypergradient(xs), torch.zeros_like(xs), 1e-9 * (1 + prob.constants.extra["L_Phi"]))
    phi = prob.extra["phi"](xs)
    assert math.isclose(float(phi), prob.constants.extra["Phi_star"], rel_tol=1e-12, abs_tol=1e-12)
    # Phi is convex: no random point does better
    gen = torch.Generator().manual_seed(0)
    others = xs + torch.randn(20, xs.numel(), generator=gen, dtype=xs.dtype)
    assert bool((vmap(prob.extra["phi"])(others) >= phi - 1e-10 * (1 + abs(float(phi)))).all())


# ------------------------------------------------------------------------------- ITD / AID closed forms
@SETTINGS
@given(instances(), st.floats(0.05, 1.9), st.integers(0, 25))
def test_itd_closed_form_equals_autograd_through_unrolled_steps(inst, c, N):
    prob, gen = inst
    x, y0 = rand(prob, gen, "x"), rand(prob, gen, "y")
    alpha = c / prob.constants.L
    assert rel_close(inner_iterate_exact(prob, x, y0, alpha, N), unrolled_yN(prob, x, y0, alpha, N), 1e-10)
    assert rel_close(itd_hypergradient_exact(prob, x, y0, alpha, N), unrolled_itd(prob, x, y0, alpha, N), 1e-9)


@SETTINGS
@given(instances(), st.floats(0.05, 1.9), st.integers(0, 25))
def test_itd_error_formula_and_its_q_to_the_N_bound(inst, c, N):
    prob, gen = inst
    x, y0 = rand(prob, gen, "x"), rand(prob, gen, "y")
    alpha = c / prob.constants.L
    err = itd_error_exact(prob, x, y0, alpha, N)
    ref = unrolled_itd(prob, x, y0, alpha, N) - dense_ift(prob, x, prob.y_star(x))
    assert rel_close(err, ref, 1e-9)
    lam = prob.extra["eigenvalues"]
    q = float((1 - alpha * lam).abs().max())
    yN, ys, ybar = unrolled_yN(prob, x, y0, alpha, N), prob.y_star(x), prob.extra["ybar"]
    bound = prob.constants.extra["Lxy"] / prob.constants.mu * q**N * float(
        torch.linalg.vector_norm(y0 - ys) + torch.linalg.vector_norm(yN - ybar)
    )
    assert float(torch.linalg.vector_norm(err)) <= bound * (1 + 1e-9) + 1e-12


@SETTINGS
@given(instances(), st.floats(0.05, 1.9), st.integers(0, 25))
def test_aid_fixed_point_equals_explicit_loop(inst, c, Q):
    prob, gen = inst
    x, y = rand(prob, gen, "x"), rand(prob, gen, "y")
    eta = c / prob.constants.L
    fy = grad(prob.f, argnums=1)(x, y)
    v = torch.zeros_like(y)
    for _ in range(Q):
        v = v - eta * (hvp_y(prob, x, y, v) - fy)
    assert rel_close(fixed_point_v_exact(prob, y, eta, Q), v, 1e-10)
    ref = grad(prob.f, argnums=0)(x, y) - mixed_vjp(prob, x, y, v)
    assert rel_close(aid_fp_exact(prob, x, y, eta, Q), ref, 1e-9)


@SETTINGS
@given(instances(), st.floats(0.05, 1.9), st.integers(0, 25))
def test_neumann_equals_explicit_series_and_fixed_point_with_one_more_step(inst, c, Q):
    prob, gen = inst
    x, y = rand(prob, gen, "x"), rand(prob, gen, "y")
    eta = c / prob.constants.L
    term = grad(prob.f, argnums=1)(x, y)
    acc = torch.zeros_like(y)
    for _ in range(Q + 1):  # terms j = 0..Q of eta * sum_j (I - eta H)^j grad_y f
        acc = acc + eta * term
        term = term - eta * hvp_y(prob, x, y, term)
    ref = grad(prob.f, argnums=0)(x, y) - mixed_vjp(prob, x, y, acc)
    got = neumann_exact(prob, x, y, eta, Q)
    assert rel_close(got, ref, 1e-9)
    assert rel_close(got, aid_fp_exact(prob, x, y, eta, Q + 1), 1e-12)


@SETTINGS
@given(instances(), st.floats(0.05, 1.9), st.integers(0, 25))
def test_aid_fp_with_eta_alpha_and_Q_N_equals_itd(inst, c, N):
    """THEORY.md §14 item 19: AID-FP at y_N with eta = alpha, Q = N is the ITD hypergradient."""
    prob, gen = inst
    x, y0 = rand(prob, gen, "x"), rand(prob, gen, "y")
    alpha = c / prob.constants.L
    yN = unrolled_yN(prob, x, y0, alpha, N)
    aid = aid_fp_exact(prob, x, yN, alpha, N)
    assert rel_close(aid, unrolled_itd(prob, x, y0, alpha, N), 1e-9)
    assert rel_close(aid, itd_hypergradient_exact(prob, x, y0, alpha, N), 1e-11)


def test_itd_error_decays_exactly_like_q_to_the_N_along_the_slowest_direction():
    prob = QuadraticBilevel(p=3, q=4, mu=0.2, L=2.0, spectrum="linspace").build(3)
    alpha = 1.0 / prob.constants.L
    x, y0 = prob.x0, prob.y0
    errs = torch.stack([torch.linalg.vector_norm(itd_error_exact(prob, x, y0, alpha, N)) for N in range(150, 200)])
    slope = torch.diff(torch.log(errs)).mean()
    assert math.isclose(float(slope), math.log(1 - alpha * prob.constants.mu), rel_tol=1e-3)


# ---------------------------------------------------------------------------------------------------- ESJ
@pytest.mark.parametrize("p,q,directions", [(1, 3, "gaussian"), (3, 5, "gaussian"), (6, 4, "gaussian"),
                                            (4, 3, "sphere"), (5, 2, "sphere_unscaled")])
def test_esj_moments_match_monte_carlo_forward_differences(p, q, directions):
    prob = QuadraticBilevel(p=p, q=q, mu=0.3, L=2.0, gamma=0.5).build(11)
    x, y0, alpha, N, delta, n = prob.x0, prob.y0, 0.4, 6, 0.5, 40000
    mom = esj_moments(prob, x, y0, alpha, N, directions=directions)
    # a = J_N^T (y_N - ybar) with J_N the Jacobian of the unrolled inner loop
    J = jacrev(lambda xx: unrolled_yN(prob, xx, y0, alpha, N))(x)
    yN = unrolled_yN(prob, x, y0, alpha, N)
    assert rel_close(mom.a, J.T @ (yN - prob.extra["ybar"]), 1e-10)
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(n, p, generator=gen, dtype=x.dtype)
    scale = 1.0
    if directions != "gaussian":
        u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
        scale = float(p) if directions == "sphere" else 1.0
    # forward differences of the unrolled inner loop: exact for any delta since y_N is affine in x
    d = (vmap(lambda xx: unrolled_yN(prob, xx, y0, alpha, N))(x + delta * u) - yN) / delta
    ghat = prob.extra["gamma"] * x + scale * u * (d @ (yN - prob.extra["ybar"]))[:, None]
    mc_mean = ghat.mean(0)
    assert float(torch.linalg.vector_norm(mc_mean - mom.mean)) <= 5 * math.sqrt(float(mom.variance) / n)
    mc_var = float(((ghat - mom.mean) ** 2).sum(1).mean())
    assert math.isclose(mc_var, float(mom.variance), rel_tol=0.08)
    if directions != "sphere_unscaled":
        assert rel_close(mom.mean, itd_hypergradient_exact(prob, x, y0, alpha, N), 1e-14)


# ----------------------------------------------------------------------------------------------- constants
@SETTINGS
@given(instances())
def test_constants_match_autograd_hessians(inst):
    prob, gen = inst
    c = prob.constants
    x1, y1, x2, y2 = rand(prob, gen, "x"), rand(prob, gen, "y"), rand(prob, gen, "x"), rand(prob, gen, "y")
    H1, H2 = hessian(prob.g, argnums=1)(x1, y1), hessian(prob.g, argnums=1)(x2, y2)
    ev = torch.linalg.eigvalsh(H1)
    assert math.isclose(float(ev[0]), c.mu, rel_tol=1e-10) and math.isclose(float(ev[-1]), c.L, rel_tol=1e-10)
    # rho = tau = 0: the Hessian in y and the mixed derivative do not move with (x, y)
    assert c.rho == 0.0 and c.tau == 0.0
    assert float((H1 - H2).abs().max()) <= 1e-12 * c.L
    mixed = jacrev(grad(prob.g, argnums=1), argnums=0)
    J1, J2 = mixed(x1, y1), mixed(x2, y2)
    assert float((J1 - J2).abs().max()) <= 1e-12 * (1 + c.extra["Lxy"])
    assert math.isclose(float(torch.linalg.matrix_norm(J1, ord=2)), c.extra["Lxy"], rel_tol=1e-10, abs_tol=1e-14)
    # L_Phi and mu_Phi are the extreme eigenvalues of the Hessian of Phi(x) = f(x, y*(x))
    HP = torch.linalg.eigvalsh(hessian(prob.extra["phi"])(x1))
    assert math.isclose(float(HP[-1]), c.extra["L_Phi"], rel_tol=1e-9)
    assert math.isclose(float(HP[0]), c.extra["mu_Phi"], rel_tol=1e-7, abs_tol=1e-9 * c.extra["L_Phi"])
    assert c.extra["L_Phi"] <= c.extra["L_Phi_bound"] * (1 + 1e-12)
    assert c.exact >= {"L", "mu", "rho", "tau", "M"}


@SETTINGS
@given(instances())
def test_M_bounds_the_outer_gradient_on_its_ball_and_is_attained(inst):
    prob, gen = inst
    R, M, ybar = prob.constants.extra["M_radius"], prob.constants.M, prob.extra["ybar"]
    x = rand(prob, gen, "x")
    fy = grad(prob.f, argnums=1)
    ys = torch.randn(50, ybar.numel(), generator=gen, dtype=ybar.dtype)
    ys = R * ys / torch.linalg.vector_norm(ys, dim=1, keepdim=True) * torch.rand(50, 1, generator=gen, dtype=ybar.dtype)
    norms = torch.linalg.vector_norm(vmap(fy, in_dims=(None, 0))(x, ys), dim=1)
    assert bool((norms <= M * (1 + 1e-12)).all())
    y_far = -R * ybar / torch.linalg.vector_norm(ybar)
    assert math.isclose(float(torch.linalg.vector_norm(fy(x, y_far))), M, rel_tol=1e-12)
    for v in (prob.y0, prob.y_star(prob.x0), prob.y_star(prob.extra["x_star"])):  # the default ball holds these
        assert float(torch.linalg.vector_norm(v)) <= R


# ------------------------------------------------------------------------------------ config and determinism
def test_same_seed_same_problem_and_generator_accepted():
    cfg = QuadraticBilevel(p=3, q=4)
    a, b, c = cfg.build(7), cfg.build(7), cfg.build(8)
    for k in ("H", "B", "b", "ybar"):
        assert torch.equal(a.extra[k], b.extra[k])
        assert not torch.equal(a.extra[k], c.extra[k])
    assert torch.equal(a.x0, b.x0) and torch.equal(a.y0, b.y0)
    d = cfg.build(torch.Generator().manual_seed(7))
    assert torch.equal(a.extra["H"], d.extra["H"])


def test_spectrum_contains_mu_and_L_exactly():
    for spectrum in ("uniform", "linspace"):
        lam = QuadraticBilevel(p=2, q=6, mu=0.3, L=7.0, spectrum=spectrum).build(0).extra["eigenvalues"]
        assert float(lam[0]) == 0.3 and float(lam[-1]) == 7.0
        assert bool((lam >= 0.3).all() and (lam <= 7.0).all())


def test_float32_problem_has_float32_tensors_and_agrees_with_float64():
    p64 = QuadraticBilevel(p=3, q=4, mu=0.5, L=2.0).build(1)
    p32 = QuadraticBilevel(p=3, q=4, mu=0.5, L=2.0, dtype=torch.float32).build(1)
    assert p32.x0.dtype == torch.float32 and p32.y_star(p32.x0).dtype == torch.float32
    assert torch.allclose(p32.hypergradient(p32.x0).double(), p64.hypergradient(p64.x0), rtol=1e-4, atol=1e-5)
    assert p32.g(p32.x0, p32.y0).dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs,err",
    [
        (dict(mu=2.0, L=1.0), InvalidArgumentError),
        (dict(q=1, mu=0.5, L=1.0), InvalidArgumentError),
        (dict(p=0), InvalidArgumentError),
        (dict(q=2.5), InvalidTypeError),
        (dict(mu=0.0), InvalidArgumentError),
        (dict(gamma=-1.0), InvalidArgumentError),
        (dict(spectrum="cubic"), InvalidArgumentError),
        (dict(radius=0.0), InvalidArgumentError),
        (dict(dtype=torch.int64), InvalidArgumentError),
    ],
)
def test_invalid_config_raises(kwargs, err):
    with pytest.raises(err):
        QuadraticBilevel(**kwargs)


def test_exact_answers_validate_their_arguments():
    prob = QuadraticBilevel(p=2, q=3).build(0)
    x, y = prob.x0, prob.y0
    with pytest.raises(InvalidArgumentError):
        itd_hypergradient_exact(prob, x, y, 0.0, 3)
    with pytest.raises(InvalidArgumentError):
        aid_fp_exact(prob, x, y, 0.5, -1)
    with pytest.raises(InvalidTypeError):
        neumann_exact(prob, x, y, 0.5, 1.5)
    with pytest.raises(InvalidArgumentError):
        esj_moments(prob, x, y, 0.5, 3, directions="rademacher")
    other = BilevelProblem(f=prob.f, g=prob.g, x0=x, y0=y, constants=Constants(L=1.0))
    with pytest.raises(InvalidArgumentError, match="QuadraticBilevel"):
        itd_error_exact(other, x, y, 0.5, 3)
