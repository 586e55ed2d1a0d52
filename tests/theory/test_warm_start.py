"""convtheory.theory.warm_start against brute-force outer iterations (explicit inner loops, dense solves) and the
identities of THEORY.md §1.3 (item 23: warm vs cold starts in bilevel optimisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import warm_start as ws
from convtheory.types import InvalidArgumentError, InvalidTypeError

from .helpers import SETTINGS, seeds, spectrum, with_spectrum


def _family(rng, d=4, p=3, lo=0.2, hi=1.0, b_scale=0.5):
    """g = 1/2 y^T H y - y^T (B x + b), f = 1/2 ||y - ybar||^2 + gamma/2 ||x||^2; returns (H, B, b, ybar, gamma, y0)."""
    H = with_spectrum(rng, spectrum(rng, d, lo, hi))
    B = b_scale * rng.standard_normal((d, p))
    return H, B, rng.standard_normal(d), rng.standard_normal(d), rng.uniform(0.3, 1.0), rng.standard_normal(d)


def _hypergrad(x, H, B, b, ybar, gamma):
    """grad Phi by the chain rule with dense solves: gamma x + (dy*/dx)^T (y* - ybar), dy*/dx = H^{-1} B."""
    ys = np.linalg.solve(H, B @ x + b)
    return gamma * x + np.linalg.solve(H, B).T @ (ys - ybar)


def _estimate(x, y_start, H, B, b, ybar, gamma, alpha, D, mode):
    """(hypergradient estimate, y_D) with an explicit D-step inner GD loop from y_start.

    mode "aid": v = H^{-1}(y_D - ybar) by a dense solve; mode "itd": forward-mode unrolling
    (J_{t+1} = J_t - alpha (H J_t - B)), estimate gamma x + J_D^T (y_D - ybar).
    """
    y, J = y_start.copy(), np.zeros_like(B)
    for _ in range(D):
        y, J = y - alpha * (H @ y - B @ x - b), J - alpha * (H @ J - B)
    if mode == "aid":
        return gamma * x + B.T @ np.linalg.solve(H, y - ybar), y
    return gamma * x + J.T @ (y - ybar), y


def _outer_loop(H, B, b, ybar, gamma, y0, alpha, D, beta, K, mode):
    """K outer GD steps: "aid-cold" restarts every inner loop at y0, "itd-warm" at the previous y_D."""
    x, y = np.zeros(B.shape[1]), y0.copy()
    for _ in range(K):
        start = y0 if mode == "aid-cold" else y
        g, y = _estimate(x, start, H, B, b, ybar, gamma, alpha, D, mode.split("-")[0])
        x = x - beta * g
    return x


def _beta(H, B, gamma):
    X = np.linalg.solve(H, B)
    return 1.0 / (gamma + np.linalg.eigvalsh(X.T @ X)[-1])


# ------------------------------------------------------------------------------------------------ limits
@SETTINGS
@given(seed=seeds, D=st.integers(0, 6))
def test_aid_cold_start_limit_is_where_the_explicit_outer_loop_converges(seed, D):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma, y0 = _family(rng)
    x_inf = ws.aid_cold_start_limit(1.0, D, H, B, b, ybar, gamma, y0)
    g, _ = _estimate(x_inf, y0, H, B, b, ybar, gamma, 1.0, D, "aid")  # a fixed point of the outer step
    np.testing.assert_allclose(g, 0.0, atol=1e-10)
    H, B, b, ybar, gamma, y0 = _family(rng, b_scale=0.1)
    x_inf = ws.aid_cold_start_limit(1.0, D, H, B, b, ybar, gamma, y0)
    x_loop = _outer_loop(H, B, b, ybar, gamma, y0, 1.0, D, _beta(H, B, gamma), 300, "aid-cold")
    np.testing.assert_allclose(x_loop, x_inf, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(seed=seeds, D=st.integers(1, 6))
def test_itd_warm_start_limit_is_where_the_explicit_outer_loop_converges(seed, D):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma, y0 = _family(rng)
    x_inf = ws.itd_warm_start_limit(1.0, D, H, B, b, ybar, gamma)
    y_inf = np.linalg.solve(H, B @ x_inf + b)  # the warm inner iterate's fixed point, y*(x_inf)
    g, y_next = _estimate(x_inf, y_inf, H, B, b, ybar, gamma, 1.0, D, "itd")
    np.testing.assert_allclose(g, 0.0, atol=1e-10)
    np.testing.assert_allclose(y_next, y_inf, atol=1e-10)
    H, B, b, ybar, gamma, y0 = _family(rng, b_scale=0.1)
    x_inf = ws.itd_warm_start_limit(1.0, D, H, B, b, ybar, gamma)
    x_loop = _outer_loop(H, B, b, ybar, gamma, y0, 1.0, D, _beta(H, B, gamma), 300, "itd-warm")
    np.testing.assert_allclose(x_loop, x_inf, rtol=1e-8, atol=1e-8)


@SETTINGS
@given(seed=seeds, D=st.integers(0, 8))
def test_plateaus_are_the_squared_hypergradient_at_the_limit_with_their_closed_forms(seed, D):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma, y0 = _family(rng)
    alpha = 0.9
    PD = np.linalg.matrix_power(np.eye(H.shape[0]) - alpha * H, D)
    x = ws.aid_cold_start_limit(alpha, D, H, B, b, ybar, gamma, y0)
    ys = np.linalg.solve(H, B @ x + b)
    g = B.T @ np.linalg.solve(H, PD @ (ys - y0))  # grad Phi(x_inf) = B^T S P^D (y* - y0)
    np.testing.assert_allclose(_hypergrad(x, H, B, b, ybar, gamma), g, rtol=1e-9, atol=1e-12)
    assert ws.aid_cold_start_plateau(alpha, D, H, B, b, ybar, gamma, y0) == pytest.approx(g @ g, rel=1e-9, abs=1e-24)
    x = ws.itd_warm_start_limit(alpha, D, H, B, b, ybar, gamma)
    ys = np.linalg.solve(H, B @ x + b)
    g = B.T @ PD @ np.linalg.solve(H, ys - ybar)  # grad Phi(x_inf) = B^T P^D S (y* - ybar)
    np.testing.assert_allclose(_hypergrad(x, H, B, b, ybar, gamma), g, rtol=1e-9, atol=1e-12)
    assert ws.itd_warm_start_plateau(alpha, D, H, B, b, ybar, gamma) == pytest.approx(g @ g, rel=1e-9, abs=1e-24)


def test_hypergradient_matches_central_differences_of_phi():
    rng = np.random.default_rng(0)
    H, B, b, ybar, gamma, _ = _family(rng)

    def phi(x):
        ys = np.linalg.solve(H, B @ x + b)
        return 0.5 * np.sum((ys - ybar) ** 2) + 0.5 * gamma * x @ x

    x, h = rng.standard_normal(B.shape[1]), 1e-5
    fd = np.array([(phi(x + h * e) - phi(x - h * e)) / (2 * h) for e in np.eye(x.size)])
    np.testing.assert_allclose(ws.hypergradient_quadratic(x, H, B, b, ybar, gamma), fd, rtol=1e-7, atol=1e-9)


def test_plateaus_vanish_with_exact_inner_solves():
    """alpha = 1/L with H = L I: one inner step is exact, so both plateaus are 0 for every D >= 1."""
    rng = np.random.default_rng(1)
    _, B, b, ybar, gamma, y0 = _family(rng)
    H = 2.0 * np.eye(4)
    assert ws.aid_cold_start_plateau(0.5, 1, H, B, b, ybar, gamma, y0) == pytest.approx(0.0, abs=1e-28)
    assert ws.itd_warm_start_plateau(0.5, 3, H, B, b, ybar, gamma) == pytest.approx(0.0, abs=1e-28)
    assert ws.aid_cold_start_plateau(0.5, 0, H, B, b, ybar, gamma, y0) > 1e-6  # D = 0: no inner step at all


# ------------------------------------------------------------------------------------------------ bound, ratio
@SETTINGS
@given(seed=seeds, D=st.integers(0, 30))
def test_itd_plateau_is_below_the_LM_over_mu_bound(seed, D):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma, _ = _family(rng, lo=0.1, hi=1.0)
    mu = np.linalg.eigvalsh(H)[0]
    x = ws.itd_warm_start_limit(1.0, D, H, B, b, ybar, gamma)
    M = np.linalg.norm(np.linalg.solve(H, B @ x + b) - ybar)  # ||grad_y f|| at the limit
    bound = ws.itd_warm_start_plateau_bound(1.0, D, np.linalg.norm(B, 2), mu, M)
    assert ws.itd_warm_start_plateau(1.0, D, H, B, b, ybar, gamma) <= bound.value * (1 + 1e-9)
    assert bound.rate == pytest.approx((1 - mu) ** 2) and not bound.exact


def test_plateau_ratio_is_the_asymptotic_ratio_of_both_plateaus():
    """Far into the regime where P^D is dominated by the mu eigenvector, P(D + 5) / P(D) -> (1 - alpha mu)^10."""
    rng = np.random.default_rng(3)
    H = with_spectrum(rng, [0.2, 0.5, 0.8, 1.0])
    B, b, ybar, y0 = 0.3 * rng.standard_normal((4, 3)), rng.standard_normal(4), rng.standard_normal(4), \
        rng.standard_normal(4)
    r = ws.plateau_ratio(1.0, 0.2, 5)
    assert r == pytest.approx(0.8**10)
    for f in (lambda D: ws.aid_cold_start_plateau(1.0, D, H, B, b, ybar, 1.0, y0),
              lambda D: ws.itd_warm_start_plateau(1.0, D, H, B, b, ybar, 1.0)):
        assert f(65) / f(60) == pytest.approx(r, rel=1e-4)
        assert abs(f(10) / f(5) / r - 1) > abs(f(65) / f(60) / r - 1)  # the law is asymptotic
    assert ws.plateau_ratio(1.0, 0.2, -5) == pytest.approx(1 / r)


# ------------------------------------------------------------------------------------------------ errors
def test_bad_values_are_named():
    rng = np.random.default_rng(0)
    H, B, b, ybar, gamma, y0 = _family(rng)
    with pytest.raises(InvalidArgumentError, match="positive definite"):
        ws.aid_cold_start_plateau(1.0, 2, -H, B, b, ybar, gamma, y0)
    with pytest.raises(InvalidArgumentError, match="B has shape"):
        ws.itd_warm_start_plateau(1.0, 2, H, B[:2], b, ybar, gamma)
    with pytest.raises(InvalidArgumentError, match="y0"):
        ws.aid_cold_start_limit(1.0, 2, H, B, b, ybar, gamma, y0[:2])
    with pytest.raises(InvalidArgumentError, match="alpha"):
        ws.aid_cold_start_limit(-1.0, 2, H, B, b, ybar, gamma, y0)
    with pytest.raises(InvalidArgumentError, match="D"):
        ws.itd_warm_start_limit(1.0, -1, H, B, b, ybar, gamma)
    with pytest.raises(InvalidArgumentError, match="gamma > 0"):
        ws.itd_warm_start_limit(1.0, 2, H, np.zeros_like(B), b, ybar, 0.0)
    with pytest.raises(InvalidArgumentError, match="alpha mu"):
        ws.itd_warm_start_plateau_bound(3.0, 2, 1.0, 0.5, 1.0)
    with pytest.raises(InvalidArgumentError, match="alpha mu"):
        ws.plateau_ratio(1.0, 1.0, 2)
    with pytest.raises(InvalidTypeError, match="dD"):
        ws.plateau_ratio(1.0, 0.2, 1.5)
    assert math.isfinite(ws.itd_warm_start_plateau_bound(1.0, 0, 1.0, 0.5, 2.0).value)
