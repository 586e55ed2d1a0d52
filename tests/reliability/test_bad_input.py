"""Bad input, tried as a new user would: every public entry point answers with the package's own
ValueError/TypeError subclass naming the bad value, never a traceback from deep inside and never a wrong answer."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convtheory import ConvTheoryError
from convtheory.hypergrad import hypergradient, meta_gradient
from convtheory.problems import FAMILIES, HyperRepresentation, QuadraticBilevel, QuadraticTasks
from convtheory.types import InvalidArgumentError, InvalidTypeError

BAD_STEP = st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.just(-math.inf))
BAD_COUNT = st.one_of(st.integers(max_value=-1), st.floats(0.1, 10.0).filter(lambda v: not v.is_integer()))
BAD_TYPE = st.one_of(st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))


def quad():
    tasks = QuadraticTasks(d=3).sample(4, 0)
    return tasks, QuadraticTasks(d=3).init_params(0)


def assert_named(exc_info, value):
    msg = str(exc_info.value)
    assert isinstance(exc_info.value, ConvTheoryError)
    assert "\n" not in msg.strip()
    if isinstance(value, float) and math.isnan(value):
        assert "nan" in msg
    elif isinstance(value, (int, float)):
        assert f"{value:g}" in msg or repr(value) in msg or str(value) in msg, msg


@settings(max_examples=25, deadline=None)
@given(alpha=BAD_STEP)
def test_meta_gradient_bad_inner_step(alpha):
    tasks, theta = quad()
    with pytest.raises(InvalidArgumentError) as e:
        meta_gradient(tasks.loss, theta, tasks.support, tasks.query, inner_lr=alpha, compile="never")
    assert_named(e, alpha)


@settings(max_examples=25, deadline=None)
@given(N=BAD_COUNT)
def test_meta_gradient_bad_inner_steps(N):
    tasks, theta = quad()
    with pytest.raises((InvalidArgumentError, InvalidTypeError)) as e:
        meta_gradient(tasks.loss, theta, tasks.support, tasks.query, inner_steps=N, compile="never")
    assert_named(e, N)


@settings(max_examples=25, deadline=None)
@given(method=st.text(min_size=1, max_size=8).filter(lambda m: m not in {"maml", "fomaml", "hfmaml", "reptile",
                                                                          "imaml", "anil"}))
def test_meta_gradient_unknown_method_lists_valid_ones(method):
    tasks, theta = quad()
    with pytest.raises(InvalidArgumentError, match="valid: anil, fomaml, hfmaml, imaml, maml, reptile"):
        meta_gradient(tasks.loss, theta, tasks.support, tasks.query, method=method, compile="never")


@settings(max_examples=15, deadline=None)
@given(bad=BAD_TYPE)
def test_meta_gradient_bad_types(bad):
    tasks, theta = quad()
    with pytest.raises(InvalidTypeError):
        meta_gradient(tasks.loss, bad, tasks.support, tasks.query, compile="never")
    with pytest.raises(InvalidTypeError):
        meta_gradient(tasks.loss, theta, bad, tasks.query, compile="never")


@settings(max_examples=25, deadline=None)
@given(alpha=BAD_STEP, method=st.sampled_from(["itd", "itd-forward", "aid-cg", "aid-neumann", "aid-fp", "esj"]))
def test_hypergradient_bad_inner_step(alpha, method):
    prob = QuadraticBilevel(p=2, q=3).build(0)
    with pytest.raises(InvalidArgumentError) as e:
        hypergradient(prob.f, prob.g, prob.x0, prob.y0, method=method, inner_steps=2, inner_lr=alpha, seed=0,
                      directions=4)
    assert_named(e, alpha)


@settings(max_examples=25, deadline=None)
@given(Q=BAD_COUNT)
def test_hypergradient_bad_solver_steps(Q):
    prob = QuadraticBilevel(p=2, q=3).build(0)
    with pytest.raises((InvalidArgumentError, InvalidTypeError)) as e:
        hypergradient(prob.f, prob.g, prob.x0, prob.y0, method="aid-cg", inner_steps=2, inner_lr=0.5, solver_steps=Q)
    assert_named(e, Q)


@settings(max_examples=30, deadline=None)
@given(mu=st.floats(0.0, 10.0), L=st.floats(1e-3, 10.0))
def test_families_refuse_mu_above_L_or_nonpositive(mu, L):
    if 0 < mu <= L:
        QuadraticTasks(d=2, mu=mu, L=L)  # valid: no error
        QuadraticBilevel(p=2, q=2, mu=mu, L=L)
        return
    for make in (lambda: QuadraticTasks(d=2, mu=mu, L=L), lambda: QuadraticBilevel(p=2, q=2, mu=mu, L=L)):
        with pytest.raises(InvalidArgumentError) as e:
            make()
        assert_named(e, mu)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("bad", [{"d": 0}, {"d": -3}, {"d": 2.5}])
def test_every_family_names_a_bad_dimension(name, bad):
    with pytest.raises((InvalidArgumentError, InvalidTypeError), match="d"):
        FAMILIES[name](**bad)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_constants_are_refused(value):
    with pytest.raises(InvalidArgumentError):
        QuadraticTasks(d=2, L=value)
    with pytest.raises(InvalidArgumentError):
        HyperRepresentation(reg=value)


def test_dimension_mismatch_between_params_and_data_is_named():
    tasks, _ = quad()
    with pytest.raises(ConvTheoryError, match="shape"):
        meta_gradient(tasks.loss, torch.zeros(5, dtype=torch.float64), tasks.support, tasks.query, compile="never")


def test_support_and_query_with_different_task_counts():
    tasks, theta = quad()
    q = tuple(t[:2] for t in tasks.query)
    with pytest.raises(InvalidArgumentError, match="support has 4 tasks but query has 2"):
        meta_gradient(tasks.loss, theta, tasks.support, q, compile="never")
