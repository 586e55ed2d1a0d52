"""Data hyper-cleaning on digits: split and corruption, exact oracles against autograd dense implicit-function
computations and finite differences, and the certified constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss
from torch.func import grad, hessian, jacrev

from convtheory.problems.hypercleaning import HyperCleaning, inner_gradient, inner_hessian
from convtheory.types import InvalidArgumentError, InvalidTypeError

D, K = 65, 10


@pytest.fixture(scope="module")
def small():
    """A small instance (100 training examples) and its inner solution at a random x."""
    prob = HyperCleaning(n_train=100, n_val=50, n_test=60, corruption=0.3, reg=1e-2).build(0)
    x = 2.0 * torch.randn(100, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return prob, x, prob.y_star(x)


def flat_hessian_y(prob, x, W):
    return hessian(prob.g, argnums=1)(x, W).reshape(D * K, D * K)


# ------------------------------------------------------------------------------------- data and corruption
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_corrupts_exactly_round_fraction_of_labels_to_another_class(n_train, corruption, seed):
    cfg = HyperCleaning(n_train=n_train, n_val=20, corruption=corruption)
    prob = cfg.build(seed)
    ex = prob.extra
    mask, noisy, clean = ex["corrupted"], ex["labels_train"], ex["labels_train_clean"]
    assert int(mask.sum()) == round(corruption * n_train) == cfg.num_corrupted
    assert bool((noisy[mask] != clean[mask]).all()) and bool((noisy[~mask] == clean[~mask]).all())
    assert bool(((noisy >= 0) & (noisy < K)).all())
    # the training one-hot targets are the noisy labels
    Y = torch.nn.functional.one_hot(noisy, K).double()
    W = torch.randn(D, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.zeros(n_train, dtype=torch.float64)
    ce = -(Y * torch.log_softmax(ex["Z_train"] @ W, -1)).sum(-1)
    assert math.isclose(float(prob.g(x, W)), float(0.5 * ce.mean() + 0.5 * cfg.reg * (W**2).sum()), rel_tol=1e-12)


def test_wrong_class_is_uniform_over_the_nine_others():
    ex = HyperCleaning(n_train=1350, n_val=1, corruption=1.0).build(3).extra
    offsets = (ex["labels_train"] - ex["labels_train_clean"]) % K
    counts = torch.bincount(offsets, minlength=K)
    assert int(counts[0]) == 0
    expected = 1350 / 9  # 150 each; binomial sd about 11.5
    assert bool(((counts[1:] - expected).abs() < 5 * math.sqrt(expected * 8 / 9)).all())


def test_split_sizes_disjoint_and_deterministic_by_seed():
    cfg = HyperCleaning(n_train=120, n_val=30)
    a, b, c = cfg.build(5), cfg.build(5), cfg.build(6)
    ia = a.extra["indices"]
    assert [len(ia[k]) for k in ("train", "val", "test")] == [120, 30, 1797 - 150]
    allidx = torch.cat([ia["train"], ia["val"], ia["test"]])
    assert len(torch.unique(allidx)) == 1797
    for k in ("train", "val", "test"):
        assert torch.equal(ia[k], b.extra["indices"][k])
    assert torch.equal(a.extra["corrupted"], b.extra["corrupted"])
    assert torch.equal(a.extra["labels_train"], b.extra["labels_train"])
    assert not torch.equal(ia["train"], c.extra["indices"]["train"])
    g = cfg.build(torch.Generator().manual_seed(5))
    assert torch.equal(g.extra["labels_train"], a.extra["labels_train"])
    assert len(HyperCleaning(n_train=120, n_val=30, n_test=40).build(5).extra["indices"]["test"]) == 40


def test_features_are_digits_scaled_to_unit_interval_with_bias(small):
    prob = small[0]
    data = load_digits()
    ex = prob.extra
    for split, Z in (("train", ex["Z_train"]), ("val", ex["Z_val"]), ("test", ex["Z_test"])):
        idx = ex["indices"][split].numpy()
        assert np.allclose(Z[:, :64].numpy(), data.data[idx] / 16.0, rtol=0, atol=0)
        assert bool((Z[:, 64] == 1).all())
    assert np.array_equal(ex["labels_train_clean"].numpy(), data.target[ex["indices"]["train"].numpy()])
    assert np.array_equal(ex["labels_test"].numpy(), data.target[ex["indices"]["test"].numpy()])


# ------------------------------------------------------------------------------------------ exact oracles
def test_closed_form_gradient_and_hessian_match_autograd(small):
    prob, x, _ = small
    W = 0.5 * torch.randn(D, K, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ex = prob.extra
    Y = torch.nn.functional.one_hot(ex["labels_train"], K).double()
    assert torch.allclose(inner_gradient(x, W, ex["Z_train"], Y, 1e-2), grad(prob.g, argnums=1)(x, W), atol=1e-14)
    assert torch.allclose(inner_hessian(x, W, ex["Z_train"], 1e-2), flat_hessian_y(prob, x, W), atol=1e-13)


def test_y_star_is_stationary(small):
    prob, x, W = small
    assert float(torch.linalg.vector_norm(grad(prob.g, argnums=1)(x, W))) <= 1e-10
    W0 = prob.y_star(prob.x0)
    assert float(torch.linalg.vector_norm(grad(prob.g, argnums=1)(prob.x0, W0))) <= 1e-10


def test_hypergradient_equals_dense_implicit_function_formula(small):
    prob, x, W = small
    Hyy = flat_hessian_y(prob, x, W)
    Jyx = jacrev(grad(prob.g, argnums=1), argnums=0)(x, W).reshape(D * K, -1)  # (dK, n)
    fy = grad(prob.f, argnums=1)(x, W).reshape(-1)
    ref = grad(prob.f, argnums=0)(x, W) - Jyx.T @ torch.linalg.solve(Hyy, fy)
    got = prob.hypergradient(x)
    assert float(torch.linalg.vector_norm(got - ref)) <= 1e-8 * float(torch.linalg.vector_norm(ref))


def test_hypergradient_equals_central_finite_differences_of_phi(small):
    prob, x, _ = small
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=x.dtype)
    h = 1e-3
    phi = prob.extra["phi"]
    fd = (phi(x + h * v) - phi(x - h * v)) / (2 * h)
    dd = torch.dot(prob.hypergradient(x), v)
    assert math.isclose(float(fd), float(dd), rel_tol=1e-5)


def test_hypergradient_pushes_corrupted_weights_down_at_x0(small):
    """At equal weights, raising a corrupted example's weight raises the validation loss more than a clean one's."""
    prob = small[0]
    hg, mask = prob.hypergradient(prob.x0), prob.extra["corrupted"]
    assert float(hg[mask].mean()) > 0 > float(hg[~mask].mean())


# ----------------------------------------------------------------------------------------------- constants
def test_inner_hessian_spectrum_lies_in_mu_L_and_mu_is_attained(small):
    prob, x, W = small
    c = prob.constants
    gen = torch.Generator().manual_seed(3)
    points = [(x, W), (prob.x0, prob.y0), (10 * torch.randn(100, generator=gen, dtype=torch.float64),
                                           3 * torch.randn(D, K, generator=gen, dtype=torch.float64))]
    for xx, WW in points:
        ev = torch.linalg.eigvalsh(flat_hessian_y(prob, xx, WW))
        assert math.isclose(float(ev[0]), c.mu, rel_tol=1e-8)  # along W = v 1^T the softmax curvature vanishes
        assert float(ev[-1]) <= c.L
    ev0 = torch.linalg.eigvalsh(flat_hessian_y(prob, prob.x0, prob.y0))
    assert float(ev0[-1]) <= c.extra["L_at_x0"] <= c.L
    assert c.exact == frozenset({"mu"})


def test_M_and_Lxy_bound_outer_gradient_and_mixed_derivative(small):
    prob, x, _ = small
    c = prob.constants
    gen = torch.Generator().manual_seed(5)
    for scale in (0.0, 1.0, 10.0):
        W = scale * torch.randn(D, K, generator=gen, dtype=torch.float64)
        assert float(torch.linalg.vector_norm(grad(prob.f, argnums=1)(x, W))) <= c.M
        J = jacrev(grad(prob.g, argnums=1), argnums=0)(x, W).reshape(D * K, -1)
        assert float(torch.linalg.matrix_norm(J, ord=2)) <= c.extra["Lxy"]


def test_test_loss_and_accuracy_helpers_match_sklearn_and_numpy(small):
    prob, _, W = small
    ex = prob.extra
    logits = (ex["Z_test"] @ W).numpy()
    probs = torch.softmax(torch.as_tensor(logits), -1).numpy()
    labels = ex["labels_test"].numpy()
    assert math.isclose(float(ex["test_loss"](W)), log_loss(labels, probs, labels=list(range(K))), rel_tol=1e-10)
    assert math.isclose(float(ex["test_accuracy"](W)), float(np.mean(logits.argmax(1) == labels)), rel_tol=1e-15)


@pytest.mark.parametrize(
    "kwargs,err",
    [
        (dict(n_train=1500, n_val=400), InvalidArgumentError),
        (dict(n_train=100, n_val=100, n_test=1700), InvalidArgumentError),
        (dict(n_train=0), InvalidArgumentError),
        (dict(n_val=2.5), InvalidTypeError),
        (dict(corruption=1.5), InvalidArgumentError),
        (dict(corruption=-0.1), InvalidArgumentError),
        (dict(reg=0.0), InvalidArgumentError),
        (dict(dtype=torch.float16), InvalidArgumentError),
    ],
)
def test_invalid_config_raises(kwargs, err):
    with pytest.raises(err):
        HyperCleaning(**kwargs)


def test_float32_problem_keeps_float32_tensors():
    prob = HyperCleaning(n_train=50, n_val=20, n_test=20, dtype=torch.float32).build(0)
    W = prob.y_star(prob.x0)
    assert W.dtype == torch.float32 and prob.hypergradient(prob.x0).dtype == torch.float32
    assert prob.g(prob.x0, W).dtype == torch.float32
