"""Logistic-regression family: certified L, mu, rho checked on Hessians; sampling; validation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, vmap

from convtheory.problems.logistic import SIGMOID_D2_SUP, LogisticTasks
from convtheory.types import InvalidArgumentError

FAST = settings(max_examples=20, deadline=None)


def task_hessians(tasks, W, data):
    """Hessians (B, d, d) of each task's loss at W[i] (torch.func.hessian, vmapped over tasks)."""
    return vmap(hessian(tasks.loss))(W, data)


@st.composite
def family_and_tasks(draw):
    fam = LogisticTasks(d=draw(st.integers(1, 5)), S=draw(st.integers(1, 12)), D=draw(st.integers(1, 12)),
                        lam=draw(st.floats(1e-3, 1.0)), flip=draw(st.floats(0.0, 0.4)),
                        feature_scale=draw(st.floats(0.3, 3.0)))
    B = draw(st.integers(1, 6))
    return fam, fam.sample(B, draw(st.integers(0, 10**6))), draw(st.integers(0, 10**6))


def test_sigmoid_second_derivative_bound_is_its_maximum():
    """|sigma''| <= 1/(6 sqrt 3), attained: derived bound vs a dense grid of autograd third derivatives."""
    z = torch.linspace(-8, 8, 200001, dtype=torch.float64)
    d2 = vmap(grad(grad(torch.sigmoid)))(z)
    sup = float(d2.abs().max())
    assert sup <= SIGMOID_D2_SUP * (1 + 1e-12)
    assert sup >= SIGMOID_D2_SUP * (1 - 1e-8)
    assert float(vmap(grad(torch.sigmoid))(z).max()) <= 0.25 * (1 + 1e-15)


@FAST
@given(family_and_tasks(), st.floats(0.0, 5.0))
def test_hessian_spectrum_inside_mu_L(case, scale):
    fam, tasks, seed = case
    B, d = tasks.num_tasks, fam.d
    g = torch.Generator().manual_seed(seed)
    c = tasks.constants
    for data in (tasks.support, tasks.query):
        for W in (torch.zeros(B, d, dtype=torch.float64),  # sigma' = 1/4 everywhere: the largest curvature
                  scale * torch.randn(B, d, generator=g, dtype=torch.float64)):
            ev = torch.linalg.eigvalsh(task_hessians(tasks, W, data))
            assert float(ev.max()) <= c.L * (1 + 1e-12)
            assert float(ev.min()) >= c.mu * (1 - 1e-12)
    # L is the exact maximum at w = 0 for the task/set with the largest ||X||_2
    at_zero = max(float(torch.linalg.eigvalsh(task_hessians(tasks, torch.zeros(B, d, dtype=torch.float64),
                                                            data)).max()) for data in (tasks.support, tasks.query))
    assert math.isclose(at_zero, c.L, rel_tol=1e-10)
    assert c.mu == fam.lam and c.exact == frozenset({"L"})


@FAST
@given(family_and_tasks(), st.floats(1e-3, 3.0), st.floats(0.0, 3.0))
def test_hessian_lipschitz_ratio_below_rho(case, step, scale):
    fam, tasks, seed = case
    B, d = tasks.num_tasks, fam.d
    g = torch.Generator().manual_seed(seed)
    w1 = scale * torch.randn(B, d, generator=g, dtype=torch.float64)
    delta = torch.randn(B, d, generator=g, dtype=torch.float64)
    w2 = w1 + step * delta / delta.norm(dim=-1, keepdim=True)
    for data in (tasks.support, tasks.query):
        diff = task_hessians(tasks, w1, data) - task_hessians(tasks, w2, data)
        ratio = torch.linalg.matrix_norm(diff, ord=2) / (w1 - w2).norm(dim=-1)
        assert float(ratio.max()) <= tasks.constants.rho * (1 + 1e-9)


def test_rho_bound_is_attainable_in_one_dimension():
    """d = 1, one sample: H(w) = x^2 sigma'(y x w) + lam, so sup |H'| = |x|^3 / (6 sqrt 3) = rho exactly."""
    tasks = LogisticTasks(d=1, S=1, D=1, lam=0.1).sample(1, 0)
    x = float(tasks.support[0].abs().max())
    xq = float(tasks.query[0].abs().max())
    assert math.isclose(tasks.constants.rho, max(x, xq) ** 3 * SIGMOID_D2_SUP, rel_tol=1e-12)
    assert math.isclose(tasks.constants.L, max(x, xq) ** 2 / 4 + 0.1, rel_tol=1e-12)


def test_labels_follow_the_task_separator():
    fam = LogisticTasks(d=3, S=50, D=50)
    t = fam.sample(4, 0)
    X, y = t.support
    z = (X @ t.exact["w_true"].unsqueeze(-1)).squeeze(-1)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(y, torch.where(z >= 0, 1.0, -1.0).to(y.dtype))
    flipped = LogisticTasks(d=3, S=2000, D=1, flip=0.2).sample(4, 0)
    X, y = flipped.support
    z = (X @ flipped.exact["w_true"].unsqueeze(-1)).squeeze(-1)
    rate = float((y * z < 0).double().mean())  # 8000 labels, standard error about 0.0045
    assert abs(rate - 0.2) < 0.025


def test_loss_value_matches_definition():
    t = LogisticTasks(d=3, S=7, lam=0.3).sample(1, 2)
    X, y = t.support[0][0], t.support[1][0]
    w = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    ref = torch.log(1 + torch.exp(-y * (X @ w))).mean() + 0.15 * (w @ w)
    assert math.isclose(float(t.loss(w, (X, y))), float(ref), rel_tol=1e-14)


def test_sampling_deterministic_shapes_dtype():
    fam = LogisticTasks(d=4, S=6, D=9)
    t1, t2, t3 = fam.sample(3, 1), fam.sample(3, 1), fam.sample(3, 2)
    for x, y, z in zip(t1.support + t1.query, t2.support + t2.query, t3.support + t3.query):
        assert torch.equal(x, y) and not torch.equal(x, z)
    assert t1.support[0].shape == (3, 6, 4) and t1.support[1].shape == (3, 6)
    assert t1.query[0].shape == (3, 9, 4) and t1.query[1].shape == (3, 9)
    assert t1.support[0].dtype == torch.float64
    assert LogisticTasks(dtype=torch.float32).sample(2, 0).query[0].dtype == torch.float32
    assert torch.equal(fam.init_params(5), fam.init_params(5)) and fam.init_params(5).shape == (4,)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lam=0.0), "lam = 0"),
    (dict(lam=-1.0), "lam = -1"),
    (dict(d=0), "d = 0"),
    (dict(S=0), "S = 0"),
    (dict(flip=1.0), "flip = 1"),
    (dict(flip=-0.1), "flip = -0.1"),
    (dict(feature_scale=0.0), "feature_scale = 0"),
])
def test_invalid_config(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        LogisticTasks(**kwargs)
