"""Predictions 13-16 (ANIL heads, iMAML Jacobian and CG): each entry at the test size, each judge on corrupted tables
(a violated bound or a reversed shape must fail), and the interval shape checks on hand-made medians."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from convtheory.sweep import run_sweep
from convtheory.theory.predictions import VERDICTS, evaluate, registry
from experiments.predictions import anil_imaml as m

REG = registry()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("predictions")


@pytest.fixture(scope="module")
def tables(store):
    """The test-size table of each entry, computed once into the module's store (evaluate reuses it)."""
    out = {}
    for n in (13, 14, 15, 16):
        res = run_sweep(REG[n].specs("test"), store / "test", executor="serial", progress=False)
        assert not res.failed, res.failed
        out[n] = res.table
    return out


def test_entries_are_registered_with_their_constants():
    assert {n: REG[n].constants for n in (13, 14, 15, 16)} == {13: "fitted", 14: "fitted", 15: "exact", 16: "bound"}
    assert all(REG[n].judge.__module__ == m.__name__ for n in (13, 14, 15, 16))


@pytest.mark.parametrize("n", [13, 14, 15, 16])
def test_entry_at_test_size(n, tables, store):
    out, sweep = evaluate(REG[n], "test", store, executor="serial", progress=False)
    assert sweep["runs_ran"] == 0  # the fixture's runs are reused
    assert out.verdict in VERDICTS and out.measured and out.predicted
    assert out.verdict != "fails", out.detail
    if n == 15:
        assert out.verdict == "holds", out.detail
        assert out.worst_tightness < 1e-2  # every identity far inside its 1e-9 tolerance
    if n == 16:
        check, worst, _ = m.check16_bound(tables[16])
        assert check[1] == "holds", check
        assert 0 < worst <= 1
    if out.verdict != "holds":
        assert out.detail


def test_13_head_bound_and_saturation_hold_at_test_size(tables):
    out = m.judge13(tables[13], "test")
    assert "head block <= L(1 - alpha mu)^{2N} holds" in out.detail
    assert "saturation holds" in out.detail
    assert 0 < out.worst_tightness <= 1


def test_13_fails_when_the_head_block_exceeds_its_bound(tables):
    t = tables[13].copy()
    t.loc[t["N"] == 4, "head_block"] *= 50
    out = m.judge13(t, "test")
    assert out.verdict == "fails" and "head block <= L(1 - alpha mu)^{2N} fails" in out.detail
    assert out.worst_tightness > 1


def test_13_fails_when_iterations_grow_with_N(tables):
    t = tables[13].copy()
    big = t["N"] == t["N"].max()
    t.loc[big, "grad_norm"] = 10 * t.loc[big, "eps"]  # the largest N never reaches eps
    out = m.judge13(t, "test")
    assert out.verdict == "fails" and "measured iterations fails" in out.detail


def test_14_fails_below_the_lower_bound_and_when_cost_falls(tables):
    t = tables[14].copy()
    t["L_meta"] *= 0.9
    out = m.judge14(t, "test")
    assert out.verdict == "fails" and "fails: worst bound/measured" in out.detail
    assert out.worst_tightness > 1
    t = tables[14].copy()
    t.loc[t["N"] == t["N"].min(), "iters"] = 10 * t["iters"].max()  # the smallest N now needs the most
    out = m.judge14(t, "test")
    assert out.verdict == "fails" and "iterations grow fails" in out.detail


def test_15_fails_on_a_perturbed_jacobian_or_meta_gradient(tables):
    t = tables[15].copy()
    t.loc[t.index[3], "err_measured"] += 1e-6
    out = m.judge15(t, "test")
    assert out.verdict == "fails" and "||J_N - J*|| vs" in out.detail and out.worst_tightness > 1
    t = tables[15].copy()
    t["metagrad_dev"] = 1e-7
    assert m.judge15(t, "test").verdict == "fails"
    t = tables[15].copy()
    t["err_bound"] *= 0.5  # the unrolled error above its rate bound
    out = m.judge15(t, "test")
    assert out.verdict == "fails" and "r^N max|h|/(lam+h) fails" in out.detail


def test_16_fails_above_the_cg_bound_and_when_larger_lambda_needs_more_steps(tables):
    t = tables[16].copy()
    i = t.index[(t["kind"] == "error") & (t["Q"] == 3)][0]
    t.loc[i, "cg_error"] = 2 * t.loc[i, "cg_bound"]
    out = m.judge16(t, "test")
    assert out.verdict == "fails" and "violated" in out.detail and out.worst_tightness == pytest.approx(2.0)
    t = tables[16].copy()
    lam_max = t["lam"].max()
    t.loc[t["lam"] == lam_max, "cg_error"] = 0.5  # the largest lambda never reaches eps; the bound still covers it
    t.loc[t["lam"] == lam_max, "cg_bound"] = 1.0
    out = m.judge16(t, "test")
    assert out.verdict == "fails" and "fewer CG steps for larger lambda fails" in out.detail


def _medians(Ns, lo, hi=None):
    return pd.DataFrame({"lo": lo, "hi": lo if hi is None else hi}, index=pd.Index(Ns, name="N"), dtype=float)


def test_monotone_on_bracketed_medians():
    assert m._monotone(_medians([1, 2, 4], [100, 60, 50]), -1, 0.1, "x")[0] == "holds"
    assert m._monotone(_medians([1, 2, 4], [100, 60, 65]), -1, 0.1, "x")[0] == "holds"  # within tol of the min
    assert m._monotone(_medians([1, 2, 4], [100, 60, 67]), -1, 0.1, "x")[0] == "fails"  # 67 > 1.1 * 60
    assert m._monotone(_medians([1, 2, 4], [100, 60, 70]), -1, 0.1, "x")[0] == "fails"
    assert m._monotone(_medians([1, 2, 4], [100, 100, 100]), -1, 0.1, "x")[0] == "fails"  # flat: no decrease
    # censored: N = 1 not reached within 80 iterations: (80, inf); 75 at N = 2 is not below it by the factor 1.1
    assert m._monotone(_medians([1, 2], [80, 75], [np.inf, 75]), -1, 0.1, "x")[0] == "inconclusive"
    assert m._monotone(_medians([1, 2], [80, 70], [np.inf, 70]), -1, 0.1, "x")[0] == "holds"
    assert m._monotone(_medians([1, 2, 3], [1, 5, 9]), +1, 0.1, "x")[0] == "holds"
    assert m._monotone(_medians([1, 2, 3], [1, 5, 2]), +1, 0.1, "x")[0] == "fails"


def test_u_shape_on_bracketed_medians():
    assert m._u_shape(_medians([1, 2, 4, 8], [20, 10, 12, 30]), 0.1)[0] == "holds"
    assert m._u_shape(_medians([1, 2, 4, 8], [5, 10, 12, 30]), 0.1)[0] == "fails"
    assert m._u_shape(_medians([1, 2, 4, 8], [40, 30, 20, 10]), 0.1)[0] == "fails"
    assert m._u_shape(_medians([1, 2, 4], [10.5, 10, 30]), 0.1)[0] == "inconclusive"
    assert m._u_shape(_medians([1, 4], [20, 10]), 0.1)[0] == "inconclusive"
    # censored end: (9, inf) vs an interior 10 cannot decide
    assert m._u_shape(_medians([1, 2, 4], [9, 10, 30], [np.inf, 10, 30]), 0.1)[0] == "inconclusive"

