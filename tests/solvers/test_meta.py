"""Meta-learning solvers against closed forms: MAML's linear rate from the meta-Hessian, the FO-MAML and Reptile
fixed points, iMAML's exact objective, Meta-SGD's gradient, Alpha-MAML's step-size adaptation (THEORY.md §1-12)."""

import dataclasses

import numpy as np
import pytest
import torch
from torch.func import grad

from convtheory.problems.anil import ANILTasks
from convtheory.problems.quadratic import (
    LinearRegressionTasks,
    QuadraticTasks,
    exact_inner_iterates,
    exact_meta_gradient,
    exact_meta_objective,
    meta_hessian,
    quadratic_loss,
)
from convtheory.solvers import (
    ANIL,
    FOMAML,
    HFMAML,
    IMAML,
    MAML,
    AlphaMAML,
    Budget,
    MetaObjective,
    MetaSGD,
    Reptile,
    Sampling,
    imaml_exact,
    metasgd_gradient,
    objective_value_and_grad,
    run,
)
from convtheory.types import InvalidArgumentError

from ._helpers import FixedTasks, f64, fixed_quadratic

EYE = lambda d: torch.eye(d, dtype=f64)  # noqa: E731


def P_power(tasks, alpha, N):
    A = tasks.exact["A"]
    return torch.linalg.matrix_power(EYE(A.shape[-1]) - alpha * A, N)


# ------------------------------------------------------------------------------------------------ MAML rates
@pytest.mark.parametrize("seed", [0, 1])
def test_maml_linear_rate_matches_meta_hessian(seed):
    """Deterministic meta-GD with beta = 1/L_meta on the exact quadratic meta-objective: the fitted log-linear slope
    of ||grad|| equals log max_j |1 - beta h_j| (h_j: meta-Hessian eigenvalues, THEORY.md §1.2) to 1e-3 relative.
    Shared curvature makes the slowest eigendirection dominate, so the slope is attained, not only bounded."""
    fam = fixed_quadratic(B=8, d=4, mu=0.2, L=1.0, seed=seed, shared_curvature=True)
    alpha, N = 0.3, 2
    h = torch.linalg.eigvalsh(meta_hessian(fam.tasks, alpha, N)).numpy()
    beta = 1.0 / h[-1]
    r = float(np.max(np.abs(1.0 - beta * h)))
    tr = run(MAML(alpha=alpha, beta=beta, N=N, sampling=Sampling(B=8)), fam, Budget(iterations=40), seed=0,
             eval_tasks=4)
    g, k = tr["grad_norm"].to_numpy(), tr["iteration"].to_numpy()
    window = (g < 1e-3 * g[0]) & (g > 1e-12 * g[0])
    assert window.sum() >= 8
    slope = np.polyfit(k[window], np.log(g[window]), 1)[0]
    assert abs(slope / np.log(r) - 1.0) < 1e-3
    assert (tr["grad_norm_kind"] == "exact").all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maml_contraction_bound_holds_for_general_tasks(seed):
    """For any task batch ||grad_k|| <= r^k ||grad_0||, r = ||I - beta H_N|| (THEORY.md §1.2, exact bound)."""
    fam = fixed_quadratic(B=6, d=4, mu=0.2, L=1.0, seed=seed, query="independent", query_shift=0.5)
    alpha, N = 0.4, 3
    h = torch.linalg.eigvalsh(meta_hessian(fam.tasks, alpha, N)).numpy()
    beta = 1.5 / h[-1]
    r = float(np.max(np.abs(1.0 - beta * h)))
    tr = run(MAML(alpha=alpha, beta=beta, N=N, sampling=Sampling(B=6)), fam, Budget(iterations=25), seed=0,
             eval_tasks=4)
    g, k = tr["grad_norm"].to_numpy(), tr["iteration"].to_numpy()
    assert np.all(g <= r**k * g[0] * (1 + 1e-9) + 1e-15)
    # the engine's meta-gradient is the exact one: the recorded hypergradient error is rounding only
    assert tr["hypergrad_error"].dropna().max() < 1e-12 * g[0]


def test_hfmaml_follows_maml_on_quadratics():
    """Central differences are exact on quadratics (THEORY.md §14 item 12): the HF-MAML trajectory equals MAML's."""
    fam = fixed_quadratic(B=4, d=3, seed=3)
    cfg = dict(alpha=0.3, beta=1.0, N=2, sampling=Sampling(B=4))
    a = run(MAML(**cfg), fam, Budget(iterations=15), seed=0, eval_tasks=4)
    b = run(HFMAML(delta=1e-3, **cfg), fam, Budget(iterations=15), seed=0, eval_tasks=4)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-7, atol=1e-14)
    assert (b["oracle_hvp"] == 0).all() and b["oracle_grad"].iloc[-1] == 15 * (4 * 3 + 2 * 4 * 2)


# ---------------------------------------------------------------------------------------- fixed points
def test_fomaml_converges_to_its_fixed_point_not_maml_stationary():
    """FO-MAML converges to theta*_FO = (E[C P^N])^-1 E[C (P^N a - a + b)] (THEORY.md §14 item 9), where the
    exact MAML gradient has the predicted nonzero norm."""
    fam = fixed_quadratic(B=6, d=4, seed=5, query_shift=0.5)
    alpha, N = 0.3, 2
    t = fam.tasks
    A, C, a, b = (t.exact[k] for k in ("A", "C", "a", "b"))
    PN = P_power(t, alpha, N)
    M = (C @ PN).mean(0)
    rhs = (C @ ((PN @ a.unsqueeze(-1)).squeeze(-1) - a + b).unsqueeze(-1)).squeeze(-1).mean(0)
    theta_fo = torch.linalg.solve(M, rhs)
    beta = 1.0 / float(torch.linalg.eigvalsh(0.5 * (M + M.T))[-1])
    tr = run(FOMAML(alpha=alpha, beta=beta, N=N, sampling=Sampling(B=6)), fam, Budget(iterations=120), seed=0,
             eval_tasks=4)
    expected = float(exact_meta_gradient(theta_fo, t, alpha, N).norm())
    assert expected > 1e-3  # a real floor: FO-MAML does not solve the MAML problem
    assert tr["grad_norm"].iloc[-1] == pytest.approx(expected, rel=1e-8)
    assert tr["train_loss"].iloc[-1] == pytest.approx(float(exact_meta_objective(theta_fo, t, alpha, N)), rel=1e-10)
    assert tr["direction_norm"].iloc[-2] < 1e-9


def test_reptile_converges_to_its_fixed_point():
    """Reptile converges to (E[I - P^N])^-1 E[(I - P^N) a] (THEORY.md §14 item 10); the trace measures the MAML
    gradient there."""
    fam = fixed_quadratic(B=6, d=4, seed=6)
    alpha, N = 0.3, 3
    t = fam.tasks
    K = EYE(4) - P_power(t, alpha, N)
    theta_rep = torch.linalg.solve(K.mean(0), (K @ t.exact["a"].unsqueeze(-1)).squeeze(-1).mean(0))
    tr = run(Reptile(alpha=alpha, beta=1.0, N=N, sampling=Sampling(B=6)), fam, Budget(iterations=150), seed=0,
             eval_tasks=4)
    expected = float(exact_meta_gradient(theta_rep, t, alpha, N).norm())
    assert tr["grad_norm"].iloc[-1] == pytest.approx(expected, rel=1e-8)
    assert tr["direction_norm"].iloc[-2] < 1e-9
    assert tr["oracle_grad"].iloc[-1] == 150 * 6 * N and tr["oracle_hvp"].iloc[-1] == 0


# ---------------------------------------------------------------------------------------------- iMAML
def test_imaml_exact_matches_autograd_and_engine():
    """imaml_exact's gradient equals autograd of its value and the engine with an exactly solved inner problem."""
    t = QuadraticTasks(d=4, mu=0.2, L=1.0, query="independent").sample(5, 0)
    theta = torch.randn(4, generator=torch.Generator().manual_seed(1), dtype=f64)
    lam = 0.7
    value, g = imaml_exact(theta, t, lam)
    g_auto = grad(lambda th: imaml_exact(th, t, lam)[0])(theta)
    torch.testing.assert_close(g, g_auto, rtol=1e-12, atol=1e-14)
    obj = MetaObjective("imaml", 1.0 / (1.0 + lam), 200, lam=lam, cg_steps=4)
    t_engine = type(t)(t.support, t.query, t.loss, t.constants)  # no exact entries: forces the engine path
    v2, g2, exact = objective_value_and_grad(obj, theta, t_engine)
    assert not exact
    torch.testing.assert_close(g2, g, rtol=1e-9, atol=1e-12)
    assert v2 == pytest.approx(float(value), rel=1e-10)


def test_imaml_solver_converges():
    """iMAML with enough inner steps and Q = d CG steps drives the exact iMAML gradient below 1e-6."""
    fam = fixed_quadratic(B=6, d=4, seed=7)
    tr = run(IMAML(alpha=0.5, beta=1.0, N=25, lam=1.0, Q=4, sampling=Sampling(B=6)), fam,
             Budget(iterations=60), seed=0, eval_every=10, eval_tasks=4)
    assert tr["grad_norm"].iloc[-1] < 1e-6 * max(1.0, tr["grad_norm"].iloc[0])
    assert tr["oracle_hvp"].iloc[-1] == 60 * 6 * 4


# ------------------------------------------------------------------------------------------- Meta-SGD
def test_metasgd_gradient_matches_closed_form_iterates():
    """Meta-SGD's gradient in (theta, alpha) equals autograd through the closed-form inner iterates
    w <- w - alpha * (A w - c) (independent path), and with a constant alpha its theta part is the MAML gradient."""
    t = QuadraticTasks(d=3, mu=0.3, L=1.0, query="independent", query_shift=0.3).sample(4, 2)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(3, generator=gen, dtype=f64)
    alpha = 0.1 + 0.5 * torch.rand(3, generator=gen, dtype=f64)
    N = 3
    A, c, C, e, e0 = (t.exact[k] for k in ("A", "c", "C", "e", "e0"))

    def closed(th, al):
        w = exact_inner_iterates(th, A, c, al, N)[-1]
        return (0.5 * (w * (C @ w.unsqueeze(-1)).squeeze(-1)).sum(-1) - (e * w).sum(-1) + e0).mean()

    (g_th, g_al), value, _ = metasgd_gradient(quadratic_loss, quadratic_loss, theta, alpha, t.support, t.query, N)
    ref_th, ref_al = grad(closed, argnums=(0, 1))(theta, alpha)
    torch.testing.assert_close(g_th, ref_th, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(g_al, ref_al, rtol=1e-11, atol=1e-13)
    assert float(value) == pytest.approx(float(closed(theta, alpha)), rel=1e-12)
    (g_th, _), _, _ = metasgd_gradient(quadratic_loss, quadratic_loss, theta, torch.full((3,), 0.25, dtype=f64),
                                       t.support, t.query, N)
    torch.testing.assert_close(g_th, exact_meta_gradient(theta, t, 0.25, N), rtol=1e-11, atol=1e-13)


def test_metasgd_solver_converges():
    fam = fixed_quadratic(B=8, d=4, seed=8)
    tr = run(MetaSGD(alpha=0.3, beta=0.5, N=2, sampling=Sampling(B=8)), fam, Budget(iterations=150), seed=0,
             eval_every=30, eval_tasks=4)
    assert tr["grad_norm"].iloc[-1] < 1e-2 * tr["grad_norm"].iloc[0]
    assert tr["alpha"].iloc[-1] != pytest.approx(0.3)  # the per-parameter steps are learned


# ----------------------------------------------------------------------------------------- Alpha-MAML
ISOTROPIC = QuadraticTasks(d=3, mu=1.0, L=1.0)  # A_i = C_i = I: alpha* = 1/L, meta-Hessian h I with h = (1-alpha)^2


@pytest.mark.parametrize("alpha0", [0.1, 1.8])
def test_alpha_maml_moves_alpha_toward_optimal_inner_step(alpha0):
    """On isotropic tasks the post-adaptation loss is minimised at alpha* = 1/L = 1 (THEORY.md §14 item 27): the HD
    rule raises a too-small alpha and lowers a too-large one, monotonically, without crossing alpha*."""
    tr = run(AlphaMAML(alpha=alpha0, beta=0.05, N=1, eta_alpha=0.05, eta_beta=0.0, sampling=Sampling(B=8)),
             ISOTROPIC, Budget(iterations=15), seed=0, eval_tasks=4)
    a = tr["alpha"].to_numpy()
    step = np.diff(a)
    if alpha0 < 1.0:
        assert np.all(step > 0) and np.all(a < 1.0) and a[-1] > 0.9
    else:
        assert np.all(step < 0) and np.all(a > 1.0) and a[-1] < 1.1
    assert (tr["beta"] == 0.05).all()


@pytest.mark.parametrize("beta0", [0.2, 3.5])
def test_alpha_maml_moves_beta_toward_line_search_step(beta0):
    """With alpha fixed, G_t = (1 - beta h) G_{t-1} on isotropic tasks, so the HD rule raises beta below 1/h and
    lowers it above (h = (1 - alpha)^2, 1/h = 2.04 for alpha = 0.3; THEORY.md §12, §14 item 26)."""
    tr = run(AlphaMAML(alpha=0.3, beta=beta0, N=1, eta_alpha=0.0, eta_beta=0.5, sampling=Sampling(B=8)),
             ISOTROPIC, Budget(iterations=12), seed=0, eval_tasks=4)
    b = tr["beta"].to_numpy()
    inv_h = 1.0 / 0.7**2
    assert b[1] == beta0  # G_{-1} = 0: no change on the first step
    if beta0 < inv_h:
        assert np.all(np.diff(b[1:]) > 0) and np.all(b < inv_h) and b[-1] > beta0 + 0.03
    else:
        assert np.all(np.diff(b[1:]) < 0) and np.all(b > inv_h) and b[-1] < beta0 - 0.01
    assert (tr["alpha"] == 0.3).all()
    assert tr["oracle_grad"].iloc[1] == 8 * 2  # exactly MAML's B(N + 1): the alpha rule adds no oracle call


# ----------------------------------------------------------------------------------------------- ANIL
def test_anil_converges_on_ridge_heads():
    fam = ANILTasks(d=4, width=3, S=10, D=10)
    tr = run(ANIL(alpha=0.3, beta=0.3, N=3, sampling=Sampling(B=8)), fam, Budget(iterations=150), seed=0,
             eval_every=50, eval_tasks=16)
    assert (tr["grad_norm_kind"] == "exact").all()
    assert tr["grad_norm"].iloc[-1] < 0.2 * tr["grad_norm"].iloc[0]
    assert tr["hypergrad_error"].iloc[0] < 1e-12  # the step used the exact ANIL gradient of the pool


def test_anil_needs_head_names():
    anil = ANILTasks(d=3, width=2)
    tasks = dataclasses.replace(anil.sample(2, 0), exact={})  # no "inner_params" entry
    fam = FixedTasks(tasks, anil.init_params(0))
    with pytest.raises(InvalidArgumentError, match="inner_params"):
        run(ANIL(sampling=Sampling(B=2)), fam, Budget(iterations=1), seed=0, eval_tasks=2)


# --------------------------------------------------------------------------------------- sampling modes
def test_resample_mode_reports_estimates():
    """Resampling: fresh tasks and samples every step; the gradient norm is an estimate on fresh tasks, so no
    hypergradient error is reported; S and D replace the family's sample sizes."""
    fam = LinearRegressionTasks(d=3, S=10, D=10)
    cfg = MAML(alpha=0.2, beta=0.3, N=1, sampling=Sampling(mode="resample", B=4, S=5, D=7))
    tr = run(cfg, fam, Budget(iterations=4), seed=0, eval_tasks=64)
    assert (tr["grad_norm_kind"] == "estimate").all()
    assert tr["hypergrad_error"].isna().all() and tr["direction_norm"].iloc[:-1].notna().all()
    assert (tr["cfg_S"] == 5).all() and (tr["cfg_D"] == 7).all() and (tr["cfg_mode"] == "resample").all()


def test_finite_sum_minibatches_are_exact_objective_with_noisy_steps():
    """Finite-sum with B < M: the objective (the pool) is exact, the step's direction is a minibatch estimate."""
    fam = QuadraticTasks(d=3)
    tr = run(MAML(alpha=0.2, beta=0.5, N=1, sampling=Sampling(B=2, num_tasks=10)), fam, Budget(iterations=5),
             seed=0, eval_tasks=8)
    assert (tr["grad_norm_kind"] == "exact").all()
    assert tr["hypergrad_error"].iloc[:-1].min() > 1e-6
    assert tr["oracle_grad"].iloc[-1] == 5 * 2 * 2


def test_sampling_validation():
    with pytest.raises(InvalidArgumentError, match="num_tasks"):
        Sampling(B=4, num_tasks=2)
    with pytest.raises(InvalidArgumentError, match="mode"):
        Sampling(mode="online")
    with pytest.raises(InvalidArgumentError, match="resample"):
        Sampling(mode="resample", num_tasks=20)
    with pytest.raises(InvalidArgumentError, match="no such sample-size field"):
        run(MAML(sampling=Sampling(B=2, S=3)), QuadraticTasks(d=2), Budget(iterations=1), seed=0)
    with pytest.raises(InvalidArgumentError, match="alpha"):
        MAML(alpha=-0.1)
    with pytest.raises(InvalidArgumentError, match="compile"):
        MAML(compile="sometimes")


def test_tensor_step_sizes_give_the_same_trace_as_floats():
    fam = fixed_quadratic(B=3, d=3, seed=9)
    t = lambda v: torch.tensor(v, dtype=f64)  # noqa: E731
    a = run(MAML(alpha=0.3, beta=0.8, N=2, sampling=Sampling(B=3)), fam, Budget(iterations=4), seed=0, eval_tasks=3)
    b = run(MAML(alpha=t(0.3), beta=t(0.8), N=2, sampling=Sampling(B=3)), fam, Budget(iterations=4), seed=0,
            eval_tasks=3)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-13)
    assert b["cfg_alpha"].iloc[0] == pytest.approx(0.3) and b["alpha"].iloc[0] == pytest.approx(0.3)
