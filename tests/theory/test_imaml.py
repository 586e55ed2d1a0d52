"""convtheory.theory.imaml against dense conditioning, finite differences of an inner solver, CG and unrolled GD."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import imaml as im
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, cg, seeds, spectrum, with_spectrum


def _instance(rng, d):
    lam = rng.uniform(0.1, 5.0)
    h_min = rng.uniform(-0.9 * lam, 1.0)
    h_max = h_min + rng.uniform(0.0, 10.0)
    eigs = spectrum(rng, d, h_min, h_max)
    return lam, h_min, h_max, eigs, with_spectrum(rng, eigs)


@SETTINGS
@given(seed=seeds, d=st.integers(2, 6))
def test_condition_number_equals_dense_condition_number(seed, d):
    rng = np.random.default_rng(seed)
    lam, h_min, h_max, _, H = _instance(rng, d)
    assert im.condition_number(lam, h_min, h_max) == pytest.approx(np.linalg.cond(np.eye(d) + H / lam), rel=1e-9)


@SETTINGS
@given(seed=seeds)
def test_implicit_jacobian_equals_finite_differences_of_an_exact_inner_solver(seed):
    rng = np.random.default_rng(seed)
    d, lam = 3, rng.uniform(0.5, 3.0)
    c, w = rng.standard_normal(d), rng.uniform(0.5, 2.0, d)
    # L_hat(phi) = sum_i w_i log cosh(phi_i - c_i) + 1/2 phi^T S phi (non-quadratic, convex)
    S = with_spectrum(rng, rng.uniform(0.1, 1.0, d))
    grad = lambda phi: w * np.tanh(phi - c) + S @ phi  # noqa: E731
    hess = lambda phi: np.diag(w / np.cosh(phi - c) ** 2) + S  # noqa: E731

    def solve(theta):  # Newton on G(phi) = L_hat(phi) + lam/2 ||phi - theta||^2, to machine precision
        phi = theta.copy()
        for _ in range(50):
            phi = phi - np.linalg.solve(hess(phi) + lam * np.eye(d), grad(phi) + lam * (phi - theta))
        return phi

    theta, h = rng.standard_normal(d), 1e-6
    fd = np.stack([(solve(theta + h * e) - solve(theta - h * e)) / (2 * h) for e in np.eye(d)], axis=1)
    J = im.implicit_jacobian(hess(solve(theta)), lam)
    np.testing.assert_allclose(J, fd, atol=1e-7)


@SETTINGS
@given(seed=seeds, d=st.integers(2, 7))
def test_cg_bound_holds_for_cg_on_the_imaml_system(seed, d):
    rng = np.random.default_rng(seed)
    lam, h_min, h_max, _, H = _instance(rng, d)
    M = np.eye(d) + H / lam
    r = rng.standard_normal(d)
    g_star = np.linalg.solve(M, r)
    for Q in range(d + 1):
        gQ = cg(lambda z: M @ z, r, Q)
        bound = im.cg_error_bound_imaml(lam, h_min, h_max, Q, np.linalg.norm(g_star))
        assert np.linalg.norm(gQ - g_star) <= bound.value * (1 + 1e-8) + 1e-10


def test_larger_lambda_needs_fewer_cg_steps():
    steps = [im.cg_steps_imaml(lam, 0.0, 100.0, 1e-6) for lam in (0.1, 1.0, 10.0, 100.0)]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[-1]


@SETTINGS
@given(seed=seeds, d=st.integers(1, 5), N=st.integers(0, 40))
def test_unrolled_jacobian_error_equals_dense_unrolled_gd(seed, d, N):
    rng = np.random.default_rng(seed)
    lam, h_min, h_max, eigs, H = _instance(rng, d)
    eigs = np.linalg.eigvalsh(H)
    alpha = rng.uniform(0.1, 1.0) / (lam + h_max)
    # phi_{t+1} = phi_t - alpha (H (phi_t - c) + lam (phi_t - theta)):
    # J_{t+1} = (I - alpha (H + lam I)) J_t + alpha lam I
    J = np.eye(d)
    for _ in range(N):
        J = J - alpha * (H + lam * np.eye(d)) @ J + alpha * lam * np.eye(d)
    gap = np.linalg.norm(J - im.implicit_jacobian(H, lam), 2)
    assert gap == pytest.approx(im.unrolled_jacobian_error(alpha, lam, eigs, N), rel=1e-7, abs=1e-13)
    q = im.unrolled_rate(alpha, lam, h_min, h_max)
    assert q == pytest.approx(1 - alpha * (lam + h_min), rel=1e-12)
    assert gap <= q**N * np.max(np.abs(eigs) / (lam + eigs)) * (1 + 1e-9) + 1e-13


@pytest.mark.parametrize(
    "fn, args",
    [
        (im.condition_number, (1.0, -1.0, 2.0)),  # lam + h_min <= 0
        (im.condition_number, (1.0, 3.0, 2.0)),  # h_min > h_max
        (im.condition_number, (0.0, 1.0, 2.0)),
        (im.implicit_jacobian, (-2.0 * np.eye(2), 1.0)),
        (im.cg_error_bound_imaml, (1.0, 0.0, 2.0, -1)),
        (im.cg_steps_imaml, (1.0, 0.0, 2.0, 0.0)),
        (im.unrolled_rate, (0.0, 1.0, 0.0, 2.0)),
        (im.unrolled_jacobian_error, (0.1, 1.0, [float("nan")], 2)),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
