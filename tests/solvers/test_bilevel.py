"""Bilevel solvers on the quadratic bilevel family (THEORY.md §1.3, §10-11): convergence of AID-BiO, ITD-BiO,
stocBiO and ESJ, the value of warm starts, and stocBiO's estimator against the exact Neumann bias formula."""

import numpy as np
import pytest
import torch

from convtheory.hypergrad import hypergradient
from convtheory.problems.bilevel_quadratic import QuadraticBilevel, neumann_exact
from convtheory.problems.hypercleaning import HyperCleaning
from convtheory.solvers import (
    ESJ,
    AIDBiO,
    AIDBiONeumann,
    Budget,
    ITDBiO,
    StocBiO,
    aid_hypergradient,
    as_stochastic,
    deterministic_samples,
    quadratic_noise,
    run,
    stocbio_hypergradient,
)
from convtheory.types import InvalidArgumentError, OracleCount

PROB = QuadraticBilevel(p=3, q=5, mu=0.5, L=1.0, gamma=1.0).build(0)
C = PROB.constants.extra
BETA = 2.0 / (C["L_Phi"] + C["mu_Phi"])  # the best constant step on the strongly convex quadratic Phi


def _dense(prob):
    ex = prob.extra
    return ex["H"], ex["B"], ex["ybar"], ex["gamma"]


# ---------------------------------------------------------------------------------------------- convergence
@pytest.mark.parametrize("cfg", [
    AIDBiO(alpha=1.0, beta=BETA, N=5, Q=5),
    AIDBiONeumann(alpha=1.0, beta=BETA, N=5, Q=25),
    ITDBiO(alpha=1.0, beta=BETA, N=30),
    StocBiO(alpha=1.0, beta=BETA, N=5, Q=25),  # noise-free draws: deterministic Neumann AID with warm start
], ids=lambda c: c.method)
def test_bilevel_solvers_reach_tiny_exact_hypergradient(cfg):
    tr = run(cfg, PROB, Budget(iterations=60), seed=0, eval_every=10)
    assert (tr["grad_norm_kind"] == "exact").all()
    assert tr["grad_norm"].iloc[0] > 1.0 and tr["grad_norm"].iloc[-1] < 1e-6
    assert tr["train_loss"].iloc[-1] == pytest.approx(C["Phi_star"], rel=1e-9, abs=1e-12)


def test_warm_start_removes_the_inner_error_floor():
    """AID-BiO with N = 2 inner steps: warm-started y keeps converging, cold-started y plateaus (THEORY.md §14
    item 23)."""
    warm = run(AIDBiO(alpha=1.0, beta=BETA, N=2, Q=5), PROB, Budget(iterations=60), seed=0, eval_every=20)
    cold = run(AIDBiO(alpha=1.0, beta=BETA, N=2, Q=5, warm_start=False), PROB, Budget(iterations=60), seed=0,
               eval_every=20)
    assert warm["grad_norm"].iloc[-1] < 1e-6
    assert cold["grad_norm"].iloc[-1] > 1e-2
    assert abs(cold["grad_norm"].iloc[-1] - cold["grad_norm"].iloc[-2]) < 1e-3 * cold["grad_norm"].iloc[-1]


def test_esj_converges_without_second_order_oracles():
    """ESJ with gamma = 0 (so the ES noise vanishes at the optimum) converges; it uses gradients only."""
    prob = QuadraticBilevel(p=3, q=5, mu=0.5, L=1.0, gamma=0.0).build(0)
    L_phi = prob.constants.extra["L_Phi"]
    tr = run(ESJ(alpha=1.0, beta=0.5 / L_phi, N=20, Q=2), prob, Budget(iterations=150), seed=0, eval_every=50)
    assert tr["grad_norm"].iloc[-1] < 1e-3 * tr["grad_norm"].iloc[0]
    assert (tr["oracle_hvp"] == 0).all() and (tr["oracle_jvp"] == 0).all()
    assert tr["oracle_grad"].iloc[-1] == 150 * ((2 + 1) * 20 + 1)


def test_noisy_stocbio_floor_falls_with_batch_size():
    """With Gaussian sample noise the iterates settle at a noise floor that larger batches lower (THEORY.md §10)."""
    noisy = quadratic_noise(PROB, sigma_H=0.3, sigma_g=0.3, sigma_J=0.0, sigma_f=0.3)
    floors = []
    for n in (2, 128):
        cfg = StocBiO(alpha=0.5, beta=1.0 / C["L_Phi"], N=3, Q=10, S=n, D=n, D_H=n)
        tr = run(cfg, noisy, Budget(iterations=60), seed=0)
        floors.append(tr["grad_norm"].iloc[-25:].mean())
        assert (tr["cfg_D_H"] == n).all()
    assert floors[0] > 3 * floors[1]


def test_stocbio_runs_on_hypercleaning_minibatches():
    prob = HyperCleaning(n_train=60, n_val=30, n_test=30).build(0)
    src = as_stochastic(prob)
    assert src.sample_g(5, torch.Generator().manual_seed(0)) is not prob.g  # minibatch objectives
    tr = run(StocBiO(alpha=1.0, beta=10.0, N=2, Q=2, S=16, D=16, D_H=16), prob, Budget(iterations=2), seed=0)
    assert (tr["grad_norm_kind"] == "exact").all() and np.isfinite(tr["test_loss"]).all()


# -------------------------------------------------------------------------------------------- estimators
def test_aid_hypergradient_cold_equals_engine_and_counts_oracles():
    x, y0 = PROB.x0, PROB.y0
    for solver, method in (("cg", "aid-cg"), ("neumann", "aid-neumann")):
        hg, y, v, oracle = aid_hypergradient(PROB.f, PROB.g, x, y0, N=4, alpha=0.9, Q=3, linear_solver=solver)
        ref, info = hypergradient(PROB.f, PROB.g, x, y0, method=method, inner_steps=4, inner_lr=0.9,
                                  solver_steps=3)
        torch.testing.assert_close(hg, ref, rtol=1e-13, atol=1e-14)
        assert oracle == info.oracle == OracleCount(grad=5, hvp=3, jvp=1)


def test_aid_warm_started_v_at_the_solution_needs_no_cg_step():
    """v0 = H^-1 grad_y f(x, y_N): zero CG steps already give the exact AID hypergradient at y_N."""
    H, _, ybar, _ = _dense(PROB)
    x, y0 = PROB.x0, PROB.y0
    _, yN, _, _ = aid_hypergradient(PROB.f, PROB.g, x, y0, N=3, alpha=1.0, Q=0)
    v_star = torch.linalg.solve(H, yN - ybar)
    hg, _, _, oracle = aid_hypergradient(PROB.f, PROB.g, x, y0, N=3, alpha=1.0, Q=0, v0=v_star)
    ref, _, _, _ = aid_hypergradient(PROB.f, PROB.g, x, y0, N=3, alpha=1.0, Q=5)  # 5 distinct eigenvalues: exact
    torch.testing.assert_close(hg, ref, rtol=1e-10, atol=1e-12)
    assert oracle.hvp == 1  # the initial residual


def test_stocbio_estimator_mean_matches_neumann_bias_formula():
    """With independent Hessian batches the paper's estimator has mean gamma x + B^T (I - (I - eta H)^{Q+1})
    H^{-1} grad_y f (THEORY.md §1.3 stocBiO item, neumann_exact); the bias against the true hypergradient is
    detected, the mean matches the formula within 5 standard errors (Monte Carlo, 400 draws)."""
    noisy = quadratic_noise(PROB, sigma_H=0.4, sigma_g=0.0, sigma_J=0.0, sigma_f=0.0)
    gen = torch.Generator().manual_seed(0)
    x, y = PROB.x0, PROB.y0
    Q, eta = 3, 0.5
    draws = []
    for _ in range(400):
        G_hess = [noisy.sample_g(1, gen) for _ in range(Q)]
        hg, _, oracle = stocbio_hypergradient(noisy.sample_f(1, gen), noisy.sample_g(1, gen), G_hess, x, y, eta)
        draws.append(hg)
    draws = torch.stack(draws)
    mean, se = draws.mean(0), draws.std(0) / 400**0.5
    expected = neumann_exact(PROB, x, y, eta, Q)
    truth_at_y = neumann_exact(PROB, x, y, eta, 400)  # Q -> infinity: the exact implicit formula at this y
    assert float(((mean - expected).abs() / se).max()) < 5.0
    assert float((expected - truth_at_y).norm()) > 10 * float(se.norm())
    assert oracle == OracleCount(grad=1, hvp=Q, jvp=1)


def test_stocbio_code_variant_is_the_authors_sum():
    """The authors' code returns eta (I - eta H)^Q v0 + sum_{q=1}^Q (I - eta H)^q v0 (THEORY.md §10), not the
    paper's eta sum_{q=0}^Q (I - eta H)^q v0; with noise-free draws both are checked against dense algebra."""
    H, Bm, ybar, gamma = _dense(PROB)
    x, y = PROB.x0, PROB.y0
    Q, eta = 4, 0.7
    P = torch.eye(H.shape[0], dtype=H.dtype) - eta * H
    v0 = y - ybar
    code_v = eta * torch.linalg.matrix_power(P, Q) @ v0 + sum(torch.linalg.matrix_power(P, q) @ v0
                                                             for q in range(1, Q + 1))
    det = deterministic_samples(PROB)
    gen = torch.Generator().manual_seed(0)
    hess = [det.sample_g(1, gen)] * Q
    hg_code, v, _ = stocbio_hypergradient(PROB.f, PROB.g, hess, x, y, eta, variant="code")
    torch.testing.assert_close(v, code_v, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(hg_code, gamma * x + Bm.T @ code_v, rtol=1e-12, atol=1e-13)
    hg_paper, _, _ = stocbio_hypergradient(PROB.f, PROB.g, hess, x, y, eta, variant="paper")
    torch.testing.assert_close(hg_paper, neumann_exact(PROB, x, y, eta, Q), rtol=1e-12, atol=1e-13)
    assert float((hg_code - hg_paper).norm()) > 0.1


def test_quadratic_noise_validates_its_problem():
    with pytest.raises(InvalidArgumentError, match="QuadraticBilevel"):
        quadratic_noise(HyperCleaning(n_train=20, n_val=10, n_test=10).build(0))
    with pytest.raises(InvalidArgumentError, match="sigma_H"):
        quadratic_noise(PROB, sigma_H=-1.0)


def test_tensor_step_sizes_give_the_same_trace_as_floats():
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    a = run(AIDBiO(alpha=1.0, beta=BETA, N=3, Q=3), PROB, Budget(iterations=3), seed=0)
    b = run(AIDBiO(alpha=t(1.0), beta=t(BETA), N=3, Q=3), PROB, Budget(iterations=3), seed=0)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-12)
