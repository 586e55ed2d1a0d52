"""convtheory.analysis.rates: exact recovery on synthetic sequences, OLS/t intervals against scipy, CI coverage."""

from __future__ import annotations

import doctest
import math
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from convtheory.analysis.rates import Fit, SeedFits, fit_geometric, fit_over_seeds, fit_power
from convtheory.types import InvalidArgumentError, InvalidTypeError


def seed_frame(slopes_noise: np.ndarray, rate: float, C: float, n: int) -> pd.DataFrame:
    """A tidy trace: one geometric series per seed, y = C rate^k exp(noise)."""
    m = slopes_noise.shape[0]
    k = np.arange(n)
    return pd.DataFrame({
        "seed": np.repeat(np.arange(m), n),
        "iteration": np.tile(k, m),
        "grad_norm": (C * rate ** k * np.exp(slopes_noise)).ravel(),
    })


# ------------------------------------------------------------------------------------ noise-free exactness
@settings(max_examples=30, deadline=None)
@given(r=st.floats(0.05, 0.995), C=st.floats(1e-3, 1e3), n=st.integers(3, 80), dx=st.sampled_from([1.0, 0.5, 3.0]))
def test_geometric_recovers_rate_exactly(r, C, n, dx):
    x = 7.0 + dx * np.arange(n)
    y = C * r ** (x - 7.0)
    for window in ("auto", None):
        if window is None and y.min() < 1e-200:  # subnormal range: log loses digits
            continue
        f = fit_geometric(x, y, window=window)
        assert abs(f.rate - r) <= 1e-12 * r
        assert abs(f.slope - math.log(r)) <= 1e-12
        assert abs(f.predict(7.0) - C) <= 1e-10 * C
        assert f.r2 == pytest.approx(1.0, abs=1e-12)
        assert f.stderr <= 1e-12
        assert f.ci_low <= f.rate <= f.ci_high or f.ci_high - f.ci_low <= 1e-12


@settings(max_examples=30, deadline=None)
@given(p=st.floats(-3.0, -0.1), C=st.floats(1e-2, 1e2), n=st.integers(3, 200))
def test_power_recovers_exponent_exactly(p, C, n):
    x = np.arange(1, n + 1, dtype=float)
    f = fit_power(x, C * x ** p)
    assert f.kind == "power" and f.rate == f.slope
    assert abs(f.rate - p) <= 1e-12
    assert abs(math.exp(f.intercept) - C) <= 1e-10 * C
    assert f.n == n and f.r2 == pytest.approx(1.0, abs=1e-12)


def test_single_fit_matches_scipy_linregress():
    rng = np.random.default_rng(3)
    x = np.arange(60.0)
    y = 2.0 * 0.93 ** x * np.exp(0.2 * rng.standard_normal(60))
    f = fit_geometric(x, y, window=None)
    ref = stats.linregress(x, np.log(y))
    assert f.slope == pytest.approx(ref.slope, rel=1e-12)
    assert f.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert f.stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert f.r2 == pytest.approx(ref.rvalue ** 2, rel=1e-12)
    lo, hi = stats.t.interval(0.95, 58, loc=ref.slope, scale=ref.stderr)
    assert (f.slope_ci_low, f.slope_ci_high) == pytest.approx((lo, hi), rel=1e-10)
    assert (f.ci_low, f.ci_high) == pytest.approx((math.exp(lo), math.exp(hi)), rel=1e-10)


def test_noisy_fit_interval_contains_truth():
    rng = np.random.default_rng(0)
    x = np.arange(100.0)
    r = 0.97
    y = 5.0 * r ** x * np.exp(0.05 * rng.standard_normal(100))
    f = fit_geometric(x, y)
    assert f.ci_low <= r <= f.ci_high
    assert f.ci_high - f.ci_low < 0.01  # informative, not trivially wide
    xp = np.arange(1.0, 101.0)
    g = fit_power(xp, 3.0 * xp ** -0.5 * np.exp(0.05 * rng.standard_normal(100)))
    assert g.ci_low <= -0.5 <= g.ci_high and g.ci_high - g.ci_low < 0.05


# --------------------------------------------------------------------------------------------- window rule
def test_auto_window_stops_at_roundoff_plateau():
    k = np.arange(120)
    r = 0.7
    clean = r ** k
    plateau = 1e-16 * (1.0 + 0.5 * np.sin(k))  # round-off noise level
    y = np.maximum(clean, plateau)
    expected_n = int(np.sum(clean > 1e-13))  # leading run above floor * max|y| (max is y_0 = 1)
    f = fit_geometric(k, y)
    assert f.n == expected_n and f.x_last == expected_n - 1
    assert abs(f.rate - r) <= 1e-12
    biased = fit_geometric(k, y, window=None)
    assert abs(biased.rate - r) > 0.01  # the plateau would bend the fit


def test_auto_window_floor_is_relative_to_the_largest_value():
    k = np.arange(40)
    y = 1e6 * 0.5 ** k
    f = fit_geometric(k, y)
    assert f.n == int(np.sum(y > 1e-13 * 1e6))


def test_auto_window_accepts_exact_zero_after_convergence_and_none_rejects_it():
    y = np.array([1.0, 0.5, 0.25, 0.125, 0.0, 0.0])
    f = fit_geometric(np.arange(6), y)
    assert f.n == 4 and abs(f.rate - 0.5) <= 1e-15
    with pytest.raises(InvalidArgumentError, match="not positive"):
        fit_geometric(np.arange(6), y, window=None)


def test_explicit_window_and_unsorted_input():
    x = np.array([5, 0, 3, 1, 4, 2, 6], dtype=float)
    y = np.where(x <= 3, 0.5 ** x, 10.0)  # geometric only on [0, 3]
    f = fit_geometric(x, y, window=(0, 3))
    assert f.n == 4 and abs(f.rate - 0.5) <= 1e-15
    assert (f.x_first, f.x_last) == (0.0, 3.0)


def test_power_auto_window_drops_nonpositive_x():
    x = np.arange(0.0, 30.0)
    y = np.where(x > 0, 4.0 / np.maximum(x, 1.0), 123.0)
    f = fit_power(x, y)
    assert f.n == 29 and abs(f.rate + 1.0) <= 1e-13
    with pytest.raises(InvalidArgumentError, match="x = 0 is not positive"):
        fit_power(x, y, window=None)


# -------------------------------------------------------------------------------------------- over seeds
def test_over_seeds_matches_independent_t_interval():
    rng = np.random.default_rng(11)
    df = seed_frame(0.1 * rng.standard_normal((6, 50)), 0.9, 2.0, 50)
    sf = fit_over_seeds(df)
    assert isinstance(sf, SeedFits) and sf.n == 6 and list(sf.per_seed["seed"]) == list(range(6))
    per = [stats.linregress(g["iteration"], np.log(g["grad_norm"])).slope for _, g in df.groupby("seed")]
    assert sf.per_seed["slope"].to_numpy() == pytest.approx(per, rel=1e-12)
    mean = np.mean(per)
    lo, hi = stats.t.interval(0.95, 5, loc=mean, scale=stats.sem(per))
    assert sf.slope == pytest.approx(mean, rel=1e-12)
    assert (sf.slope_ci_low, sf.slope_ci_high) == pytest.approx((lo, hi), rel=1e-10)
    assert (sf.rate, sf.ci_low, sf.ci_high) == pytest.approx((math.exp(mean), math.exp(lo), math.exp(hi)), rel=1e-10)


def test_over_seeds_noise_free_is_exact_and_power_kind_works():
    df = seed_frame(np.zeros((3, 30)), 0.8, 1.0, 30)
    sf = fit_over_seeds(df)
    assert abs(sf.rate - 0.8) <= 1e-12 and sf.stderr <= 1e-12
    k = np.arange(0, 40)
    pw = pd.DataFrame({"seed": np.repeat([0, 1], 40), "iteration": np.tile(k, 2),
                       "train_loss": np.tile(np.where(k > 0, 1.0 / np.maximum(k, 1) ** 2, 9.0), 2)})
    sp = fit_over_seeds(pw, y="train_loss", kind="power")
    assert abs(sp.rate + 2.0) <= 1e-12 and sp.per_seed["n"].tolist() == [39, 39]


def test_over_seeds_single_seed_has_no_interval_and_by_none_pools():
    df = seed_frame(np.zeros((1, 10)), 0.5, 1.0, 10)
    sf = fit_over_seeds(df)
    assert sf.n == 1 and math.isnan(sf.ci_low) and math.isnan(sf.slope_ci_high)
    pooled = fit_over_seeds(df.drop(columns="seed"), by=None)
    assert abs(pooled.rate - 0.5) <= 1e-12 and "seed" not in pooled.per_seed.columns


def test_interval_coverage_over_seeds_and_single_fits():
    """95% intervals cover the true slope in roughly 95% of 200 simulated studies (we require >= 85%)."""
    rng = np.random.default_rng(2024)
    r, m, n = 0.95, 5, 40
    cover_seeds = cover_single = 0
    for _ in range(200):
        # per-seed slope varies around the truth (run-to-run variation) plus per-point noise
        k = np.arange(n)
        jitter = 0.01 * rng.standard_normal((m, 1)) * k
        noise = 0.1 * rng.standard_normal((m, n)) + jitter
        sf = fit_over_seeds(seed_frame(noise, r, 1.0, n))
        cover_seeds += sf.slope_ci_low <= math.log(r) <= sf.slope_ci_high
        f = fit_geometric(k, r ** k * np.exp(0.1 * rng.standard_normal(n)))
        cover_single += f.ci_low <= r <= f.ci_high
    assert cover_seeds >= 170, cover_seeds
    assert cover_single >= 170, cover_single


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("call, match", [
    (lambda: fit_geometric([], []), "empty"),
    (lambda: fit_geometric([0, 1], [1.0]), "same length"),
    (lambda: fit_geometric([0, 1, 2], [1.0, -0.5, 0.25], window=None), "not positive"),
    (lambda: fit_geometric([0, 1, 2], [-1.0, 0.5, 0.25]), "at least 2 points"),
    (lambda: fit_geometric([1, 1, 1], [1.0, 0.5, 0.25]), "same x"),
    (lambda: fit_geometric([0], [1.0]), "at least 2 points"),
    (lambda: fit_geometric([0, 1, 2], [1.0, np.inf, 0.25]), "not finite"),
    (lambda: fit_geometric([0, 1], [1.0, 0.5], window="last"), "window"),
    (lambda: fit_geometric([0, 1], [1.0, 0.5], window=(3, 1)), "lo <= hi"),
    (lambda: fit_geometric([0, 1], [1.0, 0.5], level=1.5), "level"),
    (lambda: fit_power([0, 1, 2], [1.0, 0.5, 0.3], window=None), "x = 0 is not positive"),
    (lambda: fit_over_seeds(pd.DataFrame({"iteration": [], "grad_norm": [], "seed": []})), "empty"),
    (lambda: fit_over_seeds(pd.DataFrame({"iteration": [0, 1], "seed": [0, 0]})), "grad_norm"),
    (lambda: fit_over_seeds(pd.DataFrame({"iteration": [0, 1], "grad_norm": [1.0, 0.5]})), "seed"),
    (lambda: fit_over_seeds(pd.DataFrame({"iteration": [0, 1], "grad_norm": [1.0, 0.5], "seed": 0}),
                            kind="linear"), "kind"),
    (lambda: fit_over_seeds(pd.DataFrame({"iteration": [0, 1, 0, 1], "grad_norm": [1.0, 0.5, 1.0, -1.0],
                                          "seed": [0, 0, 3, 3]}), window=None), "seed = 3"),
])
def test_invalid_input_raises_naming_the_problem(call, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call()


def test_wrong_types_raise_invalid_type():
    with pytest.raises(InvalidTypeError):
        fit_over_seeds([1.0, 2.0])
    with pytest.raises(InvalidTypeError):
        fit_geometric("abc", [1.0])


def test_fit_is_frozen_and_doctests_pass():
    f = fit_geometric([0, 1, 2], [1.0, 0.5, 0.25])
    assert isinstance(f, Fit)
    with pytest.raises(AttributeError):
        f.rate = 1.0
    assert doctest.testmod(sys.modules["convtheory.analysis.rates"]).failed == 0
