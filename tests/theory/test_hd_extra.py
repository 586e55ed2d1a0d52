"""convtheory.theory.hd: SGD-HD's relaxation rate (exact) and its freeze point below the line-search range."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import hd
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS, seeds, spectrum, with_spectrum


@SETTINGS
@given(seed=seeds, d=st.integers(1, 6), alpha=st.floats(0.0, 3.0), beta=st.floats(0.0, 2.0))
def test_one_hd_step_relaxes_alpha_toward_the_line_search_step_at_the_stated_rate(seed, d, alpha, beta):
    rng = np.random.default_rng(seed)
    mu, L = sorted(rng.uniform(0.05, 5.0, 2))
    H = with_spectrum(rng, spectrum(rng, d, mu, L))
    g_prev = rng.standard_normal(d)
    g_t = g_prev - alpha * H @ g_prev  # gradient after the step theta - alpha g_prev on the quadratic
    alpha_next = alpha + beta * float(g_t @ g_prev)  # SGD-HD (Baydin et al. 2018)
    ls = hd.hd_line_search_step(g_prev, H)
    r = hd.hd_relaxation_rate(g_prev, H, beta)
    assert r == pytest.approx(beta * g_prev @ H @ g_prev, rel=1e-12)
    assert alpha_next - ls == pytest.approx((1 - r) * (alpha - ls), rel=1e-9, abs=1e-9 * (abs(alpha) + ls))


def _hd_numpy(lam, e0, alpha0, beta, T):
    """Independent SGD-HD on the diagonal quadratic 1/2 sum lam_j e_j^2 (e = theta - theta*)."""
    e, g_prev, a = e0.copy(), np.zeros_like(e0), alpha0
    for _ in range(T):
        g = lam * e
        a += beta * float(g @ g_prev)
        e, g_prev = e - a * g, g
    return a, float(np.linalg.norm(lam * e))


@pytest.mark.parametrize("alpha0,target", [(0.0, 0.1), (0.05, 0.15), (0.1, 0.3)])
def test_freeze_step_predicts_where_small_beta_hd_stops(alpha0, target):
    lam = np.linspace(0.1, 1.0, 8)  # mu = 0.1, L = 1
    e0 = np.random.default_rng(0).standard_normal(8)
    f_gap = 0.5 * float(lam @ e0**2)
    beta = (target**2 - alpha0**2) / (2 * f_gap)  # so that hd_freeze_step = target (well below 1/L)
    assert hd.hd_freeze_step(alpha0, beta, f_gap) == pytest.approx(target, rel=1e-12)
    a_T, g_T = _hd_numpy(lam, e0, alpha0, beta, 6000)
    assert g_T < 1e-8  # gradients vanished: alpha is frozen
    assert a_T == pytest.approx(target, rel=0.05)  # continuous-time approximation, measured within ~3%
    assert a_T < 1.0  # below the line-search range [1/L, 1/mu]: THEORY.md's "drifts into the range" fails here


def test_freeze_step_closed_form_and_errors():
    assert hd.hd_freeze_step(0.3, 0.5, 0.07) == pytest.approx(0.4, rel=1e-12)
    assert hd.hd_freeze_step(0.2, 0.0, 5.0) == 0.2  # no hyper-step: alpha stays
    assert math.isclose(hd.hd_freeze_step(0.0, 2.0, 1.0), 2.0)
    with pytest.raises(InvalidArgumentError, match="beta_hyp"):
        hd.hd_freeze_step(0.1, -1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="f_gap"):
        hd.hd_freeze_step(0.1, 1.0, -1.0)
    with pytest.raises(InvalidArgumentError, match="H"):
        hd.hd_relaxation_rate([1.0, 2.0], np.eye(3), 0.1)
