"""theory.quadratic additions for predictions 3 and 7: the beta_max lower bound, and the fact item 7 relies on (the
eigenbasis formula of the SGD floor equals the Lyapunov floor even when H and Sigma do not commute)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory.quadratic import (beta_max, beta_max_shared_bound, meta_smoothness, meta_smoothness_peak,
                                         sgd_noise_floor, sgd_noise_floor_lyapunov)
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, orthogonal, seeds, with_spectrum


def test_beta_max_shared_bound_closed_form():
    for alpha, N in [(0.5, 1), (0.1, 7), (1.0, 40)]:
        expect = 2 * alpha * (2 * N + 1) * ((2 * N + 1) / (2 * N)) ** (2 * N)
        assert math.isclose(beta_max_shared_bound(alpha, N), expect, rel_tol=1e-13)
    # large N: ~ 2 e alpha (2N + 1), slope 1 in N
    b = beta_max_shared_bound(0.3, 10**6)
    assert math.isclose(b, 2 * math.e * 0.3 * (2 * 10**6 + 1), rel_tol=1e-6)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        beta_max_shared_bound(-1.0, 3)


@SETTINGS
@given(seed=seeds, N=st.integers(1, 60), d=st.integers(1, 6))
def test_beta_max_is_at_least_the_bound_for_shared_spectra_in_0_1_over_alpha(seed, N, d):
    rng = np.random.default_rng(seed)
    alpha = float(rng.uniform(0.05, 2.0))
    A = with_spectrum(rng, rng.uniform(0, 1 / alpha, d))
    L_meta = meta_smoothness(alpha, N, A[None], A[None])
    if L_meta > 0:
        assert beta_max(L_meta) >= beta_max_shared_bound(alpha, N) * (1 - 1e-12)


def test_bound_is_attained_when_the_peak_is_an_eigenvalue():
    rng = np.random.default_rng(3)
    alpha, N = 0.4, 9
    peak = 1 / (alpha * (2 * N + 1))
    A = with_spectrum(rng, [0.1 * peak, peak, 0.5 / alpha])
    assert math.isclose(beta_max(meta_smoothness(alpha, N, A[None])), beta_max_shared_bound(alpha, N), rel_tol=1e-12)
    assert math.isclose(2 / meta_smoothness_peak(alpha, N), beta_max_shared_bound(alpha, N), rel_tol=1e-15)


@SETTINGS
@given(seed=seeds, d=st.integers(1, 6), B=st.integers(1, 64))
def test_eigenbasis_floor_equals_lyapunov_floor_without_commuting(seed, d, B):
    """tr(H C H) only sees the diagonal of Sigma in H's eigenbasis, so sum_j beta h_j s_j / (B (2 - beta h_j)) with
    s_j = e_j^T Sigma e_j is exact for any Sigma (THEORY.md §1.5 states it for the commuting case)."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.05, 1.0, d)
    H = with_spectrum(rng, h)
    G = rng.standard_normal((d, d))
    Sigma = G @ G.T + 0.1 * np.eye(d)
    beta = float(rng.uniform(0.1, 1.9))
    w, E = np.linalg.eigh(H)
    s = np.einsum("ij,ik,kj->j", E, Sigma, E)
    assert math.isclose(sgd_noise_floor(beta, w, s, B), sgd_noise_floor_lyapunov(beta, H, Sigma, B), rel_tol=1e-9)


def test_floor_is_one_over_B():
    rng = np.random.default_rng(0)
    H = with_spectrum(rng, [0.2, 0.5, 1.0])
    U = orthogonal(rng, 3)
    Sigma = U @ np.diag([1.0, 2.0, 3.0]) @ U.T
    f1, f8 = (sgd_noise_floor_lyapunov(0.7, H, Sigma, B) for B in (1, 8))
    assert math.isclose(f1 / f8, 8.0, rel_tol=1e-12)
