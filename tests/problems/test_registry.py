"""Conformance: every registered meta-learning family samples, evaluates and differentiates the same way."""

import math

import pytest
import torch
from torch.func import grad, vmap

from convtheory.problems.base import MetaTasks
from convtheory.problems.registry import FAMILIES
from convtheory.tree import leaves, tree_map


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_conformance(name):
    fam = FAMILIES[name]()
    tasks = fam.sample(3, 0)
    assert isinstance(tasks, MetaTasks) and tasks.num_tasks == 3
    for part in (tasks.support, tasks.query):
        for x in part:
            assert x.shape[0] == 3 and x.dtype == torch.float64
    c = tasks.constants
    assert math.isfinite(c.L) and c.L > 0 and c.mu is not None and c.mu <= c.L and c.rho is not None
    assert c.exact <= {"L", "mu", "rho", "sigma2"}
    params = fam.init_params(0)
    batched = tree_map(lambda p: p.expand(3, *p.shape), params)
    losses = vmap(tasks.loss)(batched, tasks.support)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    g = vmap(grad(tasks.outer_loss))(batched, tasks.query)
    assert all(torch.isfinite(x).all() for x in leaves(g))
    assert FAMILIES[name]() == fam  # frozen configs compare by value
    with pytest.raises(Exception):
        fam.d = 99
