"""convtheory.theory.imaml: the unrolled iMAML Jacobian against a dense recursion and finite differences of an explicit
GD solver on the proximal objective, and its end-of-spectrum error bound against the exact error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import imaml as im
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, seeds, spectrum, with_spectrum


def _instance(rng, d):
    lam = rng.uniform(0.1, 5.0)
    h_min = rng.uniform(-0.9 * lam, 1.0)
    h_max = h_min + rng.uniform(0.0, 10.0)
    eigs = spectrum(rng, d, h_min, h_max)
    return lam, h_min, h_max, eigs, with_spectrum(rng, eigs)


def _gd(H, c, theta, lam, alpha, N):
    """N GD steps on 1/2 phi^T H phi - c^T phi + lam/2 ||phi - theta||^2 from phi_0 = theta (explicit loop)."""
    phi = theta.copy()
    for _ in range(N):
        phi = phi - alpha * (H @ phi - c + lam * (phi - theta))
    return phi


@SETTINGS
@given(seed=seeds, d=st.integers(1, 6), N=st.integers(0, 30))
def test_unrolled_jacobian_equals_the_dense_recursion(seed, d, N):
    rng = np.random.default_rng(seed)
    lam, h_min, h_max, _, H = _instance(rng, d)
    alpha = rng.uniform(0.05, 1.0) / (lam + h_max)
    P = np.eye(d) - alpha * (H + lam * np.eye(d))
    J = np.eye(d)
    for _ in range(N):
        J = P @ J + alpha * lam * np.eye(d)
    np.testing.assert_allclose(im.unrolled_jacobian(H, lam, alpha, N), J, atol=1e-11)


def test_unrolled_jacobian_equals_finite_differences_of_gd_and_tends_to_the_implicit_one():
    rng = np.random.default_rng(3)
    d, lam = 5, 0.7
    eigs = spectrum(rng, d, -0.3, 2.0)
    H = with_spectrum(rng, eigs)
    c, theta = rng.standard_normal(d), rng.standard_normal(d)
    alpha = 1.0 / (lam + eigs.max())
    for N in (0, 1, 4, 17):
        delta = 1e-3
        fd = np.stack([(_gd(H, c, theta + delta * e, lam, alpha, N) - _gd(H, c, theta - delta * e, lam, alpha, N))
                       / (2 * delta) for e in np.eye(d)], axis=1)
        np.testing.assert_allclose(im.unrolled_jacobian(H, lam, alpha, N), fd, atol=1e-10)
    np.testing.assert_allclose(im.unrolled_jacobian(H, lam, alpha, 4000), im.implicit_jacobian(H, lam), atol=1e-12)
    assert np.allclose(im.unrolled_jacobian(H, lam, alpha, 0), np.eye(d))


def test_unrolled_jacobian_batches_like_single_matrices():
    rng = np.random.default_rng(1)
    Hs = np.stack([with_spectrum(rng, spectrum(rng, 4, 0.1, 3.0)) for _ in range(3)])
    out = im.unrolled_jacobian(Hs, 1.0, 0.2, 6)
    assert out.shape == (3, 4, 4)
    for i in range(3):
        np.testing.assert_allclose(out[i], im.unrolled_jacobian(Hs[i], 1.0, 0.2, 6), atol=1e-14)


@SETTINGS
@given(seed=seeds, d=st.integers(2, 6), N=st.integers(0, 60))
def test_error_bound_dominates_the_exact_error(seed, d, N):
    rng = np.random.default_rng(seed)
    lam, h_min, h_max, eigs, H = _instance(rng, d)
    alpha = rng.uniform(0.05, 1.9) / (lam + h_max)
    err = np.linalg.norm(im.unrolled_jacobian(H, lam, alpha, N) - im.implicit_jacobian(H, lam), 2)
    assert err == pytest.approx(im.unrolled_jacobian_error(alpha, lam, eigs, N), rel=1e-8, abs=1e-13)
    assert err <= im.unrolled_jacobian_error_bound(alpha, lam, h_min, h_max, N) * (1 + 1e-9) + 1e-14


def test_error_bound_has_the_exact_rate_and_the_error_tends_to_the_slowest_direction():
    eigs = np.array([0.2, 0.5, 1.0, 3.0])
    lam, alpha = 0.5, 1.0 / 3.5
    r = im.unrolled_rate(alpha, lam, 0.2, 3.0)
    assert r == pytest.approx(1.0 - alpha * 0.7, rel=1e-15)
    for N in (300, 400):  # the h_min direction wins: ||J_N - J_*|| = r^N h_min / (lam + h_min) up to 1e-9
        assert im.unrolled_jacobian_error(alpha, lam, eigs, N) / r**N == pytest.approx(0.2 / 0.7, rel=1e-9)
        assert im.unrolled_jacobian_error_bound(alpha, lam, 0.2, 3.0, N) == pytest.approx(r**N * 3.0 / 3.5,
                                                                                         rel=1e-13)
    # a negative end: the bound's constant is the h_min end and it is attained
    eigs = np.array([-0.4, 0.3, 1.0])
    alpha = 1.0 / (lam + 1.0)
    r = im.unrolled_rate(alpha, lam, -0.4, 1.0)
    ratio = im.unrolled_jacobian_error(alpha, lam, eigs, 400) / im.unrolled_jacobian_error_bound(alpha, lam, -0.4,
                                                                                                 1.0, 400)
    assert ratio == pytest.approx(1.0, rel=1e-9)


def test_bad_values_are_named():
    with pytest.raises(InvalidArgumentError, match="lam"):
        im.unrolled_jacobian(np.diag([-2.0, 1.0]), 1.0, 0.1, 3)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        im.unrolled_jacobian(np.eye(2), 1.0, -0.1, 3)
    with pytest.raises(InvalidArgumentError, match="N"):
        im.unrolled_jacobian_error_bound(0.1, 1.0, 0.0, 1.0, -1)
    with pytest.raises(InvalidArgumentError, match="h_min"):
        im.unrolled_jacobian_error_bound(0.1, 1.0, 2.0, 1.0, 3)
