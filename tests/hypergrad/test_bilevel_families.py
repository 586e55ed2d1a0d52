"""The bilevel engines on the package's own families: AID and ITD converge to the exact hypergradient as the
inner and solver steps grow, on hyper-cleaning (digits) and hyper-representation, at the rates theory gives."""


import pytest
import torch

from convtheory.hypergrad import hypergradient
from convtheory.problems.hypercleaning import HyperCleaning
from convtheory.problems.hyperrep import HyperRepresentation


@pytest.fixture(scope="module")
def cleaning():
    prob = HyperCleaning(n_train=100, n_val=60, reg=1.0).build(0)
    x = prob.x0 + 0.5 * torch.randn(prob.x0.shape, generator=torch.Generator().manual_seed(1), dtype=prob.x0.dtype)
    return prob, x, prob.hypergradient(x)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["aid-cg", "aid-neumann", "aid-fp", "itd"])
def test_hypercleaning_engines_converge_to_exact(cleaning, method):
    prob, x, exact = cleaning
    alpha = 1.0 / prob.constants.L
    errors = []
    for steps in (8, 24, 72):
        Q = steps if method != "itd" else 0
        hg, _ = hypergradient(prob.f, prob.g, x, prob.y0, method=method, inner_steps=3 * steps, inner_lr=alpha,
                              solver_steps=max(Q, 1))
        errors.append(rel(hg, exact))
    assert errors[0] > errors[1] > errors[2], errors
    # kappa = L/mu bounds the contraction 1 - mu/L per step; CG converges faster, like sqrt(kappa)
    assert errors[2] < (1e-6 if method == "aid-cg" else 5e-2), errors


def test_hypercleaning_exact_engine_matches_oracle(cleaning):
    prob, x, exact = cleaning
    hg, info = hypergradient(prob.f, prob.g, x, prob.y0, method="exact", inner_steps=0, inner_lr=1.0)
    assert rel(hg, exact) < 1e-9
    assert float((info.inner - prob.y_star(x)).norm()) < 1e-9


def test_hyperrepresentation_aid_cg_converges_at_the_inner_rate():
    prob = HyperRepresentation(num_tasks=4, d_in=6, k=3, reg=0.5).build(0)
    exact = prob.hypergradient(prob.x0)
    mu, L = prob.constants.mu, prob.constants.L
    alpha = 1.0 / L
    errs = {}
    for N in (20, 40, 80):
        hg, _ = hypergradient(prob.f, prob.g, prob.x0, prob.y0, method="aid-cg", inner_steps=N, inner_lr=alpha,
                              solver_steps=3 * 4)
        errs[N] = rel(hg, exact)
    # AID error ~ |grad_x grad_y g| |H^{-1}| |y_N - y*| shrinks like (1 - alpha mu)^N (THEORY.md §1.3)
    q = 1 - alpha * mu
    ratio = errs[80] / errs[40]
    assert ratio <= q**40 * 1.5, (errs, q)
    assert errs[80] < errs[40] < errs[20]
