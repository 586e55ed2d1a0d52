"""ANIL family: head constants certified for every embedding, ridge vs nonconvex head geometry, sampling."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, vmap

from convtheory.problems.anil import ANILTasks
from convtheory.problems.nonconvex import ROBUST_LOSSES
from convtheory.types import InvalidArgumentError

FAST = settings(max_examples=20, deadline=None)


def head_hessians(tasks, phi, U, data):
    """Hessians in the head u (B, k, k) at a shared embedding phi and per-task heads U (B, k)."""

    def one(u, d):
        return hessian(lambda v: tasks.loss({"phi": phi, "u": v}, d))(u)

    return vmap(one)(U, data)


@st.composite
def family_and_tasks(draw):
    head = draw(st.sampled_from(["ridge", "nonconvex"]))
    fam = ANILTasks(d=draw(st.integers(1, 5)), width=draw(st.integers(1, 5)), S=draw(st.integers(1, 10)),
                    D=draw(st.integers(1, 10)), head=head, robust=draw(st.sampled_from(sorted(ROBUST_LOSSES))),
                    lam=draw(st.floats(0.01, 1.0)), outlier_frac=draw(st.floats(0.0, 0.3)))
    return fam, fam.sample(draw(st.integers(1, 5)), draw(st.integers(0, 10**6))), draw(st.integers(0, 10**6))


@FAST
@given(family_and_tasks(), st.floats(0.0, 10.0), st.floats(0.0, 5.0))
def test_head_hessian_spectrum_inside_mu_L_for_any_embedding(case, phi_scale, u_scale):
    fam, tasks, seed = case
    g = torch.Generator().manual_seed(seed)
    c = tasks.constants
    for data in (tasks.support, tasks.query):
        phi = phi_scale * torch.randn(fam.d, fam.width, generator=g, dtype=torch.float64)
        U = u_scale * torch.randn(tasks.num_tasks, fam.width, generator=g, dtype=torch.float64)
        ev = torch.linalg.eigvalsh(head_hessians(tasks, phi, U, data))
        assert float(ev.max()) <= c.L * (1 + 1e-12)
        assert float(ev.min()) >= c.mu - 1e-12 * c.L
        if fam.head == "ridge":
            assert float(ev.min()) >= fam.lam * (1 - 1e-12)


@FAST
@given(family_and_tasks(), st.floats(1e-3, 3.0), st.floats(0.0, 5.0))
def test_head_hessian_lipschitz_ratio_below_rho(case, step, phi_scale):
    fam, tasks, seed = case
    g = torch.Generator().manual_seed(seed)
    B, k = tasks.num_tasks, fam.width
    phi = phi_scale * torch.randn(fam.d, k, generator=g, dtype=torch.float64)
    u1 = tasks.exact["u_true"] + torch.randn(B, k, generator=g, dtype=torch.float64)
    delta = torch.randn(B, k, generator=g, dtype=torch.float64)
    u2 = u1 + step * delta / delta.norm(dim=-1, keepdim=True)
    for data in (tasks.support, tasks.query):
        diff = head_hessians(tasks, phi, u1, data) - head_hessians(tasks, phi, u2, data)
        ratio = torch.linalg.matrix_norm(diff, ord=2) / (u1 - u2).norm(dim=-1)
        if fam.head == "ridge":
            assert tasks.constants.rho == 0.0 and "rho" in tasks.constants.exact
            assert float(ratio.max()) <= 1e-12 * tasks.constants.L
        else:
            assert float(ratio.max()) <= tasks.constants.rho * (1 + 1e-9)


def test_ridge_bounds_are_attained_by_saturated_features():
    """tanh saturates to +-1: with one sample, h h^T has eigenvalue ||h||^2 -> width, so L = width + lam is tight."""
    fam = ANILTasks(d=1, width=3, S=1, D=1, lam=0.2)
    tasks = fam.sample(1, 0)
    phi = 1e3 * torch.ones(1, 3, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(head_hessians(tasks, phi, torch.zeros(1, 3, dtype=torch.float64), tasks.support))
    assert math.isclose(float(ev.max()), tasks.constants.L, rel_tol=1e-12)
    assert math.isclose(float(ev.min()), 0.2, rel_tol=1e-12)


@pytest.mark.parametrize("robust", sorted(ROBUST_LOSSES))
def test_nonconvex_head_has_negative_curvature_and_ridge_does_not(robust):
    fam = ANILTasks(d=4, width=3, S=8, D=8, head="nonconvex", robust=robust, lam=0.01)
    tasks = fam.sample(4, 0)
    g = torch.Generator().manual_seed(2)
    phi = torch.randn(4, 3, generator=g, dtype=torch.float64)
    U = 4.0 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(head_hessians(tasks, phi, U, tasks.support))
    assert float(ev.min()) < 0 and float(ev.min()) >= tasks.constants.mu
    assert tasks.constants.mu < 0
    ridge = ANILTasks(d=4, width=3, S=8, D=8, head="ridge", lam=0.01).sample(4, 0)
    assert float(torch.linalg.eigvalsh(head_hessians(ridge, phi, U, ridge.support)).min()) >= 0.01 * (1 - 1e-12)


def test_constants_closed_forms():
    k, lam = 4.0, 0.1
    c = ANILTasks(width=4, lam=lam).sample(2, 0).constants
    assert (c.L, c.mu, c.rho) == (k + lam, lam, 0.0)
    rl = ROBUST_LOSSES["cauchy"]
    c = ANILTasks(width=4, lam=lam, head="nonconvex", robust="cauchy").sample(2, 0).constants
    assert math.isclose(c.L, rl.d2_abs_sup * k + lam) and math.isclose(c.mu, rl.d2_inf * k + lam)
    assert math.isclose(c.rho, rl.d3_sup * k ** 1.5)


def test_loss_is_smooth_in_the_embedding():
    """tanh features: the embedding gradient agrees with central finite differences (step 1e-6)."""
    fam = ANILTasks(d=3, width=2, S=5, head="nonconvex")
    tasks = fam.sample(1, 0)
    data = (tasks.support[0][0], tasks.support[1][0])
    params = fam.init_params(1)
    g = grad(lambda p: tasks.loss({"phi": p, "u": params["u"]}, data))(params["phi"])
    E = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-6
    fd = (tasks.loss({"phi": params["phi"] + h * E, "u": params["u"]}, data)
          - tasks.loss({"phi": params["phi"] - h * E, "u": params["u"]}, data)) / (2 * h)
    assert math.isclose(float(fd), float((g * E).sum()), rel_tol=1e-7, abs_tol=1e-9)


def test_loss_value_matches_definition():
    fam = ANILTasks(d=3, width=2, S=5, lam=0.3)
    t = fam.sample(1, 0)
    X, y = t.support[0][0], t.support[1][0]
    p = fam.init_params(0)
    r = torch.tanh(X @ p["phi"]) @ p["u"] - y
    assert math.isclose(float(t.loss(p, (X, y))), float(0.5 * (r ** 2).mean() + 0.15 * (p["u"] ** 2).sum()),
                        rel_tol=1e-14)
    nc = ANILTasks(d=3, width=2, S=5, lam=0.3, head="nonconvex")
    t = nc.sample(1, 0)
    X, y = t.support[0][0], t.support[1][0]
    r = torch.tanh(X @ p["phi"]) @ p["u"] - y
    ref = (r ** 2 / (1 + r ** 2)).mean() + 0.15 * (p["u"] ** 2).sum()
    assert math.isclose(float(t.loss(p, (X, y))), float(ref), rel_tol=1e-14)


def test_sampling_deterministic_shapes_and_exact():
    fam = ANILTasks(d=4, width=3, S=6, D=9)
    t1, t2, t3 = fam.sample(3, 1), fam.sample(3, 1), fam.sample(3, 2)
    for x, y, z in zip(t1.support + t1.query, t2.support + t2.query, t3.support + t3.query):
        assert torch.equal(x, y) and not torch.equal(x, z)
    assert t1.support[0].shape == (3, 6, 4) and t1.support[1].shape == (3, 6)
    assert t1.query[0].shape == (3, 9, 4) and t1.query[1].shape == (3, 9)
    assert t1.exact["inner_params"] == ("u",)
    assert torch.equal(t1.exact["phi_true"], t3.exact["phi_true"])  # shared embedding across batches
    p = fam.init_params(0)
    assert set(p) == {"phi", "u"} and p["phi"].shape == (4, 3) and p["u"].shape == (3,)
    assert torch.equal(p["phi"], fam.init_params(0)["phi"]) and not torch.equal(p["u"], fam.init_params(1)["u"])
    assert ANILTasks(dtype=torch.float32).init_params(0)["phi"].dtype == torch.float32
    # the noiseless labels come from the true embedding and heads
    clean = ANILTasks(d=4, width=3, S=6, noise=0.0).sample(2, 0)
    X, y = clean.support
    ref = (torch.tanh(X @ clean.exact["phi_true"]) @ clean.exact["u_true"].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(y, ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d=0), "d = 0"),
    (dict(width=0), "width = 0"),
    (dict(head="mlp"), "head = 'mlp'"),
    (dict(lam=0.0), "lam = 0"),
    (dict(lam=-0.1, head="nonconvex"), "lam = -0.1"),
    (dict(noise=-1.0), "noise = -1"),
    (dict(robust="tukey", head="nonconvex"), "robust = 'tukey'"),
])
def test_invalid_config(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ANILTasks(**kwargs)
