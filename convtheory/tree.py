"""Arithmetic on parameters that are a tensor or a dict of tensors (the two forms ``Params`` allows)."""

from __future__ import annotations

from typing import Callable

import torch

from .types import Params


def tree_map(fn: Callable, *trees: Params) -> Params:
    """Apply ``fn`` leaf-wise to tensors or to dicts of tensors with the same keys."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: fn(*(t[k] for t in trees)) for k in first}
    return fn(*trees)


def leaves(tree: Params) -> list[torch.Tensor]:
    return list(tree.values()) if isinstance(tree, dict) else [tree]


def tree_add(a: Params, b: Params, scale=1.0) -> Params:
    """a + scale * b."""
    return tree_map(lambda x, y: x + scale * y, a, b)


def tree_sub(a: Params, b: Params) -> Params:
    return tree_map(lambda x, y: x - y, a, b)


def tree_scale(a: Params, scale) -> Params:
    return tree_map(lambda x: scale * x, a)


def tree_zeros_like(a: Params) -> Params:
    return tree_map(torch.zeros_like, a)


def tree_dot(a: Params, b: Params) -> torch.Tensor:
    """Sum over leaves of the inner products <a, b>."""
    return sum((x * y).sum() for x, y in zip(leaves(a), leaves(b)))


def tree_norm(a: Params) -> torch.Tensor:
    return torch.sqrt(tree_dot(a, a))


def flatten(a: Params) -> torch.Tensor:
    """Concatenate the leaves into one vector (dict order)."""
    return torch.cat([x.reshape(-1) for x in leaves(a)])


def unflatten(vec: torch.Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten` for parameters shaped like ``like``."""
    if not isinstance(like, dict):
        return vec.reshape(like.shape)
    out, i = {}, 0
    for k, x in like.items():
        out[k] = vec[i : i + x.numel()].reshape(x.shape)
        i += x.numel()
    return out
