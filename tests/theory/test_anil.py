"""convtheory.theory.anil: head meta-curvature bounds against dense matrices, iteration counts against GD runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import anil as an
from convtheory.theory.quadratic import meta_smoothness_shared
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, orthogonal, seeds, spectrum, with_spectrum


def _dense_head_hessian(alpha, N, A, C):
    d = A.shape[-1]
    P = np.linalg.matrix_power(np.eye(d) - alpha * A, N)
    return np.mean(P @ C @ P, axis=0)


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n=st.integers(1, 4), N=st.integers(0, 20))
def test_strongly_convex_head_bound_holds_and_is_attained(seed, d, n, N):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.1, 5.0, 2))
    alpha = rng.uniform(0.05, 1.0) / L
    A = np.stack([with_spectrum(rng, spectrum(rng, d, mu, L)) for _ in range(n)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.0, L, d)) for _ in range(n)])
    bound = an.head_hessian_bound_strongly_convex(alpha, N, mu, L)
    assert np.linalg.eigvalsh(_dense_head_hessian(alpha, N, A, C))[-1] <= bound * (1 + 1e-12) + 1e-300
    attained = _dense_head_hessian(alpha, N, mu * np.eye(d)[None], L * np.eye(d)[None])
    assert np.linalg.eigvalsh(attained)[-1] == pytest.approx(bound, rel=1e-12)


@SETTINGS
@given(seed=seeds, d=st.integers(2, 4), n=st.integers(1, 4), N=st.integers(0, 10))
def test_nonconvex_head_lower_bound_holds(seed, d, n, N):
    rng = np.random.default_rng(seed)
    ell, L = rng.uniform(0.1, 2.0), 2.0
    alpha = rng.uniform(0.01, 0.3)
    U = orthogonal(rng, d)  # U[:, 0] is the shared negative-curvature eigenvector e
    A = np.stack([(U * np.r_[-ell, rng.uniform(-ell, L, d - 1)]) @ U.T for _ in range(n)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.1, 2.0, d)) for _ in range(n)])
    e = U[:, 0]
    c = float(np.mean([e @ Ci @ e for Ci in C]))
    L_meta = np.linalg.eigvalsh(_dense_head_hessian(alpha, N, A, C))[-1]
    assert L_meta >= an.head_hessian_lower_bound_nonconvex(alpha, N, ell, c) * (1 - 1e-10)


@SETTINGS
@given(seed=seeds, eps=st.floats(1e-6, 1e-1))
def test_predicted_iterations_suffice_for_gd_with_beta_one_over_L(seed, eps):
    rng = np.random.default_rng(seed)
    d = 3
    H = with_spectrum(rng, spectrum(rng, d, 0.01, 3.0))
    L = np.linalg.eigvalsh(H)[-1]
    theta = rng.standard_normal(d)
    delta0 = 0.5 * theta @ H @ theta
    K = math.ceil(an.predicted_iterations(L, delta0, eps))
    best = math.inf
    for _ in range(K):
        g = H @ theta
        best = min(best, g @ g)
        if best <= eps:
            break
        theta = theta - g / L
    assert best <= eps


def test_predicted_cost_is_linear_in_N_plus_overhead():
    K = an.predicted_iterations(2.0, 3.0, 0.5)
    assert K == pytest.approx(24.0)
    assert an.predicted_cost(5, 2.0, 3.0, 0.5, overhead=1.0) == pytest.approx(6 * 24.0)


@SETTINGS
@given(seed=seeds, tol=st.floats(1e-8, 0.5))
def test_saturation_N_is_the_first_N_with_q_to_the_N_below_tol(seed, tol):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.01, 10.0, 2))
    N = an.saturation_N(1.0 / L, mu, L, tol)
    q = 1.0 - mu / L
    assert q**N <= tol
    if N > 0:
        assert q ** (N - 1) > tol
    assert N <= (L / mu) * math.log(1.0 / tol) + 1  # ~ kappa ln(1/tol)


def test_recommended_N_is_moderate_for_strongly_convex_and_smallest_for_nonconvex():
    alpha, delta0, eps, overhead = 0.1, 1.0, 1e-3, 2.0
    Ns = range(0, 60)
    # strongly convex head on top of an N-independent body curvature: L_meta falls then saturates
    eigs = np.linspace(0.2, 5.0, 8)
    sc = {N: 0.3 + meta_smoothness_shared(alpha, N, eigs) for N in Ns}
    best = an.recommended_N(sc, delta0, eps, overhead)
    brute = min(Ns, key=lambda N: (N + overhead) * sc[N])
    assert best == brute
    assert 0 < best < max(Ns)  # an interior, moderate N
    # nonconvex head: L_meta grows like (1 + alpha ell)^(2N); the smallest candidate wins
    nc = {N: 0.3 + an.head_hessian_lower_bound_nonconvex(alpha, N, 1.0, 0.5) for N in range(1, 20)}
    assert an.recommended_N(nc, delta0, eps, overhead) == 1


@pytest.mark.parametrize(
    "fn, args",
    [
        (an.head_hessian_bound_strongly_convex, (0.1, 1, 2.0, 1.0)),  # mu > L
        (an.head_hessian_bound_strongly_convex, (0.1, -1, 1.0, 2.0)),
        (an.head_hessian_lower_bound_nonconvex, (0.1, 1, -1.0, 1.0)),
        (an.predicted_iterations, (1.0, 1.0, 0.0)),
        (an.predicted_iterations, (-1.0, 1.0, 0.1)),
        (an.saturation_N, (0.1, 1.0, 2.0, 1.5)),  # tol not in (0, 1)
        (an.saturation_N, (1.0, 1.0, 2.0, 0.1)),  # alpha = 2/L: q = 1
        (an.recommended_N, ({}, 1.0, 0.1)),
        (an.recommended_N, ({-1: 1.0}, 1.0, 0.1)),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
