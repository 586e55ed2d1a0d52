"""convtheory.theory.maml: growth bounds, HF-MAML finite differences, and fixed points against explicit GD runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import maml as mm
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, orthogonal, seeds, with_spectrum


def _tasks(rng, n_tasks, d, lo=0.1, hi=2.0, shared=False):
    if shared:
        A = np.stack([with_spectrum(rng, rng.uniform(lo, hi, d))] * n_tasks)
    else:
        A = np.stack([with_spectrum(rng, rng.uniform(lo, hi, d)) for _ in range(n_tasks)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.2, 2.0, d)) for _ in range(n_tasks)])
    return A, rng.standard_normal((n_tasks, d)), C, rng.standard_normal((n_tasks, d))


def _adapt(theta, alpha, N, A_i, a_i):
    """N explicit GD steps on the support loss 1/2 (w - a)^T A (w - a) (independent of the package)."""
    w = theta.copy()
    for _ in range(N):
        w = w - alpha * A_i @ (w - a_i)
    return w


# --------------------------------------------------------------------------------------- growth bounds
def test_safe_step_keeps_growth_below_e_to_two_over_c_for_every_N():
    L = 3.0
    for c in (8.0, 4.0, 2.0):
        growths = [mm.inner_growth_factor(mm.ji_safe_inner_step(N, L, c), N, L) for N in (1, 2, 5, 50, 5000)]
        assert growths == sorted(growths)  # increases toward the limit
        assert max(growths) <= mm.safe_step_growth_bound(c)
        assert growths[-1] == pytest.approx(mm.safe_step_growth_bound(c), rel=1e-3)
    assert mm.safe_step_growth_bound() == pytest.approx(math.exp(0.25))


@SETTINGS
@given(seed=seeds, N=st.integers(1, 6))
def test_inner_growth_factor_bounds_the_squared_jacobian_product(seed, N):
    rng = np.random.default_rng(seed)
    d, L = 3, rng.uniform(0.5, 3.0)
    alpha = rng.uniform(0.01, 1.0) / L
    Hs = [with_spectrum(rng, rng.uniform(-L, L, d)) for _ in range(N)]
    prod = np.eye(d)
    for H in Hs:
        prod = prod @ (np.eye(d) - alpha * H)
    assert np.linalg.norm(prod, 2) ** 2 <= mm.inner_growth_factor(alpha, N, L) * (1 + 1e-12)
    # attained when every Hessian is -L I
    worst = np.linalg.matrix_power((1 + alpha * L) * np.eye(d), N)
    assert np.linalg.norm(worst, 2) ** 2 == pytest.approx(mm.inner_growth_factor(alpha, N, L), rel=1e-12)


def test_step_size_formulas_give_the_stated_numbers():
    assert mm.ji_safe_inner_step(4, 2.0) == pytest.approx(1 / 64)
    assert mm.ji_safe_inner_step(4, 2.0, c=2.0) == pytest.approx(1 / 16)
    assert mm.ji_smoothness_estimate(0.1, 2, 1.0, 3.0, 0.5) == pytest.approx(1.1**4 + 1.5)
    assert mm.ji_outer_step(0.1, 2, 1.0, 3.0, 0.5, c_beta=2.0) == pytest.approx(1 / (2 * (1.1**4 + 1.5)))
    assert mm.fallah_inner_step_max(2.0) == pytest.approx(1 / 12)
    assert mm.fallah_local_smoothness(2.0, 3.0, 0.1, 5.0) == pytest.approx(8.0 + 3.0)
    assert mm.fallah_outer_step(11.0) == pytest.approx(1 / 132)


@SETTINGS
@given(seed=seeds, delta=st.floats(1e-4, 1.0))
def test_central_difference_error_is_within_rho_delta_v_squared(seed, delta):
    rng = np.random.default_rng(seed)
    d = 4
    w, vec = rng.standard_normal(d), rng.standard_normal(d)
    # f(w) = sum sin(w_i): Hessian diag(-sin w) is 1-Lipschitz in operator norm, so rho = 1
    grad = np.cos
    fd = (grad(w + delta * vec) - grad(w - delta * vec)) / (2 * delta)
    exact = -np.sin(w) * vec
    err = np.linalg.norm(fd - exact)
    assert err <= mm.hf_maml_fd_error_bound(1.0, delta, np.linalg.norm(vec))
    # on a quadratic the central difference is exact for any delta
    A = with_spectrum(rng, rng.uniform(-1, 2, d))
    fdq = (A @ (w + delta * vec) - A @ (w - delta * vec)) / (2 * delta)
    np.testing.assert_allclose(fdq, A @ vec, atol=1e-10 / delta)


# ----------------------------------------------------------------------------------------- fixed points
@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n_tasks=st.integers(1, 4), N=st.integers(0, 4))
def test_maml_quadratic_gradient_equals_autograd_through_the_inner_loop(seed, d, n_tasks, N):
    rng = np.random.default_rng(seed)
    A, a, C, b = _tasks(rng, n_tasks, d, lo=-1.0)
    alpha = rng.uniform(0.01, 0.4)
    theta = rng.standard_normal(d)
    tA, ta, tC, tb = (torch.tensor(x) for x in (A, a, C, b))

    def meta_loss(th):
        w = th.expand(n_tasks, d)
        for _ in range(N):
            w = w - alpha * torch.einsum("bij,bj->bi", tA, w - ta)
        return 0.5 * torch.einsum("bi,bij,bj->b", w - tb, tC, w - tb).mean()

    g_auto = torch.func.grad(meta_loss)(torch.tensor(theta)).numpy()
    np.testing.assert_allclose(mm.maml_quadratic_gradient(theta, alpha, N, A, a, C, b), g_auto, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n_tasks=st.integers(1, 5), N=st.integers(1, 5))
def test_fomaml_fixed_point_makes_the_expected_fomaml_direction_vanish(seed, d, n_tasks, N):
    rng = np.random.default_rng(seed)
    A, a, C, b = _tasks(rng, n_tasks, d)
    alpha = rng.uniform(0.01, 0.5)
    theta = mm.fomaml_fixed_point(alpha, N, A, a, C, b)
    direction = np.mean([C[i] @ (_adapt(theta, alpha, N, A[i], a[i]) - b[i]) for i in range(n_tasks)], axis=0)
    assert np.linalg.norm(direction) <= 1e-9 * (1 + np.linalg.norm(theta))
    np.testing.assert_allclose(mm.fomaml_quadratic_direction(theta, alpha, N, A, a, C, b), direction, atol=1e-12)


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n_tasks=st.integers(1, 5), N=st.integers(1, 5))
def test_maml_fixed_point_makes_the_meta_gradient_vanish(seed, d, n_tasks, N):
    rng = np.random.default_rng(seed)
    A, a, C, b = _tasks(rng, n_tasks, d)
    alpha = rng.uniform(0.01, 0.4)
    theta = mm.maml_fixed_point(alpha, N, A, a, C, b)
    eps = 1e-5  # central differences of the exact (quadratic) meta-loss, evaluated by explicit GD
    loss = lambda th: np.mean([0.5 * (w - b[i]) @ C[i] @ (w - b[i])  # noqa: E731
                               for i in range(n_tasks) for w in [_adapt(th, alpha, N, A[i], a[i])]])
    g = np.array([(loss(theta + eps * e) - loss(theta - eps * e)) / (2 * eps) for e in np.eye(d)])
    assert np.linalg.norm(g) <= 1e-7 * (1 + np.linalg.norm(theta)) ** 2


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), n_tasks=st.integers(1, 5), k=st.integers(1, 6))
def test_reptile_fixed_point_makes_the_expected_reptile_direction_vanish(seed, d, n_tasks, k):
    rng = np.random.default_rng(seed)
    A, a, _, _ = _tasks(rng, n_tasks, d)
    alpha = rng.uniform(0.01, 0.5)
    theta = mm.reptile_fixed_point(alpha, k, A, a)
    direction = np.mean([theta - _adapt(theta, alpha, k, A[i], a[i]) for i in range(n_tasks)], axis=0)
    assert np.linalg.norm(direction) <= 1e-10 * (1 + np.linalg.norm(theta))


def test_reptile_and_maml_fixed_points_differ_unless_the_hessians_are_equal():
    rng = np.random.default_rng(3)
    A, a, _, _ = _tasks(rng, 3, 2)
    rep, mam = mm.reptile_fixed_point(0.2, 3, A, a), mm.maml_fixed_point(0.2, 3, A, a)
    assert np.linalg.norm(rep - mam) > 1e-3
    A_eq = np.stack([A[0]] * 3)
    np.testing.assert_allclose(mm.reptile_fixed_point(0.2, 3, A_eq, a), mm.maml_fixed_point(0.2, 3, A_eq, a),
                               atol=1e-10)


def test_fomaml_floor_is_zero_for_shared_commuting_curvature_and_order_alpha_otherwise():
    rng = np.random.default_rng(7)
    d, n = 3, 4
    U = orthogonal(rng, d)
    A = np.stack([(U * rng.uniform(0.5, 2.0, d)) @ U.T] * n)
    C = np.stack([(U * rng.uniform(0.5, 2.0, d)) @ U.T] * n)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    assert mm.fomaml_floor(0.2, 3, A, a, C, b) <= 1e-12
    A2, a2, C2, b2 = _tasks(rng, n, d)
    floors = [mm.fomaml_floor(alpha, 2, A2, a2, C2, b2) for alpha in (0.04, 0.02, 0.01, 0.005)]
    assert floors[0] > 1e-3
    ratios = [floors[i + 1] / floors[i] for i in range(3)]
    assert ratios[-1] == pytest.approx(0.5, rel=0.05)  # O(alpha)


@pytest.mark.parametrize(
    "fn, args",
    [
        (mm.ji_safe_inner_step, (0, 1.0)),
        (mm.ji_safe_inner_step, (2, -1.0)),
        (mm.ji_safe_inner_step, (2, 1.0, 0.0)),
        (mm.inner_growth_factor, (0.0, 2, 1.0)),
        (mm.inner_growth_factor, (0.1, -2, 1.0)),
        (mm.safe_step_growth_bound, (float("inf"),)),
        (mm.fallah_local_smoothness, (1.0, -1.0, 0.1, 1.0)),
        (mm.hf_maml_fd_error_bound, (1.0, 0.0, 1.0)),
        (mm.fomaml_fixed_point, (0.1, 2, np.eye(2), np.zeros(3))),
        (mm.fomaml_fixed_point, (1.0, 1, np.eye(2), np.zeros(2))),  # alpha = 1/L: E[C P] singular
        (mm.reptile_fixed_point, (0.1, 0, np.eye(2), np.zeros(2))),
        (mm.maml_quadratic_gradient, (np.zeros(3), 0.1, 1, np.eye(2), np.zeros(2))),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
