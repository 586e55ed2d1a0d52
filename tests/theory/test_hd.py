"""convtheory.theory.hd: HD line-search step and Alpha-MAML step against direct minimisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import hd
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, seeds, spectrum, with_spectrum


@SETTINGS
@given(seed=seeds, d=st.integers(1, 6))
def test_line_search_step_lies_in_the_inverse_spectrum_and_orthogonalises_gradients(seed, d):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.05, 10.0, 2))
    H = with_spectrum(rng, spectrum(rng, d, mu, L))
    theta_star, theta = rng.standard_normal(d), rng.standard_normal(d)
    g = H @ (theta - theta_star)
    alpha = hd.hd_line_search_step(g, H)
    assert 1.0 / L * (1 - 1e-12) <= alpha <= 1.0 / mu * (1 + 1e-12)
    g_next = H @ (theta - alpha * g - theta_star)
    assert abs(g_next @ g) <= 1e-10 * (g @ g)  # the SGD-HD fixed point: h_t = g_t^T g_{t-1} = 0
    f = lambda a: 0.5 * (theta - a * g - theta_star) @ H @ (theta - a * g - theta_star)  # noqa: E731
    grid = np.linspace(0.0, 2.0 / mu, 401)
    assert f(alpha) <= min(f(a) for a in grid) + 1e-12


@SETTINGS
@given(seed=seeds)
def test_hd_hypergradient_is_the_derivative_in_alpha(seed):
    rng = np.random.default_rng(seed)
    d = 3
    H = with_spectrum(rng, rng.uniform(-1.0, 3.0, d))
    f = lambda th: 0.5 * th @ H @ th  # noqa: E731
    theta_prev = rng.standard_normal(d)
    g_prev = H @ theta_prev
    alpha, h = rng.uniform(0.0, 0.5), 1e-6
    g_t = H @ (theta_prev - alpha * g_prev)
    fd = (f(theta_prev - (alpha + h) * g_prev) - f(theta_prev - (alpha - h) * g_prev)) / (2 * h)
    assert hd.hd_hypergradient(g_t, g_prev) == pytest.approx(fd, rel=1e-6, abs=1e-8)


@SETTINGS
@given(seed=seeds, n=st.integers(1, 5), d=st.integers(1, 4))
def test_alpha_maml_optimal_step_minimises_the_post_adaptation_loss(seed, n, d):
    rng = np.random.default_rng(seed)
    A = np.stack([with_spectrum(rng, rng.uniform(0.1, 3.0, d)) for _ in range(n)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.1, 3.0, d)) for _ in range(n)])
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    theta = rng.standard_normal(d)

    def loss(alpha):
        w = [theta - alpha * A[i] @ (theta - a[i]) for i in range(n)]
        return np.mean([0.5 * (w[i] - b[i]) @ C[i] @ (w[i] - b[i]) for i in range(n)])

    alpha_star = hd.alpha_maml_optimal_step(theta, A, a, C, b)
    h = 1e-5 * max(1.0, abs(alpha_star))
    assert (loss(alpha_star + h) - loss(alpha_star - h)) / (2 * h) == pytest.approx(0.0, abs=1e-6)
    assert loss(alpha_star) <= min(loss(x) for x in np.linspace(alpha_star - 2, alpha_star + 2, 401)) + 1e-12


@pytest.mark.parametrize(
    "fn, args",
    [
        (hd.hd_line_search_step, ([0.0, 0.0], np.eye(2))),
        (hd.hd_line_search_step, ([1.0, 0.0], np.diag([1.0, -1.0]))),
        (hd.hd_line_search_step, ([1.0, 0.0, 0.0], np.eye(2))),
        (hd.hd_hypergradient, ([1.0], [1.0, 2.0])),
        (hd.alpha_maml_optimal_step, (np.zeros(2), np.eye(2), np.zeros(2))),  # g = 0: no curvature in alpha
        (hd.alpha_maml_optimal_step, (np.zeros(3), np.eye(2), np.zeros(2))),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
