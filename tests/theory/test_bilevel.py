"""convtheory.theory.bilevel against the quadratic bilevel family, actual solver iterates and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import bilevel as bl
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, cg, seeds, spectrum, with_spectrum


def _family(rng, d=3, p=2, lo=0.2, hi=3.0):
    """g = 1/2 y^T H y - y^T (B x + b), f = 1/2 ||y - ybar||^2 + gamma/2 ||x||^2."""
    H = with_spectrum(rng, spectrum(rng, d, lo, hi))
    B = rng.standard_normal((d, p))
    return H, B, rng.standard_normal(d), rng.standard_normal(d), rng.uniform(0.0, 1.0)


def _itd_by_unrolling(alpha, N, H, B, b, ybar, gamma, x, y0):
    """ITD hypergradient by forward-mode unrolling.

    y_{t+1} = y_t - alpha (H y_t - B x - b), J_{t+1} = P J_t + alpha B.
    """
    y, J = y0.copy(), np.zeros_like(B)
    for _ in range(N):
        y, J = y - alpha * (H @ y - B @ x - b), J - alpha * H @ J + alpha * B
    return gamma * x + J.T @ (y - ybar), y


# ------------------------------------------------------------------------------------------ smoothness
def test_hyperobjective_smoothness_reduces_to_L_one_plus_kappa_squared_for_quadratic_g():
    for L, mu in ((1.0, 1.0), (10.0, 0.5), (3.0, 0.01)):
        assert bl.hyperobjective_smoothness(L, mu, M=7.0, tau=0.0, rho=0.0) == pytest.approx(L * (1 + L / mu) ** 2)
    assert bl.lower_level_lipschitz(2.0, 1.0, 3.0, 0.5, 0.25) == pytest.approx(2 + 4 + 1.5 + 1.5)
    assert bl.response_lipschitz(6.0, 2.0) == 3.0


@SETTINGS
@given(seed=seeds, d=st.integers(1, 4), p=st.integers(1, 3))
def test_quadratic_hyperobjective_smoothness_equals_autograd_hessian(seed, d, p):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma = _family(rng, d, p)
    tH, tB, tb, tybar = (torch.tensor(z) for z in (H, B, b, ybar))

    def phi(x):
        y = torch.linalg.solve(tH, tB @ x + tb)
        return 0.5 * (y - tybar) @ (y - tybar) + 0.5 * gamma * x @ x

    hess = torch.func.hessian(phi)(torch.tensor(rng.standard_normal(p))).numpy()
    exact = bl.hyperobjective_smoothness_quadratic(gamma, B, H)
    assert exact == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-9)
    mu, L = np.linalg.eigvalsh(H)[[0, -1]]
    assert exact <= bl.hyperobjective_smoothness_quadratic_bound(gamma, np.linalg.norm(B, 2), mu) * (1 + 1e-12)
    Lbig = max(L, np.linalg.norm(B, 2), gamma, 1.0)  # smoothness of f and g jointly
    assert exact <= bl.hyperobjective_smoothness(Lbig, mu, M=1.0, tau=0.0, rho=0.0)


# ---------------------------------------------------------------------------------------------- ITD
@SETTINGS
@given(seed=seeds, N=st.integers(0, 40))
def test_itd_error_formula_equals_unrolled_itd_and_bounds_hold(seed, N):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma = _family(rng)
    mu, L = np.linalg.eigvalsh(H)[[0, -1]]
    alpha = rng.uniform(0.1, 1.0) / L
    x, y0 = rng.standard_normal(2), rng.standard_normal(3)
    g_itd, yN = _itd_by_unrolling(alpha, N, H, B, b, ybar, gamma, x, y0)
    ystar = np.linalg.solve(H, B @ x + b)
    truth = gamma * x + B.T @ np.linalg.solve(H, ystar - ybar)
    err = bl.itd_error_quadratic(alpha, N, H, B, y0, x, b, ybar)
    np.testing.assert_allclose(err, g_itd - truth, atol=1e-11)
    # exact-family bound (rate q^N, no prefactor)
    bq = bl.itd_error_bound_quadratic(alpha, N, mu, L, np.linalg.norm(B, 2), np.linalg.norm(y0 - ystar),
                                      np.linalg.norm(yN - ybar))
    assert np.linalg.norm(err) <= bq.value * (1 + 1e-10) + 1e-14
    # Ji et al. / Huang et al. general bound, with L covering f and g, M covering ||grad_y f|| on the path
    Lall = max(L, np.linalg.norm(B, 2), 1.0)
    alpha_j = alpha * L / Lall
    g_j, yN_j = _itd_by_unrolling(alpha_j, N, H, B, b, ybar, gamma, x, y0)
    M = max(np.linalg.norm(yN_j - ybar), np.linalg.norm(ystar - ybar))
    ji = bl.itd_error_bound(alpha_j, N, Lall, mu, M, 0.0, 0.0, np.linalg.norm(y0 - ystar))
    assert not ji.exact
    assert np.linalg.norm(g_j - truth) <= ji.value * (1 + 1e-10)


def test_itd_error_decays_exactly_at_rate_q_without_prefactor():
    rng = np.random.default_rng(11)
    _, B, b, ybar, _ = _family(rng)
    H = with_spectrum(rng, [0.3, 1.5, 3.0])  # well separated: the slowest direction dominates quickly
    mu, L = 0.3, 3.0
    alpha = 0.5 / L
    x = rng.standard_normal(2)
    ystar = np.linalg.solve(H, B @ x + b)
    Ns = np.arange(200, 300)  # late enough that the q^(2N) part of the error is negligible
    errs = [np.linalg.norm(bl.itd_error_quadratic(alpha, N, H, B, ystar + 1.0, x, b, ybar)) for N in Ns]
    slope = np.polyfit(Ns, np.log(errs), 1)[0]
    assert slope == pytest.approx(math.log(1 - alpha * mu), rel=1e-3)


@SETTINGS
@given(seed=seeds, N=st.integers(0, 20), Q=st.integers(0, 30))
def test_aid_error_bound_holds_for_fixed_point_aid(seed, N, Q):
    rng = np.random.default_rng(seed)
    H, B, b, ybar, gamma = _family(rng)
    mu, L = np.linalg.eigvalsh(H)[[0, -1]]
    alpha = eta = 1.0 / L
    x, y0 = rng.standard_normal(2), rng.standard_normal(3)
    _, yN = _itd_by_unrolling(alpha, N, H, B, b, ybar, gamma, x, y0)
    v = np.zeros(3)
    for _ in range(Q):
        v = v - eta * (H @ v - (yN - ybar))
    g_aid = gamma * x + B.T @ v
    ystar = np.linalg.solve(H, B @ x + b)
    truth = gamma * x + B.T @ np.linalg.solve(H, ystar - ybar)
    vstar = np.linalg.solve(H, yN - ybar)
    bound = bl.aid_error_bound_quadratic(mu, np.linalg.norm(B, 2), np.linalg.norm(v - vstar),
                                         np.linalg.norm(yN - ystar))
    assert np.linalg.norm(g_aid - truth) <= bound * (1 + 1e-10) + 1e-14
    assert np.linalg.norm(v - vstar) <= bl.fixed_point_error_bound(eta, mu, L, Q, np.linalg.norm(vstar)).value * (
        1 + 1e-10) + 1e-14


def test_grazzi_shapes_compute_the_stated_formulas():
    b = bl.grazzi_itd_error_bound(0.5, 3, c1=2.0, c2=1.0)
    assert b.value == pytest.approx(5 * 0.125) and not b.exact and b.rate == 0.5
    assert bl.grazzi_aid_error_bound(2.0, 3.0, 0.1, 0.2) == pytest.approx(0.8)


# ------------------------------------------------------------------------------------- linear solvers
@SETTINGS
@given(seed=seeds, d=st.integers(2, 6), Q=st.integers(0, 60))
def test_fixed_point_error_is_exactly_q_to_the_Q_along_the_slowest_eigenvector(seed, d, Q):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.1, 5.0, 2))
    H = with_spectrum(rng, spectrum(rng, d, mu, L))
    eta = rng.uniform(0.1, 1.0) / L
    e_min = np.linalg.eigh(H)[1][:, 0]
    r = 1.7 * e_min
    vstar = np.linalg.solve(H, r)
    v = np.zeros(d)
    for _ in range(Q):
        v = v - eta * (H @ v - r)
    bound = bl.fixed_point_error_bound(eta, mu, L, Q, np.linalg.norm(vstar))
    assert bound.exact
    assert np.linalg.norm(v - vstar) == pytest.approx(bound.value, rel=1e-8, abs=1e-13)


@SETTINGS
@given(seed=seeds, d=st.integers(2, 8))
def test_cg_bounds_hold_for_actual_cg_iterates(seed, d):
    rng = np.random.default_rng(seed)
    eigs = np.exp(rng.uniform(0.0, math.log(1e3), d))
    H = with_spectrum(rng, eigs)
    kappa = eigs.max() / eigs.min()
    r = rng.standard_normal(d)
    vstar = np.linalg.solve(H, r)
    energy = lambda z: math.sqrt(z @ H @ z)  # noqa: E731
    for Q in range(d + 1):
        vQ = cg(lambda z: H @ z, r, Q)
        eu = bl.cg_error_bound(kappa, Q, np.linalg.norm(vstar))
        en = bl.cg_error_bound(kappa, Q, energy(vstar), norm="energy")
        assert np.linalg.norm(vQ - vstar) <= eu.value * (1 + 1e-8) + 1e-10
        assert energy(vQ - vstar) <= en.value * (1 + 1e-8) + 1e-10
    # CG is exact after as many steps as H has distinct eigenvalues (here 2, in dimension d)
    H2 = with_spectrum(rng, np.where(np.arange(d) % 2 == 0, 1.0, 7.0))
    np.testing.assert_allclose(cg(lambda z: H2 @ z, r, 2), np.linalg.solve(H2, r), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(kappa=st.floats(1.0, 1e5), eps=st.floats(1e-10, 0.5))
def test_steps_to_eps_are_minimal(kappa, eps):
    Q = bl.cg_steps(kappa, eps)
    pre, r = 2 * math.sqrt(kappa), bl.cg_rate(kappa)
    assert pre * r**Q <= eps
    if Q > 0:
        assert pre * r ** (Q - 1) > eps
    L, mu = kappa, 1.0
    Qfp = bl.fixed_point_steps(1.0 / L, mu, L, eps)
    q = 1 - 1 / kappa
    assert q**Qfp <= eps and (Qfp == 0 or q ** (Qfp - 1) > eps)


def test_fp_over_cg_step_ratio_grows_like_sqrt_kappa():
    eps = 1e-8
    ratio = {k: bl.fixed_point_steps(1.0 / k, 1.0, k, eps) / bl.cg_steps(k, eps) for k in (100.0, 10_000.0)}
    growth = ratio[10_000.0] / ratio[100.0]
    assert 10 / 2 < growth < 10 * 2  # sqrt(10000/100) = 10, up to the log factors


@SETTINGS
@given(seed=seeds, Q=st.integers(0, 30))
def test_neumann_bias_formula_and_bound(seed, Q):
    rng = np.random.default_rng(seed)
    d = 4
    mu, L = sorted(rng.uniform(0.1, 4.0, 2))
    H = with_spectrum(rng, spectrum(rng, d, mu, L))
    eta = rng.uniform(0.1, 1.0) / L
    g = rng.standard_normal(d)
    P = np.eye(d) - eta * H
    Ev = eta * sum(np.linalg.matrix_power(P, q) @ g for q in range(Q + 1))
    bias = Ev - np.linalg.solve(H, g)
    np.testing.assert_allclose(bias, -np.linalg.matrix_power(P, Q + 1) @ np.linalg.solve(H, g), atol=1e-10)
    J = rng.uniform(0.5, 2.0)
    bound = bl.neumann_bias_bound(eta, mu, L, Q, np.linalg.norm(g), jac_norm=J)
    assert J * np.linalg.norm(bias) <= bound.value * (1 + 1e-10) + 1e-14
    e_min = np.linalg.eigh(H)[1][:, 0]  # equality along the slowest eigenvector
    b_min = np.linalg.matrix_power(P, Q + 1) @ np.linalg.solve(H, e_min)
    assert np.linalg.norm(b_min) == pytest.approx(bl.neumann_bias_bound(eta, mu, L, Q, 1.0).value, rel=1e-8)


def test_neumann_estimator_with_independent_noisy_hessians_has_the_predicted_mean():
    rng = np.random.default_rng(5)
    d, Q, n = 3, 4, 40_000
    H = with_spectrum(rng, [0.5, 1.0, 2.0])
    eta = 0.4
    g = rng.standard_normal(d)
    # v_Q = eta sum_{q=0}^{Q} prod_{j<q} (I - eta H_j) g with independent unbiased H_j = H + symmetric noise
    acc = np.zeros((n, d))
    prod = np.tile(g, (n, 1))
    for q in range(Q + 1):
        acc += eta * prod
        noise = rng.standard_normal((n, d, d)) * 0.3
        Hj = H + 0.5 * (noise + noise.transpose(0, 2, 1))
        prod = prod - eta * np.einsum("nij,nj->ni", Hj, prod)
    mean, se = acc.mean(0), acc.std(0) / math.sqrt(n)
    predicted = np.linalg.solve(H, g) - np.linalg.matrix_power(np.eye(d) - eta * H, Q + 1) @ np.linalg.solve(H, g)
    assert np.all(np.abs(mean - predicted) <= 5 * se)


# ------------------------------------------------------------------------------------------ complexity
def test_complexity_table_matches_theory_md_and_gives_the_kappa_slopes():
    t = bl.BILEVEL_COMPLEXITY
    assert (t["aid-bio"]["HV_g"].kappa_exp, t["aid-bio"]["HV_g"].eps_exp) == (3.5, 1)
    assert t["itd-bio"]["Gc_g"].kappa_exp == 4 and t["stocbio"]["Gc_g"].kappa_exp == 9
    assert t["stocbio"]["Gc_f"].kappa_exp == 5 and t["stocbio"]["HV_g"].kappa_exp == 6
    assert t["aid-bio-ghadimi-wang"]["Gc_g"].eps_exp == 1.25 and t["bsa"]["Gc_g"].eps_exp == 3
    assert t["aid-bio"]["iterations"].kappa_exp == 3
    ks = np.array([10.0, 100.0, 1000.0])
    counts = [bl.complexity("stocbio", "Gc_g", k, 1e-2, c=0.5) for k in ks]
    assert np.polyfit(np.log(ks), np.log(counts), 1)[0] == pytest.approx(9.0)
    assert bl.complexity("aid-bio", "Gc_f", 2.0, 0.5, 1.0) == pytest.approx(8.0 * 2.0)
    with pytest.raises(InvalidArgumentError):
        bl.complexity("ttsa", "Gc_f", 2.0, 0.1, 1.0)
    with pytest.raises(InvalidArgumentError):
        bl.complexity("nope", "Gc_f", 2.0, 0.1, 1.0)


@pytest.mark.parametrize(
    "fn, args",
    [
        (bl.lower_level_lipschitz, (1.0, 2.0, 1.0, 1.0, 1.0)),  # mu > L
        (bl.hyperobjective_smoothness, (1.0, 0.5, -1.0, 0.0, 0.0)),  # M < 0
        (bl.itd_error_bound, (2.0, 3, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0)),  # alpha > 1/L
        (bl.itd_error_bound, (0.5, -1, 1.0, 0.5, 1.0, 0.0, 0.0, 1.0)),
        (bl.itd_error_quadratic, (0.1, 2, np.diag([1.0, -1.0]), np.eye(2), [0, 0], [0, 0], [0, 0], [0, 0])),
        (bl.fixed_point_error_bound, (0.0, 1.0, 2.0, 3)),
        (bl.cg_rate, (0.5,)),
        (bl.cg_error_bound, (4.0, 2, 1.0, "max")),
        (bl.fixed_point_steps, (1.0, 1.0, 2.0, 0.1)),  # eta = 2/L: q = 1
        (bl.cg_steps, (4.0, 0.0)),
        (bl.neumann_bias_bound, (1.0, 1.0, 2.0, 2, 1.0)),  # eta > 1/L
        (bl.hyperobjective_smoothness_quadratic, (0.1, np.ones((3, 2)), np.eye(2))),
        (bl.grazzi_itd_error_bound, (1.5, 2, 1.0, 1.0)),
    ],
)
def test_invalid_inputs_raise(fn, args):
    with pytest.raises(InvalidArgumentError):
        fn(*args)
