"""Property tests for hypergradient and meta-gradient code: hypothesis strategies with exact answers, and asserts.

Our suite tests its engines with these; a user tests their own code the same way::

    from hypothesis import given, settings
    from convtheory.testing import quadratic_bilevel_instances, assert_hypergradient_matches

    @settings(max_examples=25, deadline=None)
    @given(instance=quadratic_bilevel_instances())
    def test_my_hypergradient(instance):
        assert_hypergradient_matches(my_hypergradient, instance, rtol=1e-8)

Every instance carries its exact answers (THEORY.md §1.2 and §1.3, closed forms in float64), so a failure is a
bug in the code under test, not in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from hypothesis import strategies as st

from .problems.base import BilevelProblem, MetaTasks
from .problems.bilevel_quadratic import QuadraticBilevel, itd_hypergradient_exact
from .problems.quadratic import LinearRegressionTasks, QuadraticTasks, exact_meta_gradient
from .tree import flatten, tree_sub

__all__ = [
    "BilevelInstance",
    "MetaInstance",
    "assert_close",
    "assert_hypergradient_matches",
    "assert_itd_matches",
    "assert_meta_gradient_matches",
    "meta_families",
    "quadratic_bilevel_instances",
    "quadratic_meta_instances",
]


@dataclass(frozen=True)
class BilevelInstance:
    """A quadratic bilevel problem with its exact hypergradient at ``x`` (``exact``) and the exact ITD estimate."""

    problem: BilevelProblem
    x: torch.Tensor
    y0: torch.Tensor
    exact: torch.Tensor

    def itd(self, N: int, alpha: float) -> torch.Tensor:
        """The exact N-step ITD hypergradient (reverse mode through N GD steps from y0), THEORY.md §1.3."""
        return itd_hypergradient_exact(self.problem, self.x, self.y0, alpha, N)


@dataclass(frozen=True)
class MetaInstance:
    """Quadratic meta-learning tasks, an initialisation, (alpha, N) and the exact N-step MAML gradient."""

    tasks: MetaTasks
    params: torch.Tensor
    alpha: float
    N: int
    exact: torch.Tensor


def assert_close(actual, expected, *, rtol: float = 1e-8, atol: float = 1e-12, what: str = "value") -> None:
    """Assert |actual - expected| <= atol + rtol |expected| (Euclidean norms over all leaves), naming the error."""
    diff = float(flatten(tree_sub(actual, expected)).norm())
    scale = float(flatten(expected).norm())
    if not diff <= atol + rtol * scale:
        raise AssertionError(
            f"{what} differs from the exact answer: |error| = {diff:.3e}, |exact| = {scale:.3e}, "
            f"relative {diff / max(scale, 1e-300):.3e} > rtol = {rtol:g} (atol = {atol:g})"
        )


@st.composite
def quadratic_bilevel_instances(draw, p=st.integers(1, 6), q=st.integers(2, 6), kappa=st.floats(1.0, 50.0),
                                gamma=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1)) -> BilevelInstance:
    """Random quadratic bilevel instances (THEORY.md §1.3) with L = 1, mu = 1/kappa, and their exact answers."""
    k = draw(kappa)
    prob = QuadraticBilevel(p=draw(p), q=draw(q), mu=1.0 / k, L=1.0, gamma=draw(gamma)).build(draw(seed))
    return BilevelInstance(prob, prob.x0, prob.y0, prob.hypergradient(prob.x0))


@st.composite
def quadratic_meta_instances(draw, d=st.integers(1, 6), B=st.integers(1, 16), N=st.integers(0, 20),
                             alpha_L=st.floats(0.01, 1.9), kappa=st.floats(1.0, 20.0),
                             finite_sample=st.booleans(), seed=st.integers(0, 2**31 - 1)) -> MetaInstance:
    """Random quadratic meta-learning instances (population or finite-sample regression tasks), alpha = alpha_L / L,
    with the exact N-step MAML gradient (THEORY.md §1.2)."""
    dd, k, s = draw(d), draw(kappa), draw(seed)
    if draw(finite_sample):
        fam = LinearRegressionTasks(d=dd, S=dd + 3, D=dd + 3, mu=1.0 / k, L=1.0, sigma2=0.1)
    else:
        fam = QuadraticTasks(d=dd, mu=1.0 / k, L=1.0, query="independent")
    tasks = fam.sample(draw(B), s)
    params = fam.init_params(s + 1)
    alpha = draw(alpha_L) / tasks.constants.L
    n = draw(N)
    return MetaInstance(tasks, params, alpha, n, exact_meta_gradient(params, tasks, alpha, n))


def meta_families(names=None, B=st.integers(1, 6), seed=st.integers(0, 2**31 - 1)):
    """Tasks from any registered family at small size, with their constants: ``(name, MetaTasks, params)``."""
    from .problems.registry import FAMILIES

    keys = sorted(FAMILIES) if names is None else list(names)

    @st.composite
    def strategy(draw):
        name = draw(st.sampled_from(keys))
        fam = FAMILIES[name]()
        s = draw(seed)
        return name, fam.sample(draw(B), s), fam.init_params(s + 1)

    return strategy()


def assert_hypergradient_matches(fn: Callable, instance: BilevelInstance, *, rtol: float = 1e-8,
                                 atol: float = 1e-12) -> None:
    """``fn(f, g, x, y0) -> hypergradient`` must equal the exact hypergradient of the instance."""
    p = instance.problem
    assert_close(fn(p.f, p.g, instance.x, instance.y0), instance.exact, rtol=rtol, atol=atol, what="hypergradient")


def assert_itd_matches(fn: Callable, instance: BilevelInstance, N: int, alpha: float, *, rtol: float = 1e-8,
                       atol: float = 1e-12) -> None:
    """``fn(f, g, x, y0, N, alpha)`` must equal the exact N-step ITD hypergradient (for truncated methods)."""
    p = instance.problem
    got = fn(p.f, p.g, instance.x, instance.y0, N, alpha)
    assert_close(got, instance.itd(N, alpha), rtol=rtol, atol=atol, what=f"{N}-step ITD hypergradient")


def assert_meta_gradient_matches(fn: Callable, instance: MetaInstance, *, rtol: float = 1e-8,
                                 atol: float = 1e-12) -> None:
    """``fn(loss, params, support, query, alpha, N) -> meta-gradient`` must equal the exact N-step MAML gradient.
    The tolerance is relative to the size of the terms: when the exact gradient nearly cancels, atol governs."""
    t = instance.tasks
    got = fn(t.loss, instance.params, t.support, t.query, instance.alpha, instance.N)
    assert_close(got, instance.exact, rtol=rtol, atol=atol, what=f"{instance.N}-step MAML meta-gradient")
