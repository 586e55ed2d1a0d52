"""convtheory.theory.bilevel additions: explicit Grazzi ITD constants and the joint smoothness of the quadratic
bilevel family, checked against exact answers (closed-form ITD errors, autograd Hessians, random pairs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import hessian

from convtheory.problems import QuadraticBilevel
from convtheory.problems.bilevel_quadratic import inner_iterate_exact, itd_error_exact
from convtheory.theory import (bilevel_joint_smoothness_quadratic, grazzi_itd_constants, grazzi_itd_error_bound,
                               hyperobjective_smoothness, itd_error_bound_explicit)
from convtheory.types import InvalidArgumentError


def test_constants_closed_form():
    c1, c2 = grazzi_itd_constants(0.25, 0.5, 2.0, 3.0, 0.5, 1.5, 2.0, 1.0, 4.0)
    q = 1 - 0.25 * 0.5
    assert c1 == pytest.approx(1.0 * 4.0 * (1 + 1.5 / 0.5) + 2.0 * 1.5 / 0.5, rel=1e-15)
    assert c2 == pytest.approx(2.0 * 0.25 * 4.0 * (3.0 * 1.5 / 0.5 + 0.5) / q, rel=1e-15)
    b = itd_error_bound_explicit(0.25, 7, 0.5, 2.0, 3.0, 0.5, 1.5, 2.0, 1.0, 4.0)
    assert b.value == pytest.approx((c1 + 7 * c2) * q**7, rel=1e-14)
    assert b.value == pytest.approx(grazzi_itd_error_bound(q, 7, c1, c2).value, rel=1e-15)
    assert b.rate == pytest.approx(q) and b.exact


def test_quadratic_g_has_no_N_prefactor():
    """rho = tau = 0: c2 = 0, the bound is c1 q^N."""
    _, c2 = grazzi_itd_constants(0.5, 0.1, 1.0, 0.0, 0.0, 2.0, 3.0, 1.0, 1.0)
    assert c2 == 0.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), alpha_L=st.floats(0.1, 1.0), N=st.integers(0, 60),
       kappa=st.sampled_from([2.0, 10.0, 50.0]))
def test_explicit_bound_dominates_the_exact_quadratic_itd_error(seed, alpha_L, N, kappa):
    """On the quadratic family (rho = tau = 0, Lf = 1, M = ||y* - ybar|| + ||y0 - y*||) the explicit bound is above
    the exact error ||B^T H^-1 P^N [(y0 - y*) - (y_N - ybar)]||."""
    fam = QuadraticBilevel(p=4, q=8, mu=1.0 / kappa, L=1.0)
    prob = fam.build(seed)
    alpha = alpha_L / fam.L
    x, y0 = prob.x0, prob.y0
    ys = prob.y_star(x)
    d0 = float((y0 - ys).norm())
    M = float((ys - prob.extra["ybar"]).norm()) + d0
    assert float((inner_iterate_exact(prob, x, y0, alpha, N) - prob.extra["ybar"]).norm()) <= M * (1 + 1e-12)
    err = float(itd_error_exact(prob, x, y0, alpha, N).norm())
    if alpha * fam.mu >= 1.0:
        return
    bound = itd_error_bound_explicit(alpha, N, fam.mu, fam.L, 0.0, 0.0, prob.constants.extra["Lxy"], M, 1.0, d0)
    assert err <= bound.value * (1 + 1e-10) + 1e-13


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_joint_smoothness_is_the_norm_of_the_joint_hessians(seed):
    """L = max(||Hess_(x,y) g||, ||Hess_(x,y) f||) by autograd, and no random pair beats it."""
    prob = QuadraticBilevel(p=3, q=6, mu=0.1, L=2.0, gamma=0.3, b_scale=3.0).build(seed)
    H, B, gamma = prob.extra["H"], prob.extra["B"], prob.extra["gamma"]
    L = bilevel_joint_smoothness_quadratic(gamma, B.numpy(), H.numpy())

    def joint(fn):
        return lambda z: fn(z[:3], z[3:])

    z = torch.randn(9, dtype=torch.float64)
    norms = [float(torch.linalg.eigvalsh(hessian(joint(fn))(z)).abs().max()) for fn in (prob.f, prob.g)]
    assert L == pytest.approx(max(norms), rel=1e-12)
    assert L > float(torch.linalg.eigvalsh(H)[-1])  # ||B|| large: the joint constant exceeds lambda_max(H)
    gen = torch.Generator().manual_seed(seed)
    for fn in (prob.f, prob.g):
        grad = torch.func.grad(joint(fn))
        for _ in range(20):
            a, b = torch.randn(9, generator=gen, dtype=torch.float64), torch.randn(9, generator=gen,
                                                                                   dtype=torch.float64)
            assert float((grad(a) - grad(b)).norm()) <= L * float((a - b).norm()) * (1 + 1e-12)


def test_L_phi_with_joint_L_bounds_the_quadratic_hessian():
    """gamma + ||B^T H^-2 B|| <= L (1 + kappa)^2 with the joint L (Ghadimi-Wang form, rho = tau = 0)."""
    for seed in range(5):
        fam = QuadraticBilevel(p=5, q=10, mu=0.01, L=1.0, b_scale=2.0)
        prob = fam.build(seed)
        L = bilevel_joint_smoothness_quadratic(prob.extra["gamma"], prob.extra["B"].numpy(), prob.extra["H"].numpy())
        assert prob.constants.extra["L_Phi"] <= hyperobjective_smoothness(L, fam.mu, prob.constants.M, 0.0, 0.0)


def test_bad_values_are_named():
    with pytest.raises(InvalidArgumentError, match="alpha"):
        grazzi_itd_constants(3.0, 0.5, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)  # q >= 1
    with pytest.raises(InvalidArgumentError, match="mu"):
        grazzi_itd_constants(0.1, 2.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="rho"):
        grazzi_itd_constants(0.1, 0.5, 1.0, -1.0, 0.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="B has shape"):
        bilevel_joint_smoothness_quadratic(0.1, np.ones((3, 2)), np.eye(4))
    with pytest.raises(InvalidArgumentError, match="positive definite"):
        bilevel_joint_smoothness_quadratic(0.1, np.ones((2, 2)), -np.eye(2))
