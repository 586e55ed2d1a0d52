"""convtheory.theory.esj: ES-Jacobian MSE formulas against Monte Carlo on the quadratic bilevel family."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import esj
from convtheory.theory.bilevel import itd_error_quadratic
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, seeds, spectrum, with_spectrum


def _directions(rng, law, n, Q, p):
    u = rng.standard_normal((n, Q, p))
    if law == "gaussian":
        return u
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    return u * p if law == "sphere_scaled" else u


def _estimates(rng, law, a, Q, n):
    """n independent ES estimates (1/Q) sum_j u_j u_j^T a (for sphere_scaled the factor p is on one side)."""
    p = a.size
    u = _directions(rng, "gaussian" if law == "gaussian" else "sphere", n, Q, p)
    est = np.einsum("nqi,nq->ni", u, u @ a) / Q
    return est * p if law == "sphere_scaled" else est


@pytest.mark.parametrize("law", esj.DIRECTIONS)
@pytest.mark.parametrize("p, Q", [(1, 1), (3, 2), (6, 5)])
def test_mse_formula_matches_monte_carlo(law, p, Q):
    rng = np.random.default_rng(p * 10 + Q)
    a = rng.standard_normal(p)
    n = 60_000
    est = _estimates(rng, law, a, Q, n)
    sq = np.sum((est - a) ** 2, axis=1)
    predicted = esj.esj_mse(np.linalg.norm(a), p, Q, law)
    se = sq.std() / math.sqrt(n)
    assert abs(sq.mean() - predicted) <= 5 * se + 1e-12
    bias = np.linalg.norm(est.mean(0) - a)
    assert bias == pytest.approx(esj.esj_bias(np.linalg.norm(a), p, law), abs=6 * est.std(0).max() / math.sqrt(n))


@SETTINGS
@given(seed=seeds, N=st.integers(0, 15), delta=st.floats(1e-3, 10.0))
def test_forward_difference_of_unrolled_gd_is_exact_and_esj_total_mse_matches(seed, N, delta):
    rng = np.random.default_rng(seed)
    d, p = 3, 2
    H = with_spectrum(rng, spectrum(rng, d, 0.3, 2.0))
    B, b, ybar = rng.standard_normal((d, p)), rng.standard_normal(d), rng.standard_normal(d)
    gamma, alpha = 0.3, 0.4
    x, y0 = rng.standard_normal(p), rng.standard_normal(d)

    def y_N(xx):
        y = y0.copy()
        for _ in range(N):
            y = y - alpha * (H @ y - B @ xx - b)
        return y

    P = np.eye(d) - alpha * H
    J = (np.eye(d) - np.linalg.matrix_power(P, N)) @ np.linalg.solve(H, B)
    u = rng.standard_normal(p)
    np.testing.assert_allclose((y_N(x + delta * u) - y_N(x)) / delta, J @ u, atol=1e-9 * (1 + 1 / delta))
    # ESJ estimates with Q Gaussian directions, against the true hypergradient
    Q, n = 3, 20_000
    a = J.T @ (y_N(x) - ybar)
    est = gamma * x + _estimates(rng, "gaussian", a, Q, n)
    ystar = np.linalg.solve(H, B @ x + b)
    truth = gamma * x + B.T @ np.linalg.solve(H, ystar - ybar)
    sq = np.sum((est - truth) ** 2, axis=1)
    e_itd = np.linalg.norm(itd_error_quadratic(alpha, N, H, B, y0, x, b, ybar))
    predicted = esj.esj_total_mse(e_itd, np.linalg.norm(a), p, Q)
    assert abs(sq.mean() - predicted) <= 5 * sq.std() / math.sqrt(n) + 1e-9 * predicted


@SETTINGS
@given(a_norm=st.floats(0.01, 10.0), p=st.integers(2, 50), eps=st.floats(1e-4, 1.0),
       law=st.sampled_from(["gaussian", "sphere_scaled"]))
def test_directions_for_mse_is_minimal(a_norm, p, eps, law):
    Q = esj.esj_directions_for_mse(a_norm, p, eps, law)
    assert esj.esj_mse(a_norm, p, Q, law) <= eps * (1 + 1e-12)
    if Q > 1:
        assert esj.esj_mse(a_norm, p, Q - 1, law) > eps


def test_complexity_shape():
    assert esj.esj_complexity(10, 0.1, 2.0) == pytest.approx(2.0 * 10 * 100 * math.log(10))


@pytest.mark.parametrize(
    "fn, args",
    [
        (esj.esj_mse, (1.0, 0, 1)),
        (esj.esj_mse, (1.0, 3, 0)),
        (esj.esj_mse, (-1.0, 3, 2)),
        (esj.esj_mse, (1.0, 3, 2, "uniform")),
        (esj.esj_total_mse, (0.1, 1.0, 3, 2, "sphere")),
        (esj.esj_directions_for_mse, (1.0, 3, 0.1, "sphere")),
        (esj.esj_complexity, (3, 1.5, 1.0)),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
