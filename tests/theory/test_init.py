"""convtheory.theory: the registry, the docstring conventions every theorem function follows, and the doctests."""

from __future__ import annotations

import doctest
import inspect

import pytest

import convtheory.theory as th

MODULES = [th.quadratic, th.maml, th.anil, th.bilevel, th.imaml, th.esj, th.hd, th.guidelines, th.stochastic_bilevel,
           th.warm_start]


def test_bounds_registry_lists_every_public_function_of_the_theorem_modules():
    assert len(th.BOUNDS) >= 60
    for name, fn in th.BOUNDS.items():
        module, attr = name.split(".")
        assert getattr(getattr(th, module), attr) is fn
        assert getattr(th, attr) is fn  # re-exported at package level


@pytest.mark.parametrize("name", sorted(th.BOUNDS) + [f"guidelines.{n}" for n in th.guidelines.GUIDELINES])
def test_every_function_cites_its_source_and_says_how_exact_its_constants_are(name):
    module, attr = name.split(".")
    fn = getattr(getattr(th, module), attr if module != "guidelines" else f"{attr.replace('-', '_')}_guideline")
    doc = inspect.getdoc(fn)
    assert doc and doc.splitlines()[0].strip(), f"{name} has no one-line summary"
    assert "Reference:" in doc, f"{name} does not cite its source"
    assert "Constants:" in doc, f"{name} does not say whether its constants are exact"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_bound_is_a_frozen_record():
    b = th.inner_error_bound(0.1, 1.0, 2.0, 3)
    assert float(b) == pytest.approx(0.9**3)
    with pytest.raises(AttributeError):
        b.value = 0.0  # type: ignore[misc]
