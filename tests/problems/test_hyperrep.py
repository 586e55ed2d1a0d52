"""Hyper-representation family: closed-form ridge heads and the hypergradient through them, checked against dense
implicit-function computations (torch.func), per-task lstsq, finite differences, and the Hessian spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacrev

from convtheory.problems.hyperrep import HyperRepresentation
from convtheory.types import InvalidArgumentError, InvalidTypeError

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def instances(draw):
    cfg = HyperRepresentation(
        num_tasks=draw(st.integers(1, 4)),
        d_in=draw(st.integers(1, 5)),
        k=draw(st.integers(1, 4)),
        n_support=draw(st.integers(1, 6)),
        n_query=draw(st.integers(1, 6)),
        reg=draw(st.floats(0.05, 1.0)),
        noise=draw(st.floats(0.0, 0.5)),
        embedding=draw(st.sampled_from(["linear", "tanh"])),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return cfg.build(seed), torch.Generator().manual_seed(seed + 1)


def rand_x(prob, gen):
    return torch.randn(prob.x0.shape, generator=gen, dtype=prob.x0.dtype)


def dense_hessian_y(prob, x, y):
    n = y.numel()
    return hessian(prob.g, argnums=1)(x, y).reshape(n, n)


@SETTINGS
@given(instances())
def test_y_star_is_stationary_and_equals_per_task_ridge_lstsq(inst):
    prob, gen = inst
    x = rand_x(prob, gen)
    ys = prob.y_star(x)
    gy = grad(prob.g, argnums=1)(x, ys)
    assert float(torch.linalg.vector_norm(gy)) <= 1e-10 * (1 + float(torch.linalg.vector_norm(ys)))
    # independent: each task's ridge regression as an augmented least-squares problem in numpy
    A, u = prob.extra["support"]
    F = (A @ x).numpy() if prob.extra["embedding"] == "linear" else np.tanh((A @ x).numpy())
    S, k = F.shape[1], F.shape[2]
    reg = prob.constants.mu
    for t in range(F.shape[0]):
        M = np.vstack([F[t] / math.sqrt(S), math.sqrt(reg) * np.eye(k)])
        rhs = np.concatenate([u[t].numpy() / math.sqrt(S), np.zeros(k)])
        np.testing.assert_allclose(ys[t].numpy(), np.linalg.lstsq(M, rhs, rcond=None)[0], rtol=1e-9, atol=1e-11)


@SETTINGS
@given(instances())
def test_hypergradient_equals_dense_implicit_function_formula(inst):
    prob, gen = inst
    x = rand_x(prob, gen)
    ys = prob.y_star(x)
    Hyy = dense_hessian_y(prob, x, ys)
    Jyx = jacrev(grad(prob.g, argnums=1), argnums=0)(x, ys).reshape(ys.numel(), x.numel())
    fy = grad(prob.f, argnums=1)(x, ys).reshape(-1)
    fx = grad(prob.f, argnums=0)(x, ys).reshape(-1)
    ref = (fx - Jyx.T @ torch.linalg.solve(Hyy, fy)).reshape(x.shape)
    got = prob.hypergradient(x)
    assert float(torch.linalg.vector_norm(got - ref)) <= 1e-9 * max(1.0, float(torch.linalg.vector_norm(ref)))


@SETTINGS
@given(instances())
def test_hypergradient_equals_central_finite_differences_of_phi(inst):
    prob, gen = inst
    x = rand_x(prob, gen)
    phi, h = prob.extra["phi"], 1e-5
    E = torch.eye(x.numel(), dtype=x.dtype).reshape(-1, *x.shape)
    fd = torch.stack([(phi(x + h * e) - phi(x - h * e)) / (2 * h) for e in E]).reshape(x.shape)
    got = prob.hypergradient(x)
    assert float(torch.linalg.vector_norm(fd - got)) <= 1e-6 * max(1.0, float(torch.linalg.vector_norm(got)))


@SETTINGS
@given(instances())
def test_inner_hessian_is_block_diagonal_with_spectrum_in_mu_L(inst):
    prob, gen = inst
    c = prob.constants
    B, k = prob.y0.shape
    H0 = dense_hessian_y(prob, prob.x0, prob.y0).reshape(B, k, B, k)
    off = H0.clone()
    for t in range(B):
        off[t, :, t, :] = 0
    assert float(off.abs().max()) == 0.0  # separable over tasks
    ev = torch.linalg.eigvalsh(H0.reshape(B * k, B * k))
    assert math.isclose(float(ev[-1]), c.L, rel_tol=1e-10)  # L exact at x0
    assert math.isclose(float(ev[0]), c.extra["mu_at_x0"], rel_tol=1e-10)
    assert float(ev[0]) >= c.mu * (1 - 1e-12)
    # mu = reg is attained at x = 0 (no features), for both embeddings
    Hz = dense_hessian_y(prob, torch.zeros_like(prob.x0), prob.y0)
    assert torch.allclose(Hz, c.mu * torch.eye(B * k, dtype=Hz.dtype), rtol=0, atol=1e-14)
    # the Hessian does not depend on y, and inner_constants(x) gives its extreme eigenvalues at any x
    x = rand_x(prob, gen)
    y = torch.randn(prob.y0.shape, generator=gen, dtype=prob.y0.dtype)
    Hx = dense_hessian_y(prob, x, y)
    assert torch.allclose(Hx, dense_hessian_y(prob, x, prob.y0), rtol=0, atol=1e-13)
    evx = torch.linalg.eigvalsh(Hx)
    mu_x, L_x = prob.extra["inner_constants"](x)
    assert math.isclose(float(evx[0]), mu_x, rel_tol=1e-10) and math.isclose(float(evx[-1]), L_x, rel_tol=1e-10)


def test_hypergradient_descent_lowers_phi_and_recovers_the_representation():
    """A sanity property of the family: with noiseless tasks, gradient descent on Phi drives it towards zero."""
    prob = HyperRepresentation(num_tasks=6, d_in=4, k=2, n_support=8, n_query=8, reg=1e-3, noise=0.0).build(2)
    phi, x = prob.extra["phi"], prob.x0
    phi0 = float(phi(x))
    for _ in range(300):
        x = x - 0.5 * prob.hypergradient(x)
    assert float(phi(x)) < 1e-2 * phi0


def test_same_seed_same_problem():
    cfg = HyperRepresentation(num_tasks=3, d_in=4, k=2)
    a, b, c = cfg.build(9), cfg.build(9), cfg.build(10)
    assert torch.equal(a.extra["support"][0], b.extra["support"][0])
    assert torch.equal(a.extra["query"][1], b.extra["query"][1]) and torch.equal(a.x0, b.x0)
    assert not torch.equal(a.extra["support"][0], c.extra["support"][0])
    assert torch.equal(cfg.build(torch.Generator().manual_seed(9)).x0, a.x0)


def test_float32_problem_keeps_float32_tensors():
    prob = HyperRepresentation(dtype=torch.float32).build(0)
    assert prob.y_star(prob.x0).dtype == torch.float32
    assert prob.hypergradient(prob.x0).dtype == torch.float32
    p64 = HyperRepresentation().build(0)
    assert torch.allclose(prob.hypergradient(prob.x0).double(), p64.hypergradient(p64.x0), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,err",
    [
        (dict(num_tasks=0), InvalidArgumentError),
        (dict(k=1.5), InvalidTypeError),
        (dict(reg=0.0), InvalidArgumentError),
        (dict(noise=-1.0), InvalidArgumentError),
        (dict(embedding="relu"), InvalidArgumentError),
        (dict(k_true=0), InvalidArgumentError),
        (dict(dtype=torch.int32), InvalidArgumentError),
    ],
)
def test_invalid_config_raises(kwargs, err):
    with pytest.raises(err):
        HyperRepresentation(**kwargs)
