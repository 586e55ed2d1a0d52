"""Predictions 23 (warm start) and 24 (kappa exponents) at the test profile: verdicts, the runs' oracle counts against
the solvers' per-step costs, and judges that fail on corrupted tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from convtheory.sweep import run_sweep
from convtheory.theory.predictions import VERDICTS, evaluate
from experiments.predictions import bilevel_methods as bm

PRED = {p.number: p for p in bm.PREDICTIONS}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Each entry evaluated once at the test profile, with its (cached) table."""
    root = tmp_path_factory.mktemp("bilevel_methods")
    out = {}
    for n, p in PRED.items():
        outcome, sweep = evaluate(p, "test", root, executor="serial", progress=False)
        table = run_sweep(p.specs("test"), root / "test", executor="serial", progress=False).table
        out[n] = (outcome, sweep, table)
    return out


# ------------------------------------------------------------------------------------------------ item 23
def test_23_holds_at_test_size_with_exact_plateaus(evaluated):
    out, sweep, table = evaluated[23]
    assert out.verdict in VERDICTS
    assert out.verdict == "holds", out.detail
    assert "warm AID" in out.measured and "cold AID plateau" in out.measured and "ITD" in out.measured
    assert sweep["runs_diverged"] == 0
    # the plateau ratio between D = 15 and 20 is (1 - alpha mu)^10 to within the tolerance
    assert abs(out.worst_tightness - 1) <= bm.TOL23_RATIO
    assert "matched to rel" in out.detail


def test_23_plateaus_in_the_table_equal_the_closed_forms(evaluated):
    """Each run's last iterate against convtheory.theory.warm_start (independent of the judge's bookkeeping)."""
    from convtheory.theory import warm_start as ws

    _, _, table = evaluated[23]
    params = {k: table[k].iloc[0] for k in bm.FIXED23}
    prob = bm._family(params).build(0)
    H, B, b, ybar, gamma, y0 = bm._matrices(prob)
    last = table.sort_values("iteration").groupby(["method", "warm", "N"])["g2"].last()
    assert last[("aid-bio", False, 15)] == pytest.approx(ws.aid_cold_start_plateau(1.0, 15, H, B, b, ybar, gamma, y0),
                                                         rel=1e-8)
    assert last[("itd-bio", True, 20)] == pytest.approx(ws.itd_warm_start_plateau(1.0, 20, H, B, b, ybar, gamma),
                                                        rel=1e-8)
    assert last[("aid-bio", True, bm.D_WARM)] < 1e-12  # warm AID reaches the stationary point


def _with(table, mask, column, fn):
    """A copy of the table with ``fn(rows)`` written into ``column`` on the masked rows."""
    t = table.copy()
    if pd.api.types.is_integer_dtype(t[column]):
        t[column] = t[column].astype(np.float64)
    t.loc[mask, column] = fn(t.loc[mask])
    return t


def test_23_judge_fails_on_corrupted_tables(evaluated):
    _, _, table = evaluated[23]
    warm = (table["method"] == "aid-bio") & table["warm"].astype(bool)
    # warm AID that plateaus instead of converging: running average no longer ~ 1/K
    t = _with(table, warm, "g2", lambda s: np.full(len(s), 0.1))
    out = bm.judge23(t, "test")
    assert out.verdict == "fails" and "running-average slope" in out.detail
    # a cold plateau 1 % off its exact closed form
    cold15 = (table["method"] == "aid-bio") & ~table["warm"].astype(bool) & (table["N"] == 15)
    out = bm.judge23(_with(table, cold15, "g2", lambda s: s["g2"] * 1.01), "test")
    assert out.verdict == "fails" and "vs exact" in out.detail
    # an ITD plateau that falls too slowly in D: the ratio law breaks (and so does the exact match)
    itd20 = (table["method"] == "itd-bio") & (table["N"] == 20)
    out = bm.judge23(_with(table, itd20, "g2", lambda s: s["g2"] * 1.5), "test")
    assert out.verdict == "fails" and "plateau ratio" in out.detail
    # without D >= 15 pairs the ratio law cannot be judged
    out = bm.judge23(table[table["N"] < 20], "test")
    assert out.verdict == "inconclusive" and "cannot be judged" in out.detail
    # a diverged run is a failure
    out = bm.judge23(_with(table, table.index == table.index[0], "diverged", lambda s: True), "test")
    assert out.verdict == "fails" and "diverged" in out.detail


def test_running_average_slope_of_geometric_and_constant_sequences():
    s, c = bm._running_average_slope(0.5 ** np.arange(200))
    assert s == pytest.approx(-1.0, abs=1e-6) and c == pytest.approx(2.0, rel=1e-9)
    s, _ = bm._running_average_slope(np.full(200, 3.0))
    assert s == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ item 24
def test_24_holds_at_test_size(evaluated):
    out, sweep, table = evaluated[24]
    assert out.verdict in VERDICTS
    assert out.verdict == "holds", out.detail
    for m in ("AID", "ITD", "stocBiO"):
        assert m in out.measured
    assert "HV_g" in out.measured and "<= " in out.predicted
    assert 0 < out.median_tightness <= out.worst_tightness <= 1.0
    assert not table["K"].isna().any() and not table["diverged"].any()


def test_24_counts_are_iterations_times_the_per_step_costs(evaluated):
    """Exact bookkeeping: AID-BiO spends N gradients of g and Q + 1 HVPs (warm CG) per step after the first (Q),
    ITD-BiO N of each,
    stocBiO's per-sample counts are per-call counts times the theory batch sizes."""
    _, _, table = evaluated[24]
    for r in table.itertuples():
        K, N, Q = int(r.K), int(r.N), int(r.Q)
        assert r.Gc_f == (K if r.method != "stocbio" else K * bm.batch_sizes(r.kappa, r.eps)["D"])
        if r.method == "aid-bio":
            assert (r.Gc_g, r.HV_g, r.JV_g) == (K * N, K * (Q + 1) - 1, K)  # step 1: CG from v = 0, Q HVPs
        elif r.method == "itd-bio":
            assert r.Gc_g == r.HV_g == r.JV_g == K * N
        else:
            bs = bm.batch_sizes(r.kappa, r.eps)
            assert (r.Gc_g, r.HV_g, r.JV_g) == (K * N * bs["S"], K * Q * bs["D"], K * bs["D"])
        # accurate hypergradients: the first k with ||grad Phi||^2 <= eps is that of GD with the exact one
        assert abs(K - r.K_gd) <= 1


def test_24_start_has_the_requested_gap_along_the_slowest_direction():
    prob = bm._family({**bm.FIXED24, "mu": 0.25, "L": 1.0}).build(3)
    moved, g0sq, mu_phi = bm._start_at_gap(prob, 0.7)
    phi = moved.extra["phi"]
    assert float(phi(moved.x0)) - moved.extra["Phi_star"] == pytest.approx(0.7, rel=1e-9)
    assert g0sq == pytest.approx(2 * mu_phi * 0.7, rel=1e-9)
    assert mu_phi == pytest.approx(prob.constants.extra["mu_Phi"], rel=1e-9)


def test_24_judge_fails_on_corrupted_tables(evaluated):
    _, _, table = evaluated[24]
    aid = table["method"] == "aid-bio"
    # AID HVP counts growing like kappa^3 faster: slope ~ 4.8 > 3.5 (by more than 2 standard errors)
    out = bm.judge24(_with(table, aid, "HV_g", lambda s: s["HV_g"] * s["kappa"] ** 3), "test")
    assert out.verdict == "fails" and "aid-bio HV_g" in out.detail and out.worst_tightness > 1
    # iterations growing like kappa^3 (the general-g rate) break the quadratic-g bound 2
    out = bm.judge24(_with(table, aid, "K", lambda s: 10.0 * s["kappa"] ** 3), "test")
    assert out.verdict == "fails" and "aid-bio K" in out.detail
    # a slope above its bound by less than 2 standard errors: inconclusive
    itd = table["method"] == "itd-bio"  # slope 4.04 +- 0.65 at kappa 2, 3, 4
    noisy = _with(table, itd, "Gc_g", lambda s: s["kappa"] ** 4.3 * np.array([1.0, 1.3, 0.8])[: len(s)])
    out = bm.judge24(noisy, "test")
    assert out.verdict == "inconclusive" and "itd-bio Gc_g" in out.detail
    # a run that never reached eps
    out = bm.judge24(_with(table, table.index == table.index[-1], "K", lambda s: math.nan), "test")
    assert out.verdict == "inconclusive" and "did not reach eps" in out.detail


def test_slope_fit_and_exponent_bounds():
    x = np.log([2.0, 4.0, 8.0])
    s, se = bm._slope(x, 3.0 * x + 1.0)
    assert s == pytest.approx(3.0) and se == pytest.approx(0.0, abs=1e-12)
    assert bm._slope(x[:2], x[:2])[1] == math.inf
    assert bm.exponent_bound("aid-bio", "HV_g") == 3.5 and bm.exponent_bound("itd-bio", "Gc_g") == 4
    assert bm.exponent_bound("stocbio", "Gc_g") == 9 and bm.exponent_bound("stocbio", "K") == 2
    assert isinstance(bm.judge24(pd.DataFrame(columns=["method", "kappa", "K", "cap", "diverged"]), "test").verdict,
                      str)
