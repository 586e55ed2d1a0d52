"""One conformance test that every bilevel family exported by convtheory.problems.bilevel must pass: the contract
the hypergradient engines rely on (scalar closures that torch.func can transform, exact oracles that agree with
g's stationarity and with finite differences of Phi, consistent constants, determinism by seed)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, vmap

from convtheory.problems import bilevel
from convtheory.problems.base import BilevelProblem

FAMILIES = {
    "quadratic": bilevel.QuadraticBilevel(p=4, q=5, mu=0.2, L=3.0),
    "hypercleaning": bilevel.HyperCleaning(n_train=60, n_val=30, n_test=30),
    "hyperrep_linear": bilevel.HyperRepresentation(num_tasks=3, d_in=4, k=2, n_support=5, n_query=6),
    "hyperrep_tanh": bilevel.HyperRepresentation(num_tasks=3, d_in=4, k=2, embedding="tanh"),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def built(request):
    cfg = FAMILIES[request.param]
    return cfg, cfg.build(0)


def test_exports():
    assert set(bilevel.__all__) <= set(dir(bilevel))
    for name in ("QuadraticBilevel", "HyperCleaning", "HyperRepresentation", "itd_hypergradient_exact"):
        assert name in bilevel.__all__


def test_closures_are_float64_scalars_and_oracles_have_the_right_shapes(built):
    _, prob = built
    assert isinstance(prob, BilevelProblem)
    for fn in (prob.f, prob.g):
        v = fn(prob.x0, prob.y0)
        assert v.shape == () and v.dtype == torch.float64
    assert prob.y_star(prob.x0).shape == prob.y0.shape
    assert prob.hypergradient(prob.x0).shape == prob.x0.shape


def test_inner_gradient_vmaps_over_a_stack_of_inner_points(built):
    _, prob = built
    gen = torch.Generator().manual_seed(0)
    ys = torch.randn((3, *prob.y0.shape), generator=gen, dtype=prob.y0.dtype)
    gy = grad(prob.g, argnums=1)
    batched = vmap(gy, in_dims=(None, 0))(prob.x0, ys)
    for i in range(3):
        assert torch.allclose(batched[i], gy(prob.x0, ys[i]), rtol=1e-12, atol=1e-14)


def test_y_star_is_stationary_and_hypergradient_matches_finite_differences(built):
    _, prob = built
    x = prob.x0
    assert float(torch.linalg.vector_norm(grad(prob.g, argnums=1)(x, prob.y_star(x)))) <= 1e-9
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    phi, h = (lambda xx: prob.f(xx, prob.y_star(xx))), 1e-4
    fd = (phi(x + h * v) - phi(x - h * v)) / (2 * h)
    assert math.isclose(float(fd), float(torch.sum(prob.hypergradient(x) * v)), rel_tol=1e-5)


def test_constants_are_consistent(built):
    _, prob = built
    c = prob.constants
    assert 0 < c.mu <= c.L and "mu" in c.exact
    assert all(isinstance(v, float) for v in c.extra.values())


def test_same_seed_same_hypergradient(built):
    cfg, prob = built
    other = cfg.build(0)
    assert torch.equal(prob.x0, other.x0)
    assert torch.equal(prob.hypergradient(prob.x0), other.hypergradient(other.x0))
