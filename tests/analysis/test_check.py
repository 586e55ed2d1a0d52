"""convtheory.analysis.check: first violation and tightness on constructed traces, divergence, rate verdicts."""

from __future__ import annotations

import doctest
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convtheory.analysis.check import Verdict, check, check_rate, compare_slope
from convtheory.analysis.rates import fit_geometric, fit_over_seeds, fit_power
from convtheory.theory import Bound
from convtheory.theory.quadratic import inner_error_bound
from convtheory.types import InvalidArgumentError, InvalidTypeError


def constructed(t: np.ndarray) -> pd.DataFrame:
    """Trace whose tightness is exactly t: bound 2^-k, measured t_k 2^-k (products with powers of 2 are exact)."""
    k = np.arange(t.size)
    return pd.DataFrame({"iteration": k, "grad_norm": t * 2.0 ** -k, "bound": 2.0 ** -k})


# ------------------------------------------------------------------------------ first violation, tightness
@settings(max_examples=30, deadline=None)
@given(t=st.lists(st.one_of(st.just(0.0), st.floats(1e-100, 3.0)), min_size=1, max_size=40))  # no subnormals
def test_first_violation_and_tightness_are_exact(t):
    t = np.array(t)
    v = check(constructed(t), lambda k: 2.0 ** -k, rtol=0.0)
    assert v.n == t.size
    assert v.worst_tightness == t.max() and v.median_tightness == np.median(t)
    over = np.nonzero(t > 1.0)[0]
    if over.size:
        assert not v.holds and v.first_violation == int(over[0]) and "exceeds the bound" in v.detail
    else:
        assert v.holds and v.first_violation is None and bool(v)


def test_constructed_sequence_reports_first_of_several_violations():
    t = np.full(20, 0.5)
    t[7], t[12] = 1.5, 1.25
    v = check(constructed(t), "bound")
    assert (v.holds, v.first_violation, v.worst_tightness, v.median_tightness) == (False, 7, 1.5, 0.5)
    assert "2 of 20 rows" in v.detail and "iteration = 7" in v.detail
    assert isinstance(v.first_violation, int)


def test_bound_forms_agree():
    t = np.array([0.25, 1.0, 0.75, 2.0, 0.5])
    tr = constructed(t)
    k = np.arange(5.0)
    verdicts = [check(tr, lambda x: 2.0 ** -x), check(tr, "bound"), check(tr, 2.0 ** -k),
                check(tr, list(2.0 ** -k))]
    assert len(set(verdicts)) == 1 and verdicts[0].first_violation == 3
    const = check(pd.DataFrame({"iteration": [0, 1, 2], "grad_norm": [0.5, 1.0, 0.25]}), Bound(1.0, None, True, "x"))
    assert const.holds and const.worst_tightness == 1.0 and const.median_tightness == 0.5
    assert check(pd.DataFrame({"iteration": [0, 1], "grad_norm": [0.5, 3.0]}), 2).first_violation == 1


def test_rtol_and_atol():
    tr = pd.DataFrame({"iteration": [0, 1], "grad_norm": [1.0 * (1 + 1e-12), 0.5]})
    assert check(tr, 1.0).holds
    assert not check(tr, 1.0, rtol=0.0).holds
    tr0 = pd.DataFrame({"iteration": [0, 1], "grad_norm": [1e-17, 0.0]})
    assert not check(tr0, 0.0).holds and check(tr0, 0.0, atol=1e-16).holds


def test_zero_and_infinite_bounds_tightness():
    tr = pd.DataFrame({"iteration": [0, 1, 2], "grad_norm": [0.0, 3.0, 0.0]})
    v = check(tr, np.array([0.0, np.inf, 1.0]))
    assert v.holds and v.worst_tightness == 1.0 and v.median_tightness == 0.0  # t = [1 (0/0), 0, 0]


def test_several_seeds_and_unsorted_rows():
    rows = []
    for seed, bad in ((1, 8), (2, 5)):
        for k in range(10):
            rows.append({"seed": seed, "iteration": k, "grad_norm": 2.0 if k == bad else 0.5})
    tr = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    v = check(tr, 1.0)
    assert v.first_violation == 5 and "seed 2" in v.detail and v.worst_tightness == 2.0


# -------------------------------------------------------------------------------------------- divergence
def test_diverged_rows_fail_at_that_iteration():
    tr = constructed(np.full(10, 0.5))
    tr["diverged"] = tr["iteration"] >= 6
    tr.loc[tr["iteration"] >= 7, "grad_norm"] = np.inf
    v = check(tr, "bound")
    assert not v.holds and v.first_violation == 6 and "diverged" in v.detail
    assert v.worst_tightness == 0.5 and v.median_tightness == 0.5  # over the 6 healthy rows


def test_nonfinite_value_counts_as_divergence_and_earlier_violation_wins():
    tr = constructed(np.array([0.5, 0.5, 1.5, 0.5, 0.5]))
    tr.loc[4, "grad_norm"] = np.nan
    v = check(tr, "bound")
    assert v.first_violation == 2 and "diverged" in v.detail and "exceeds" in v.detail
    tr2 = constructed(np.full(4, 0.5))
    tr2["diverged"] = [False, None, True, True]
    v2 = check(tr2, "bound")
    assert v2.first_violation == 2 and v2.n == 4


# -------------------------------------------------------------------------- a real bound: GD on a quadratic
def test_gd_error_meets_its_exact_bound_and_rate():
    """THEORY.md §14 item 1: ||w_N - w*|| <= q^N ||w_0 - w*||, equality along the slowest eigenvector."""
    mu, L, alpha = 0.5, 4.0, 0.1
    A = torch.diag(torch.tensor([mu, 1.0, 2.0, L], dtype=torch.float64))
    wstar = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    w = wstar + torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    errs = []
    for _ in range(200):
        errs.append(float(torch.linalg.vector_norm(w - wstar)))
        w = w - alpha * A @ (w - wstar)
    tr = pd.DataFrame({"iteration": np.arange(200), "grad_norm": errs})
    dist0 = errs[0]
    v = check(tr, lambda N: np.array([inner_error_bound(alpha, mu, L, int(k), dist0).value for k in N]))
    assert v.holds and v.worst_tightness == pytest.approx(1.0, abs=1e-12) and v.worst_tightness <= 1 + 1e-12
    q = inner_error_bound(alpha, mu, L, 1).rate
    late = fit_geometric(tr["iteration"], tr["grad_norm"], window=(150, 199))
    assert check_rate(late, inner_error_bound(alpha, mu, L, 1), tol=1e-9).holds
    assert abs(late.rate - q) <= 1e-9


# ------------------------------------------------------------------------------------------ rate verdicts
def test_check_rate_on_noise_free_fit():
    k = np.arange(30)
    f = fit_geometric(k, 0.8 ** k)
    v = check_rate(f, 0.8, tol=1e-12)
    assert isinstance(v, Verdict) and v.holds and v.n == 30 and v.first_violation is None
    assert v.worst_tightness == pytest.approx(1.0, abs=1e-12)
    bad = check_rate(f, 0.9, tol=1e-6)
    assert not bad.holds and bad.worst_tightness == pytest.approx(0.8 / 0.9, rel=1e-12) and "disagrees" in bad.detail
    # upper side: theory gives r <= 0.9 and the run is faster, so the bound holds; 0.7 is violated
    assert check_rate(f, 0.9, side="upper").holds and not check_rate(f, 0.7, side="upper").holds


def test_check_rate_over_seeds_uses_the_interval():
    rng = np.random.default_rng(5)
    k = np.arange(60)
    df = pd.DataFrame({"seed": np.repeat(np.arange(8), 60), "iteration": np.tile(k, 8),
                       "grad_norm": (0.9 ** k * np.exp(0.05 * rng.standard_normal((8, 60)))).ravel()})
    sf = fit_over_seeds(df)
    assert sf.ci_low <= 0.9 <= sf.ci_high
    assert check_rate(sf, 0.9).holds and not check_rate(sf, 0.89).holds
    assert check_rate(sf, Bound(1.0, 0.9, True, "test")).holds


def test_compare_slope_for_sublinear_rates():
    x = np.arange(1.0, 200.0)
    f = fit_power(x, 1.0 / x)
    assert compare_slope(f, -1.0, tol=1e-12).holds
    v = compare_slope(f, -0.5, tol=1e-3)
    assert not v.holds and v.worst_tightness == pytest.approx(2.0, rel=1e-12)
    assert compare_slope(f, -0.5, side="upper").holds  # decays at least as fast as an O(k^-1/2) bound
    assert not compare_slope(f, -2.0, side="upper").holds
    g = fit_geometric(np.arange(20), 0.5 ** np.arange(20))
    assert compare_slope(g, math.log(0.5), tol=1e-12).holds


@pytest.mark.parametrize("call, exc, match", [
    (lambda: check(pd.DataFrame({"iteration": [], "grad_norm": []}), 1.0), InvalidArgumentError, "empty"),
    (lambda: check(pd.DataFrame({"iteration": [0]}), 1.0), InvalidArgumentError, "grad_norm"),
    (lambda: check(pd.DataFrame({"grad_norm": [0.1]}), 1.0), InvalidArgumentError, "iteration"),
    (lambda: check(pd.DataFrame({"iteration": [0], "grad_norm": [0.1]}), "b"), InvalidArgumentError, "'b'"),
    (lambda: check(pd.DataFrame({"iteration": [0, 1], "grad_norm": [0.1, 0.2]}), [1.0]), InvalidArgumentError,
     "one value per row"),
    (lambda: check(pd.DataFrame({"iteration": [0], "grad_norm": [0.1]}), -1.0), InvalidArgumentError, "bound"),
    (lambda: check(pd.DataFrame({"iteration": [0], "grad_norm": [0.1]}), 1.0, rtol=-1), InvalidArgumentError, "rtol"),
    (lambda: check([0.1, 0.2], 1.0), InvalidTypeError, "DataFrame"),
    (lambda: check_rate(fit_geometric([0, 1, 2], [1, .5, .25]), Bound(1.0, None, True, "x")), InvalidArgumentError,
     "no rate"),
    (lambda: check_rate(fit_geometric([0, 1, 2], [1, .5, .25]), 0.5, side="lower"), InvalidArgumentError, "side"),
    (lambda: check_rate(fit_geometric([0, 1, 2], [1, .5, .25]), "fast"), InvalidTypeError, "predicted_rate"),
])
def test_invalid_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_doctests():
    assert doctest.testmod(sys.modules["convtheory.analysis.check"]).failed == 0
