"""convtheory.theory.guidelines: every recommendation satisfies the conditions it cites, on exact problems too."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import guidelines as gl
from convtheory.theory.bilevel import cg_error_bound, hyperobjective_smoothness, itd_error_bound, neumann_bias_bound
from convtheory.theory.esj import esj_mse
from convtheory.theory.quadratic import meta_smoothness
from convtheory.types import Constants, InvalidArgumentError

from .helpers import SETTINGS, cg, seeds, spectrum, with_spectrum

Ls = st.floats(0.1, 100.0)
kappas = st.floats(1.0, 1e3)
eps_ = st.floats(1e-8, 1e-1)


@SETTINGS
@given(seed=seeds, L=st.floats(0.2, 5.0), N=st.integers(1, 20), c=st.floats(1.0, 16.0))
def test_maml_guideline_bounds_growth_and_is_a_safe_meta_step_on_quadratic_tasks(seed, L, N, c):
    g = gl.maml_guideline(L, N, c=c)
    assert g.alpha == pytest.approx(1.0 / (c * N * L))
    assert (1 + g.alpha * L) ** (2 * N) <= math.exp(2.0 / c) * (1 + 1e-12)
    assert not g.exact and "Ji" in g.source
    # quadratic tasks with support and query Hessians in [-L, L] (nonconvex allowed): beta <= 1/L_meta
    rng = np.random.default_rng(seed)
    A = np.stack([with_spectrum(rng, rng.uniform(-L, L, 3)) for _ in range(3)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.0, L, 3)) for _ in range(3)])
    assert g.beta * meta_smoothness(g.alpha, N, A, C) <= 1.0 + 1e-12
    measured = gl.maml_guideline(L, N, c=c, L_meta=2.0)
    assert (measured.beta, measured.beta_max) == (0.5, 1.0)


@given(L=Ls, rho=st.floats(0.0, 10.0), gnorm=st.floats(0.0, 10.0))
@SETTINGS
def test_fomaml_guideline_satisfies_fallah_conditions(L, rho, gnorm):
    g = gl.fomaml_guideline(L, rho=rho, mean_grad_norm=gnorm)
    assert g.alpha <= 1.0 / (6 * L) * (1 + 1e-12)
    assert g.beta * 12 * (4 * L + 2 * rho * g.alpha * gnorm) == pytest.approx(1.0)
    assert g.N == 1 and not g.exact


@SETTINGS
@given(L=Ls, kappa=kappas, tol=st.floats(1e-6, 0.5))
def test_anil_strongly_convex_guideline_saturates_the_head(L, kappa, tol):
    mu = L / kappa
    g = gl.anil_strongly_convex_guideline(L, mu, tol=tol)
    q = 1 - g.alpha * mu
    assert g.alpha <= 1.0 / L * (1 + 1e-12)
    assert q**g.N <= tol and (g.N == 0 or q ** (g.N - 1) > tol)
    assert g.exact and g.beta is None
    assert gl.anil_strongly_convex_guideline(L, mu, tol=tol, L_meta=4.0).beta == 0.25


@SETTINGS
@given(seed=seeds, L=st.floats(0.2, 5.0), N=st.integers(1, 5))
def test_anil_nonconvex_guideline_is_a_stable_meta_step_on_nonconvex_quadratic_heads(seed, L, N):
    g = gl.anil_nonconvex_guideline(L, N=N)
    assert gl.anil_nonconvex_guideline(L).N == 1
    assert g.beta * (1 + g.alpha * L) ** (2 * N) * L == pytest.approx(1.0)
    rng = np.random.default_rng(seed)
    A = np.stack([with_spectrum(rng, rng.uniform(-L, L, 3)) for _ in range(4)])
    C = np.stack([with_spectrum(rng, rng.uniform(0.0, L, 3)) for _ in range(4)])
    assert g.beta * meta_smoothness(g.alpha, N, A, C) <= 1.0 + 1e-12


@SETTINGS
@given(seed=seeds, eps=st.floats(1e-8, 1e-1))
def test_imaml_guideline_reaches_eps_with_actual_cg_and_unrolled_gd(seed, eps):
    rng = np.random.default_rng(seed)
    d = 5
    lam = rng.uniform(0.1, 5.0)
    h_min = rng.uniform(-0.5 * lam, 1.0)
    h_max = h_min + rng.uniform(0.1, 20.0)
    g = gl.imaml_guideline(lam, h_min, h_max, eps=eps)
    H = with_spectrum(rng, spectrum(rng, d, h_min, h_max))
    M = np.eye(d) + H / lam
    r = rng.standard_normal(d)
    g_star = np.linalg.solve(M, r)
    assert np.linalg.norm(cg(lambda z: M @ z, r, g.Q) - g_star) <= eps * np.linalg.norm(g_star) * (1 + 1e-6) + 1e-12
    q = 1 - g.alpha * (lam + h_min)
    assert q**g.N <= eps and g.exact


@SETTINGS
@given(L=st.floats(0.5, 10.0), kappa=kappas, M=st.floats(0.1, 10.0), tau=st.floats(0, 2), rho=st.floats(0, 2),
       eps=eps_)
def test_bilevel_guidelines_satisfy_their_conditions(L, kappa, M, tau, rho, eps):
    mu = L / kappa
    L_phi = hyperobjective_smoothness(L, mu, M, tau, rho)
    aid = gl.aid_bio_guideline(L, mu, M, tau, rho, eps=eps)
    assert cg_error_bound(kappa, aid.Q).value <= eps * (1 + 1e-12)
    assert aid.N >= kappa - 1e-9 and aid.beta <= 1.0 / L_phi and aid.alpha <= 1.0 / L * (1 + 1e-12)
    itd = gl.itd_bio_guideline(L, mu, M, tau, rho, eps=eps, dist0=0.5)
    assert itd_error_bound(itd.alpha, itd.N, L, mu, M, tau, rho, 0.5).value <= eps
    assert itd.N == 0 or itd_error_bound(itd.alpha, itd.N - 1, L, mu, M, tau, rho, 0.5).value > eps
    sto = gl.stocbio_guideline(L, mu, M, tau, rho, eps=eps)
    assert neumann_bias_bound(sto.eta, mu, L, sto.Q, M, L).value <= eps
    assert sto.Q == 0 or neumann_bias_bound(sto.eta, mu, L, sto.Q - 1, M, L).value > eps
    assert sto.alpha == pytest.approx(2 / (L + mu)) and sto.beta <= 1.0 / L_phi


@SETTINGS
@given(L=st.floats(0.5, 10.0), kappa=st.floats(1.0, 100.0), M=st.floats(0.1, 10.0), p=st.integers(1, 100),
       eps=st.floats(1e-4, 1e-1))
def test_esj_guideline_splits_the_error_budget(L, kappa, M, p, eps):
    mu = L / kappa
    g = gl.esj_guideline(L, mu, M, p, eps=eps)
    assert itd_error_bound(g.alpha, g.N, L, mu, M, 0.0, 0.0, 0.0).value <= eps / math.sqrt(2)
    assert esj_mse(kappa * M, p, g.Q) <= eps**2 / 2 * (1 + 1e-12)


def test_esj_guideline_holds_on_the_quadratic_family():
    rng = np.random.default_rng(2)
    d, p = 3, 4
    H = with_spectrum(rng, [0.5, 1.0, 2.0])
    B = rng.standard_normal((d, p))
    B *= 2.0 / np.linalg.norm(B, 2)  # ||B|| <= L = 2
    b, ybar, x = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(p)
    ystar = np.linalg.solve(H, B @ x + b)
    y0 = ystar  # warm start at the solution: dist0 = 0
    M = np.linalg.norm(ystar - ybar)
    eps = 0.5 * M  # keeps Q (about 640 directions) small enough for a Monte-Carlo check
    g = gl.esj_guideline(2.0, 0.5, M, p, eps=eps)
    P = np.eye(d) - g.alpha * H
    J = (np.eye(d) - np.linalg.matrix_power(P, g.N)) @ np.linalg.solve(H, B)
    a = J.T @ (y0 - ybar)  # y_N = y* when y0 = y*
    n = 2000
    u = rng.standard_normal((n, g.Q, p))
    est = np.einsum("nqi,nq->ni", u, u @ a) / g.Q
    truth = B.T @ np.linalg.solve(H, ystar - ybar)
    rms = math.sqrt(np.mean(np.sum((est - truth) ** 2, axis=1)))
    assert rms <= eps


def test_recommend_reads_constants_and_dispatches():
    c = Constants(L=4.0, mu=0.5, rho=0.0, M=2.0, tau=0.0)
    assert gl.recommend("aid-bio", c, eps=1e-3) == gl.aid_bio_guideline(4.0, 0.5, 2.0, 0.0, 0.0, eps=1e-3)
    assert gl.recommend("maml", c, N=3) == gl.maml_guideline(4.0, 3)
    assert gl.recommend("imaml", c, lam=2.0).Q == gl.imaml_guideline(2.0, 0.5, 4.0).Q
    assert gl.recommend("esj", {"L": 4.0, "mu": 0.5, "M": 2.0}, p=10).method == "esj"
    assert gl.recommend("anil-nonconvex", Constants(L=2.0, mu=-1.0)).N == 1
    assert set(gl.GUIDELINES) == {"maml", "fomaml", "anil-strongly-convex", "anil-nonconvex", "imaml", "aid-bio",
                                  "itd-bio", "stocbio", "esj"}
    with pytest.raises(InvalidArgumentError):
        gl.recommend("reptile", c)
    with pytest.raises(InvalidArgumentError):
        gl.recommend("maml", c)  # N missing
    with pytest.raises(InvalidArgumentError):
        gl.recommend("aid-bio", c, bogus=1.0)
    with pytest.raises(InvalidArgumentError):
        gl.recommend("aid-bio", Constants(L=4.0, mu=0.5))  # M, tau, rho missing


@pytest.mark.parametrize(
    "fn, args, kwargs",
    [
        (gl.maml_guideline, (1.0, 0), {}),
        (gl.maml_guideline, (-1.0, 2), {}),
        (gl.fomaml_guideline, (0.0,), {}),
        (gl.anil_strongly_convex_guideline, (1.0, 2.0), {}),
        (gl.anil_strongly_convex_guideline, (2.0, 1.0), {"tol": 0.0}),
        (gl.anil_nonconvex_guideline, (1.0,), {"N": 0}),
        (gl.imaml_guideline, (1.0, -2.0, 3.0), {}),
        (gl.aid_bio_guideline, (1.0, 0.5, 1.0, 0.0, 0.0), {"eps": -1.0}),
        (gl.itd_bio_guideline, (1.0, 0.5, float("nan"), 0.0, 0.0), {}),
        (gl.stocbio_guideline, (1.0, 2.0, 1.0, 0.0, 0.0), {}),
        (gl.esj_guideline, (1.0, 0.5, 1.0, 0), {}),
        (gl.esj_guideline, (1.0, 0.5, 1.0, 3), {"directions": "sphere"}),
    ],
)
def test_invalid_inputs_raise(fn, args, kwargs):
    with pytest.raises(InvalidArgumentError):
        fn(*args, **kwargs)
