"""Robust-regression family: exact derivative extremes of phi, certified L / mu / rho, real nonconvexity."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, vmap

from convtheory.problems.nonconvex import ROBUST_LOSSES, RobustRegressionTasks, robust_loss
from convtheory.types import InvalidArgumentError

FAST = settings(max_examples=20, deadline=None)


@pytest.mark.parametrize("name", sorted(ROBUST_LOSSES))
def test_phi_derivative_extremes_match_dense_grid(name):
    """Closed-form sup phi'', inf phi'', sup |phi'''| vs autograd on a dense grid (bounds hold, and are attained)."""
    rl = ROBUST_LOSSES[name]
    r = torch.linspace(-20, 20, 200001, dtype=torch.float64)
    d2 = vmap(grad(grad(rl.phi)))(r)
    d3 = vmap(grad(grad(grad(rl.phi))))(r)
    assert float(d2.max()) <= rl.d2_sup * (1 + 1e-12) and float(d2.max()) >= rl.d2_sup * (1 - 1e-8)
    assert float(d2.min()) >= rl.d2_inf * (1 + 1e-12) and float(d2.min()) <= rl.d2_inf * (1 - 1e-8)
    assert float(d3.abs().max()) <= rl.d3_sup * (1 + 1e-12)
    assert float(d3.abs().max()) >= rl.d3_sup * (1 - 1e-7)
    assert rl.d2_abs_sup == max(rl.d2_sup, -rl.d2_inf)


def test_phi_closed_forms():
    assert ROBUST_LOSSES["geman_mcclure"].d2_sup == 2.0 and ROBUST_LOSSES["geman_mcclure"].d2_inf == -0.5
    assert ROBUST_LOSSES["cauchy"].d2_sup == 1.0 and ROBUST_LOSSES["cauchy"].d2_inf == -0.125
    r = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    assert torch.allclose(ROBUST_LOSSES["geman_mcclure"].phi(r), torch.tensor([0.0, 0.5, 0.8], dtype=torch.float64))
    assert torch.allclose(ROBUST_LOSSES["cauchy"].phi(r), torch.log(torch.tensor([1.0, 1.5, 3.0], dtype=torch.float64)))
    with pytest.raises(InvalidArgumentError, match="phi = 'huber'"):
        robust_loss("huber")


@st.composite
def family_and_tasks(draw):
    fam = RobustRegressionTasks(d=draw(st.integers(1, 5)), S=draw(st.integers(1, 12)), D=draw(st.integers(1, 12)),
                                phi=draw(st.sampled_from(sorted(ROBUST_LOSSES))), lam=draw(st.floats(0.0, 0.5)),
                                outlier_frac=draw(st.floats(0.0, 0.5)), feature_scale=draw(st.floats(0.3, 3.0)))
    return fam, fam.sample(draw(st.integers(1, 6)), draw(st.integers(0, 10**6))), draw(st.integers(0, 10**6))


def hessians(tasks, W, data):
    return vmap(hessian(tasks.loss))(W, data)


@FAST
@given(family_and_tasks(), st.floats(0.0, 5.0))
def test_hessian_spectrum_inside_mu_L(case, scale):
    fam, tasks, seed = case
    g = torch.Generator().manual_seed(seed)
    c = tasks.constants
    G = max(float(torch.linalg.eigvalsh(X.transpose(-1, -2) @ X / X.shape[-2]).max())
            for X in (tasks.support[0], tasks.query[0]))  # max_i ||X_i^T X_i / n||, by eigvalsh
    assert math.isclose(c.L, fam.robust.d2_abs_sup * G + fam.lam, rel_tol=1e-10)
    assert math.isclose(c.mu, fam.robust.d2_inf * G + fam.lam, rel_tol=1e-10, abs_tol=1e-12)
    for data in (tasks.support, tasks.query):
        for _ in range(3):
            W = scale * torch.randn(tasks.num_tasks, fam.d, generator=g, dtype=torch.float64)
            H = hessians(tasks, W, data)
            assert float(torch.linalg.matrix_norm(H, ord=2).max()) <= c.L * (1 + 1e-12)
            assert float(torch.linalg.eigvalsh(H).min()) >= c.mu - 1e-12 * c.L


@FAST
@given(family_and_tasks(), st.floats(1e-3, 3.0), st.floats(0.0, 3.0))
def test_hessian_lipschitz_ratio_below_rho(case, step, scale):
    fam, tasks, seed = case
    g = torch.Generator().manual_seed(seed)
    B = tasks.num_tasks
    w1 = tasks.exact["w_true"] + scale * torch.randn(B, fam.d, generator=g, dtype=torch.float64)
    delta = torch.randn(B, fam.d, generator=g, dtype=torch.float64)
    w2 = w1 + step * delta / delta.norm(dim=-1, keepdim=True)
    for data in (tasks.support, tasks.query):
        diff = hessians(tasks, w1, data) - hessians(tasks, w2, data)
        ratio = torch.linalg.matrix_norm(diff, ord=2) / (w1 - w2).norm(dim=-1)
        assert float(ratio.max()) <= tasks.constants.rho * (1 + 1e-9)


def test_one_sample_bounds_are_tight():
    """d = n = 1: H(w) = x^2 phi''(x w - y), so sup H = sup phi'' x^2 and inf H = inf phi'' x^2 exactly."""
    fam = RobustRegressionTasks(d=1, S=1, D=1, outlier_frac=0.0)
    tasks = fam.sample(1, 4)
    x = max(float(tasks.support[0].abs().max()), float(tasks.query[0].abs().max()))
    assert math.isclose(tasks.constants.L, 2.0 * x * x, rel_tol=1e-12)
    assert math.isclose(tasks.constants.mu, -0.5 * x * x, rel_tol=1e-12)
    assert math.isclose(tasks.constants.rho, fam.robust.d3_sup * x ** 3, rel_tol=1e-12)


@pytest.mark.parametrize("phi", sorted(ROBUST_LOSSES))
def test_family_is_really_nonconvex(phi):
    """Some sampled point has a negative Hessian eigenvalue (and never below the certified mu)."""
    fam = RobustRegressionTasks(d=4, S=15, D=15, phi=phi)
    tasks = fam.sample(4, 0)
    g = torch.Generator().manual_seed(1)
    W = tasks.exact["w_true"] + 3.0 * torch.randn(4, 4, generator=g, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(hessians(tasks, W, tasks.support))
    assert float(ev.min()) < 0
    assert float(ev.min()) >= tasks.constants.mu


def test_outliers_and_clean_labels():
    fam = RobustRegressionTasks(d=3, S=2000, D=1, noise=0.0, outlier_frac=0.25, outlier_scale=10.0)
    t = fam.sample(2, 0)
    X, y = t.support
    clean = (y - (X @ t.exact["w_true"].unsqueeze(-1)).squeeze(-1)).abs() < 1e-12
    assert abs(float(1 - clean.double().mean()) - 0.25) < 0.03  # 4000 labels, standard error about 0.007


def test_sampling_deterministic_shapes_dtype():
    fam = RobustRegressionTasks(d=4, S=6, D=9)
    t1, t2, t3 = fam.sample(3, 1), fam.sample(3, 1), fam.sample(3, 2)
    for x, y, z in zip(t1.support + t1.query, t2.support + t2.query, t3.support + t3.query):
        assert torch.equal(x, y) and not torch.equal(x, z)
    assert t1.support[0].shape == (3, 6, 4) and t1.query[1].shape == (3, 9)
    assert t1.constants == t2.constants and t1.loss == t2.loss
    assert RobustRegressionTasks(dtype=torch.float32).sample(2, 0).support[1].dtype == torch.float32
    assert torch.equal(fam.init_params(5), fam.init_params(5)) and fam.init_params(5).shape == (4,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=0), "d = 0"),
    (dict(S=0), "S = 0"),
    (dict(noise=-0.1), "noise = -0.1"),
    (dict(lam=-1.0), "lam = -1"),
    (dict(outlier_frac=1.5), "outlier_frac = 1.5"),
    (dict(phi="l1"), "phi = 'l1'"),
    (dict(dtype=torch.float16), "dtype"),
])
def test_invalid_config(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        RobustRegressionTasks(**kwargs)
