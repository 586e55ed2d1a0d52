"""convtheory.testing: the public strategies pass our engines and catch wrong code."""

import pytest
import torch
from hypothesis import given, settings
from torch.func import grad

from convtheory.hypergrad import hypergradient, meta_gradient
from convtheory.problems.bilevel_quadratic import QuadraticBilevel
from convtheory.problems.quadratic import QuadraticTasks, exact_meta_gradient
from convtheory.testing import (
    BilevelInstance,
    MetaInstance,
    assert_hypergradient_matches,
    assert_itd_matches,
    assert_meta_gradient_matches,
    meta_families,
    quadratic_bilevel_instances,
    quadratic_meta_instances,
)


def exact_engine(f, g, x, y0):
    return hypergradient(f, g, x, y0, method="exact", inner_steps=0, inner_lr=1.0)[0]


def partial_only(f, g, x, y0):
    """A classic bug: the partial derivative in x at the inner solution, forgetting the implicit term."""
    y = hypergradient(f, g, x, y0, method="exact", inner_steps=0, inner_lr=1.0)[1].inner
    return grad(f, argnums=0)(x, y)


@settings(max_examples=20, deadline=None)
@given(instance=quadratic_bilevel_instances())
def test_exact_and_converged_aid_pass(instance):
    assert_hypergradient_matches(exact_engine, instance, rtol=1e-8)
    alpha = 1.0 / instance.problem.constants.L
    assert_itd_matches(lambda f, g, x, y0, N, a: hypergradient(f, g, x, y0, method="itd", inner_steps=N,
                                                                inner_lr=a)[0], instance, 7, alpha, rtol=1e-9)


def test_forgetting_the_implicit_term_is_caught():
    prob = QuadraticBilevel(p=3, q=4, mu=0.2, L=1.0).build(0)
    instance = BilevelInstance(prob, prob.x0, prob.y0, prob.hypergradient(prob.x0))
    with pytest.raises(AssertionError, match="hypergradient differs from the exact answer"):
        assert_hypergradient_matches(partial_only, instance)


@settings(max_examples=20, deadline=None)
@given(instance=quadratic_meta_instances())
def test_maml_engine_passes(instance):
    assert_meta_gradient_matches(
        lambda loss, p, s, q, a, N: meta_gradient(loss, p, s, q, inner_steps=N, inner_lr=a, compile="never",
                                                  query_loss=instance.tasks.outer_loss)[0],
        instance, rtol=1e-9, atol=1e-12)


def test_first_order_maml_is_caught():
    fam = QuadraticTasks(d=4, mu=0.2, L=1.0, query="independent")
    tasks, theta = fam.sample(8, 0), fam.init_params(1)
    instance = MetaInstance(tasks, theta, 0.5, 3, exact_meta_gradient(theta, tasks, 0.5, 3))

    def fo(loss, p, s, q, a, N):
        return meta_gradient(loss, p, s, q, method="fomaml", inner_steps=N, inner_lr=a, compile="never")[0]

    with pytest.raises(AssertionError, match="3-step MAML meta-gradient differs"):
        assert_meta_gradient_matches(fo, instance, rtol=1e-6)


@settings(max_examples=10, deadline=None)
@given(drawn=meta_families())
def test_every_family_draws_tasks_with_constants(drawn):
    name, tasks, params = drawn
    assert tasks.constants.L > 0
    value = tasks.loss(params, tuple(t[0] for t in tasks.support) if isinstance(tasks.support, tuple)
                       else {k: v[0] for k, v in tasks.support.items()} if isinstance(tasks.support, dict)
                       else tasks.support[0])
    assert torch.isfinite(value)
