"""convtheory.theory.quadratic against dense linear algebra, autograd, bisection and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import quadratic as qd
from convtheory.types import InvalidArgumentError, InvalidTypeError

from .helpers import SETTINGS, orthogonal, seeds, spectrum, with_spectrum


# ------------------------------------------------------------------------------------------------ §1.1
@SETTINGS
@given(seed=seeds, d=st.integers(2, 5), N=st.integers(0, 30))
def test_gd_contraction_is_spectral_norm_and_attained_along_slowest_direction(seed, d, N):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.1, 10.0, 2))
    alpha = rng.uniform(0.01, 1.0) / L
    eigs = spectrum(rng, d, mu, L)
    A = with_spectrum(rng, eigs)
    P = np.eye(d) - alpha * A
    q = qd.gd_contraction(alpha, mu, L)
    assert q == pytest.approx(np.linalg.norm(P, 2), rel=1e-12)
    assert q == pytest.approx(qd.spectral_contraction(alpha, eigs), rel=1e-14)
    # run GD from w_0 - w* along the eigenvector of mu: the error is exactly q^N dist0
    w_star = rng.standard_normal(d)
    vals, vecs = np.linalg.eigh(A)
    w = w_star + 2.5 * vecs[:, 0]
    for _ in range(N):
        w = w - alpha * A @ (w - w_star)
    bound = qd.inner_error_bound(alpha, mu, L, N, dist0=2.5)
    assert bound.exact and bound.rate == q
    assert np.linalg.norm(w - w_star) == pytest.approx(bound.value, rel=1e-9, abs=1e-14)


@SETTINGS
@given(seed=seeds)
def test_optimal_gd_step_minimises_contraction(seed):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.1, 10.0, 2))
    a_star = qd.optimal_gd_step(mu, L)
    q_star = qd.optimal_gd_contraction(mu, L)
    assert qd.gd_contraction(a_star, mu, L) == pytest.approx(q_star, abs=1e-14)
    grid = np.linspace(1e-4, 2.0 / L, 2001)
    assert min(qd.gd_contraction(a, mu, L) for a in grid) >= q_star - 1e-12


def test_inner_step_max_separates_convergence_from_divergence():
    A = np.diag([0.5, 4.0])
    a_max = qd.inner_step_max(4.0)
    for alpha, grows in ((0.99 * a_max, False), (1.01 * a_max, True)):
        w = np.ones(2)
        for _ in range(2000):
            w = w - alpha * A @ w
        assert (np.linalg.norm(w) > 1.0) == grows


# ------------------------------------------------------------------------------------------------ §1.2
def _meta_loss_torch(theta, alpha, N, A, a, C, b):
    """Exact N-step MAML meta-loss by unrolling GD in torch (independent of the closed form)."""
    total = 0.0
    for Ai, ai, Ci, bi in zip(A, a, C, b):
        w = theta
        for _ in range(N):
            w = w - alpha * Ai @ (w - ai)
        total = total + 0.5 * (w - bi) @ Ci @ (w - bi)
    return total / A.shape[0]


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n_tasks=st.integers(1, 4), N=st.integers(0, 5))
def test_meta_hessian_equals_autograd_hessian_of_unrolled_meta_loss(seed, d, n_tasks, N):
    rng = np.random.default_rng(seed)
    A = np.stack([with_spectrum(rng, rng.uniform(-1.0, 3.0, d)) for _ in range(n_tasks)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.0, 2.0, d)) for _ in range(n_tasks)])
    a, b = rng.standard_normal((n_tasks, d)), rng.standard_normal((n_tasks, d))
    alpha = rng.uniform(0.01, 0.5)
    t = [torch.tensor(x) for x in (A, a, C, b)]
    theta = torch.tensor(rng.standard_normal(d))
    H_auto = torch.func.hessian(lambda th: _meta_loss_torch(th, alpha, N, *t))(theta).numpy()
    H = qd.meta_hessian(alpha, N, A, C)
    np.testing.assert_allclose(H, H_auto, rtol=1e-10, atol=1e-10)
    eig = np.linalg.eigvalsh(H_auto)
    assert qd.meta_smoothness(alpha, N, A, C) == pytest.approx(eig[-1], rel=1e-9, abs=1e-12)
    assert qd.meta_strong_convexity(alpha, N, A, C) == pytest.approx(eig[0], rel=1e-9, abs=1e-12)


@SETTINGS
@given(seed=seeds, d=st.integers(1, 6), N=st.integers(0, 20))
def test_shared_spectrum_formula_equals_dense_meta_hessian(seed, d, N):
    rng = np.random.default_rng(seed)
    eigs = rng.uniform(0.0, 5.0, d)
    alpha = rng.uniform(0.01, 0.6)
    A = with_spectrum(rng, eigs)
    P = np.linalg.matrix_power(np.eye(d) - alpha * A, N)
    dense = np.linalg.eigvalsh(P @ A @ P)[-1]
    assert qd.meta_smoothness_shared(alpha, N, eigs) == pytest.approx(dense, rel=1e-9, abs=1e-12)


@SETTINGS
@given(seed=seeds, N=st.integers(0, 40))
def test_interval_and_peak_formulas_equal_dense_grid_maximum(seed, N):
    rng = np.random.default_rng(seed)
    L = rng.uniform(0.5, 10.0)
    mu = rng.uniform(0.0, 1.0) * L
    alpha = rng.uniform(0.05, 1.9) / L  # covers alpha beyond 1/L too
    grid = np.linspace(mu, L, 200_001)
    h = grid * (1 - alpha * grid) ** (2 * N)
    got = qd.meta_smoothness_interval(alpha, N, mu, L)
    assert got >= h.max() * (1 - 1e-12)
    assert got <= h.max() * (1 + 1e-6)
    # the peak bound over [0, 1/alpha]
    grid0 = np.linspace(0.0, 1.0 / alpha, 200_001)
    peak = qd.meta_smoothness_peak(alpha, N)
    assert peak == pytest.approx(np.max(grid0 * (1 - alpha * grid0) ** (2 * N)), rel=1e-6)
    if alpha <= 1.0 / L:
        assert got <= peak * (1 + 1e-12)
    lam = qd.meta_smoothness_peak_location(alpha, N)
    assert lam * (1 - alpha * lam) ** (2 * N) == pytest.approx(peak, rel=1e-14)


def test_peak_tends_to_one_over_e_alpha_2N_plus_1():
    alpha = 0.3
    ratios = [qd.meta_smoothness_peak(alpha, N) * math.e * alpha * (2 * N + 1) for N in (1, 10, 100, 10_000)]
    assert all(r >= 1.0 for r in ratios)
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[-1] == pytest.approx(1.0, rel=1e-4)


def test_beta_max_separates_stable_from_divergent_meta_gd():
    rng = np.random.default_rng(0)
    A = np.stack([with_spectrum(rng, rng.uniform(0.2, 3.0, 3)) for _ in range(3)])
    H = qd.meta_hessian(0.1, 3, A)
    b_max = qd.beta_max(qd.meta_smoothness(0.1, 3, A))
    for beta, grows in ((0.99 * b_max, False), (1.01 * b_max, True)):
        th = np.ones(3)
        for _ in range(5000):
            th = th - beta * H @ th
        assert (np.linalg.norm(th) > 1.0) == grows


# ---------------------------------------------------------------------------------- §14 items 4 and 5
def _radius(beta, H):
    return np.max(np.abs(np.linalg.eigvals(np.eye(H.shape[0]) - beta * H)))


def _bisect(stable, lo, hi, iters=60):
    assert stable(lo) and not stable(hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return 0.5 * (lo + hi)


@SETTINGS
@given(seed=seeds, N=st.integers(1, 25))
def test_alpha_crit_nonconvex_is_the_bisection_threshold(seed, N):
    rng = np.random.default_rng(seed)
    ell, c = rng.uniform(0.2, 5.0), rng.uniform(0.2, 5.0)
    beta = rng.uniform(0.05, 0.9) * 2.0 / c
    # 2-D family: direction e1 has inner curvature -ell and outer weight c; e2 is a benign convex direction.
    U = orthogonal(rng, 2)
    lam2 = rng.uniform(0.1, 1.0)
    A = U @ np.diag([-ell, lam2]) @ U.T
    C = U @ np.diag([c, 0.5 * min(c, 1.0 / beta)]) @ U.T
    stable = lambda alpha: _radius(beta, qd.meta_hessian(alpha, N, A, C)) <= 1.0 + 1e-12  # noqa: E731
    hi = 10.0 / ell
    alpha_bis = _bisect(stable, 1e-12, hi)
    assert qd.alpha_crit_nonconvex(N, beta, c, ell) == pytest.approx(alpha_bis, rel=1e-8)
    assert qd.alpha_crit_nonconvex(N, beta, c, ell) >= qd.alpha_crit_nonconvex_asymptotic(N, beta, c, ell)


def test_N_alpha_crit_tends_to_half_log_over_ell():
    beta, c, ell = 0.3, 1.5, 2.0
    limit = 0.5 * math.log(2.0 / (beta * c)) / ell
    vals = [N * qd.alpha_crit_nonconvex(N, beta, c, ell) for N in (1, 10, 100, 10_000)]
    assert vals == sorted(vals, reverse=True)  # decreases toward the limit
    assert vals[-1] == pytest.approx(limit, rel=1e-4)
    assert qd.alpha_crit_nonconvex(0, beta, c, ell) == math.inf


@SETTINGS
@given(seed=seeds, N=st.integers(1, 25))
def test_alpha_crit_convex_is_the_bisection_threshold_and_does_not_shrink(seed, N):
    rng = np.random.default_rng(seed)
    L = rng.uniform(0.5, 5.0)
    beta = rng.uniform(0.3, 1.9) / L
    eigs = np.array([L, rng.uniform(0.05, 0.9) * L])
    A = with_spectrum(rng, eigs)
    stable = lambda alpha: _radius(beta, qd.meta_hessian(alpha, N, A)) <= 1.0 + 1e-12  # noqa: E731
    alpha_bis = _bisect(stable, 2.0 / L, 4.0 / L)
    crit = qd.alpha_crit_convex(N, beta, L)
    assert crit == pytest.approx(alpha_bis, rel=1e-8)
    assert crit >= 2.0 / L
    assert qd.alpha_crit_convex(10_000, beta, L) == pytest.approx(2.0 / L, rel=1e-3)


# ------------------------------------------------------------------------------------------------ §1.5
@SETTINGS
@given(seed=seeds, d=st.integers(1, 5), B=st.integers(1, 8))
def test_lyapunov_floor_equals_commuting_floor_when_matrices_commute(seed, d, B):
    rng = np.random.default_rng(seed)
    U = orthogonal(rng, d)
    beta = rng.uniform(0.05, 1.0)
    h = rng.uniform(0.05, 1.95, d) / beta
    s = rng.uniform(0.0, 3.0, d)
    H, Sigma = (U * h) @ U.T, (U * s) @ U.T
    a = qd.sgd_noise_floor(beta, h, s, B)
    b = qd.sgd_noise_floor_lyapunov(beta, 0.5 * (H + H.T), 0.5 * (Sigma + Sigma.T), B)
    assert b == pytest.approx(a, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("commuting", [True, False])
def test_sgd_floor_matches_monte_carlo_sgd(commuting):
    rng = np.random.default_rng(1234)
    d, B, beta = 3, 4, 0.4
    H = with_spectrum(rng, [0.5, 1.5, 3.0])
    if commuting:
        vals, U = np.linalg.eigh(H)
        Sigma = (U * np.array([2.0, 1.0, 0.5])) @ U.T
    else:
        G = rng.standard_normal((d, d))
        Sigma = G @ G.T + 0.1 * np.eye(d)
    Sigma = 0.5 * (Sigma + Sigma.T)
    chol = np.linalg.cholesky(Sigma / B)
    chains, burn, keep = 4000, 200, 300
    theta = np.zeros((chains, d))
    acc = 0.0
    for k in range(burn + keep):
        zeta = rng.standard_normal((chains, d)) @ chol.T
        theta = theta - beta * (theta @ H + zeta)
        if k >= burn:
            acc += np.mean(np.sum((theta @ H) ** 2, axis=1))
    mc = acc / keep
    predicted = qd.sgd_noise_floor_lyapunov(beta, H, Sigma, B)
    assert mc == pytest.approx(predicted, rel=0.03)  # MC standard error is below 1% here
    if commuting:
        vals, U = np.linalg.eigh(H)
        s = np.einsum("ij,jk,ki->i", U.T, Sigma, U)
        assert qd.sgd_noise_floor(beta, vals, s, B) == pytest.approx(predicted, rel=1e-9)


@SETTINGS
@given(seed=seeds, K=st.integers(1, 200), noisy=st.booleans())
def test_generic_nonconvex_bound_holds_for_sgd_on_quadratics(seed, K, noisy):
    rng = np.random.default_rng(seed)
    d, B = 3, 2
    H = with_spectrum(rng, spectrum(rng, d, 0.1, 2.0))
    L_meta = np.linalg.eigvalsh(H)[-1]
    beta = rng.uniform(0.1, 1.0) / L_meta
    sigma2 = 1.0 if noisy else 0.0
    chains = 400 if noisy else 1
    theta0 = rng.standard_normal(d) * 2
    theta = np.tile(theta0, (chains, 1))
    gap = 0.5 * theta0 @ H @ theta0
    best = math.inf
    for _ in range(K):
        g = theta @ H
        best = min(best, float(np.mean(np.sum(g**2, axis=1))))
        noise = rng.standard_normal((chains, d)) * math.sqrt(sigma2 / d / B)  # E||noise||^2 = sigma2 / B
        theta = theta - beta * (g + noise)
    bound = qd.sgd_nonconvex_bound(beta, K, gap, L_meta, sigma2, B)
    assert best <= bound * (1.1 if noisy else 1 + 1e-12)  # 10% slack for the Monte-Carlo mean


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "fn, args",
    [
        (qd.gd_contraction, (0.1, 2.0, 1.0)),  # mu > L
        (qd.gd_contraction, (0.1, 1.0, -1.0)),  # L <= 0
        (qd.gd_contraction, (0.0, 1.0, 2.0)),  # alpha <= 0
        (qd.gd_contraction, (float("nan"), 1.0, 2.0)),
        (qd.inner_error_bound, (0.1, 1.0, 2.0, -1)),  # N < 0
        (qd.meta_smoothness_shared, (0.1, 1, [-1.0, 2.0])),
        (qd.meta_smoothness_interval, (0.1, 1, 3.0, 2.0)),
        (qd.meta_hessian, (0.1, 1, np.ones((2, 3)))),
        (qd.meta_hessian, (0.1, 1, np.array([[1.0, 2.0], [0.0, 1.0]]))),  # not symmetric
        (qd.meta_hessian, (0.1, 1, np.array([[np.inf, 0.0], [0.0, 1.0]]))),
        (qd.beta_max, (0.0,)),
        (qd.alpha_crit_nonconvex, (3, 1.0, 2.0, 1.0)),  # beta c >= 2
        (qd.alpha_crit_nonconvex, (-1, 0.1, 2.0, 1.0)),
        (qd.alpha_crit_nonconvex_asymptotic, (0, 0.1, 2.0, 1.0)),
        (qd.alpha_crit_convex, (3, 1.0, math.inf)),
        (qd.sgd_noise_floor, (1.0, [1.0, 2.5], [1.0, 1.0])),  # beta h >= 2
        (qd.sgd_noise_floor, (1.0, [1.0], [1.0, 1.0])),
        (qd.sgd_noise_floor, (0.1, [1.0], [1.0], 0)),  # B < 1
        (qd.sgd_noise_floor_lyapunov, (1.0, np.diag([1.0, 3.0]), np.eye(2))),
        (qd.sgd_noise_floor_lyapunov, (0.1, np.eye(2), np.eye(3))),
        (qd.sgd_nonconvex_bound, (1.0, 10, 1.0, 2.0)),  # beta > 1/L_meta
        (qd.sgd_nonconvex_bound, (0.1, 0, 1.0, 2.0)),  # K < 1
    ],
)
def test_invalid_inputs_raise_naming_the_value(fn, args):
    with pytest.raises(InvalidArgumentError) as err:
        fn(*args)
    assert "invalid" in str(err.value) or "must" in str(err.value)


def test_non_numbers_raise_type_errors():
    with pytest.raises(InvalidTypeError):
        qd.gd_contraction("a", 1.0, 2.0)
    with pytest.raises(InvalidTypeError):
        qd.inner_error_bound(0.1, 1.0, 2.0, 1.5)
    assert qd.inner_error_bound(0.1, 1.0, 2.0, np.int64(3)).value == pytest.approx(0.9**3)
