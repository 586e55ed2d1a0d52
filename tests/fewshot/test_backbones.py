"""Backbones as pure functions: output shapes, transductive batch norm (formula, per-task statistics under vmap,
no state), determinism of init, and second-order MAML through batch norm against finite differences."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from convtheory.fewshot.backbones import (
    BACKBONES,
    Conv4,
    ResNet12,
    batch_norm,
    batch_norm_fused,
    make_backbone,
    num_params,
)
from convtheory.hypergrad import meta_gradient
from convtheory.types import InvalidArgumentError


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("pool,size,hidden,dim", [
    ("stride", 28, 64, 64),     # MAML Omniglot: 28 -> 14 -> 7 -> 4 -> 2, spatial mean
    ("max", 28, 64, 64),        # 28 -> 14 -> 7 -> 3 -> 1, flattened
    ("max", 84, 32, 800),       # MAML miniImageNet: 84 -> 42 -> 21 -> 10 -> 5, 32 * 5 * 5 = 800 features
])
def test_conv4_shapes(pool, size, hidden, dim):
    net = Conv4(in_channels=1 if size == 28 else 3, hidden=hidden, n_out=5, pool=pool)
    params = net.init(0, image_size=size)
    x = torch.rand(7, net.in_channels, size, size)
    assert net.feature_dim(size) == dim
    assert net.features(params, x).shape == (7, dim)
    assert net(params, x).shape == (7, 5)
    assert params["head.weight"].shape == (5, dim)
    body = Conv4(in_channels=net.in_channels, hidden=hidden, n_out=0, pool=pool)
    assert body(body.init(0, image_size=size), x).shape == (7, dim) and body.head_names == ()


def test_conv4_parameter_count():
    # 4 conv layers (3x3, with bias), 4 BN (gamma, beta), a 64 -> 5 head
    expected = (9 * 1 * 64 + 64) + 3 * (9 * 64 * 64 + 64) + 4 * 2 * 64 + (64 * 5 + 5)
    assert num_params(Conv4().init(0)) == expected == 112_261


def test_resnet12_shapes():
    net = ResNet12(in_channels=3, widths=(4, 6, 8, 10), n_out=5)
    params = net.init(0)
    x = torch.rand(3, 3, 32, 32)
    assert net.features(params, x).shape == (3, 10)
    assert net(params, x).shape == (3, 5)
    full = ResNet12()  # (64, 160, 320, 640), about 12M parameters (the count the ESJ paper quotes)
    assert 12.0e6 < num_params(full.init(0)) < 12.6e6


def test_make_backbone_registry_and_errors():
    assert set(BACKBONES) == {"conv4", "resnet12"}
    assert make_backbone("conv4", hidden=8) == Conv4(hidden=8)
    with pytest.raises(InvalidArgumentError, match="backbone = 'vgg'.*conv4, resnet12"):
        make_backbone("vgg")
    with pytest.raises(InvalidArgumentError, match="no option.*depth"):
        make_backbone("conv4", depth=5)
    with pytest.raises(InvalidArgumentError, match="pool = 'avg'"):
        Conv4(pool="avg")
    with pytest.raises(InvalidArgumentError, match=r"\(n, 1, H, W\)"):
        Conv4(hidden=4).features(Conv4(hidden=4).init(0), torch.zeros(2, 3, 28, 28))


def test_init_is_seeded():
    a, b, c = Conv4(hidden=8).init(3), Conv4(hidden=8).init(3), Conv4(hidden=8).init(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


# ------------------------------------------------------------------------------------------- batch norm
def test_batch_norm_normalises_per_channel_and_equals_the_fused_kernel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 4, 4, generator=g, dtype=torch.float64) * 3 + 2
    w, b = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(batch_norm(x, w, b), batch_norm_fused(x, w, b), rtol=1e-12, atol=1e-12)
    y = batch_norm(x, torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var((0, 2, 3), unbiased=False), torch.ones(5, dtype=torch.float64),
                               atol=1e-4, rtol=0)  # eps = 1e-5 in the denominator


def test_batch_norm_uses_the_batch_given_and_keeps_no_state():
    net = Conv4(hidden=4)
    params = net.init(0)
    x = torch.rand(10, 1, 28, 28)
    first = net(params, x)
    torch.testing.assert_close(net(params, x), first)  # no running statistics changed by the first call
    # transductive: an example's output depends on the rest of its batch
    assert not torch.allclose(net(params, x[:5])[0], first[0], atol=1e-4)


def test_vmap_over_tasks_normalises_each_task_by_its_own_statistics():
    net = Conv4(hidden=4)
    params = net.init(0)
    x = torch.rand(3, 10, 1, 28, 28)
    batched = vmap(net, in_dims=(None, 0))(params, x)
    looped = torch.stack([net(params, x[i]) for i in range(3)])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)
    pooled = net(params, x.reshape(30, 1, 28, 28)).reshape(3, 10, 5)
    assert not torch.allclose(batched, pooled, atol=1e-4)


@pytest.mark.parametrize("fused,exact", [(False, True), (True, False)])
def test_second_order_maml_through_batch_norm_matches_finite_differences(fused, exact):
    """The MAML meta-gradient of a conv4 (float64, tasks under vmap) against central differences of the meta-loss
    along 3 random directions: second derivatives of the batch statistics must be right for this to hold. Our
    batch norm passes; the fused kernel fails (torch 2.13's batching rule for its double backward), which is why
    the optimisation-based methods do not use it. If a torch release fixes that, the second case fails: then the
    fused kernel may be used everywhere."""
    net = Conv4(hidden=3, n_out=3, fused_bn=fused)
    params = net.init(0, image_size=12, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    xs, xq = torch.rand(2, 6, 1, 12, 12, generator=g, dtype=torch.float64), torch.rand(2, 6, 1, 12, 12, generator=g,
                                                                                         dtype=torch.float64)
    ys = yq = torch.arange(3).repeat_interleave(2).expand(2, 6)
    loss = lambda p, d: F.cross_entropy(net(p, d[0]), d[1])  # noqa: E731
    alpha, N = 0.3, 2

    def meta_loss(p):
        total = 0.0
        for i in range(2):
            w = p
            for _ in range(N):
                gw = torch.func.grad(loss)(w, (xs[i], ys[i]))
                w = {k: w[k] - alpha * gw[k] for k in w}
            total = total + loss(w, (xq[i], yq[i]))
        return total / 2

    mg, _ = meta_gradient(loss, params, (xs, ys), (xq, yq), method="maml", inner_steps=N, inner_lr=alpha,
                          compile="never")
    h = 1e-5
    errors = []
    for _ in range(3):
        v = {k: torch.randn(t.shape, generator=g, dtype=torch.float64) for k, t in params.items()}
        plus = meta_loss({k: params[k] + h * v[k] for k in params})
        minus = meta_loss({k: params[k] - h * v[k] for k in params})
        fd = (plus - minus) / (2 * h)
        directional = sum((mg[k] * v[k]).sum() for k in params)
        errors.append(float(abs(directional - fd)) / max(1.0, float(abs(fd))))
    assert (max(errors) <= 1e-6) == exact, errors
