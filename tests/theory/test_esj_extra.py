"""convtheory.theory.esj: the p-slope of the directions needed for a target MSE."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtheory.theory import esj
from convtheory.types import InvalidArgumentError

from .helpers import SETTINGS


@SETTINGS
@given(ps=st.lists(st.integers(2, 500), min_size=2, max_size=6, unique=True), eps=st.floats(1e-3, 0.5))
def test_slope_is_the_loglog_slope_of_the_exact_directions_count(ps, eps):
    for law, k in (("gaussian", 1), ("sphere_scaled", -1)):
        # esj_directions_for_mse without the ceiling: (p + k) ||a||^2 / eps, ||a|| = 1
        counts = [(p + k) / eps for p in ps]
        ref = np.polyfit(np.log(ps), np.log(counts), 1)[0]
        assert esj.esj_directions_slope(ps, law) == pytest.approx(ref, rel=1e-10, abs=1e-12)
        for p, c in zip(ps, counts):
            assert esj.esj_directions_for_mse(1.0, p, eps, law) == pytest.approx(c, abs=1.0)


def test_slope_tends_to_one_from_below_for_gaussian_and_above_for_the_sphere():
    small, large = esj.esj_directions_slope([2, 4, 8]), esj.esj_directions_slope([2000, 4000, 8000])
    assert small < large < 1.0 and large == pytest.approx(1.0, abs=1e-3)
    assert esj.esj_directions_slope([2, 4, 8], "sphere_scaled") > 1.0
    assert esj.esj_directions_slope([1, 3]) == pytest.approx(np.log(2) / np.log(3), rel=1e-12)


def test_slope_rejects_what_it_cannot_fit():
    with pytest.raises(InvalidArgumentError, match="two distinct"):
        esj.esj_directions_slope([4, 4])
    with pytest.raises(InvalidArgumentError, match="directions"):
        esj.esj_directions_slope([2, 4], "sphere")
    with pytest.raises(InvalidArgumentError, match="p"):
        esj.esj_directions_slope([1, 4], "sphere_scaled")
