"""Predictions 1-7 (MAML on quadratic tasks): each entry at its test size, and each judge fails on a corrupted table."""

import math

import numpy as np
import pytest
from convtheory.sweep import run_sweep
from convtheory.theory.predictions import VERDICTS, evaluate, registry
from experiments.predictions import maml_exact as mx

REG = registry()
EXACT = {1, 2, 3, 5}
WORDS = {1: "slope", 2: "rel. diff", 3: "beta_max", 4: "N alpha_crit", 5: "alpha_crit", 6: "iterations slope",
         7: "slope"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return tmp_path_factory.mktemp("maml_exact_results")


@pytest.fixture(scope="module")
def tables(results):
    """The test-profile tables of every entry (the runs are shared with the evaluations below through the store)."""
    out = {}
    for n in range(1, 8):
        out[n] = run_sweep(REG[n].specs("test"), results / "test", executor="serial", progress=False).table
    return out


@pytest.mark.parametrize("n", range(1, 8))
def test_entry_at_test_size(n, results, tables):
    p = REG[n]
    assert p.number == n and p.judge.__module__ == mx.__name__
    out, sweep = evaluate(p, "test", results, executor="serial", progress=False)
    assert out.verdict in VERDICTS
    assert WORDS[n] in out.measured and out.predicted and out.detail
    if n in EXACT:
        assert p.constants == "exact"
        assert out.verdict == "holds", out.detail
    assert sweep["runs_ran"] == 0  # the fixture ran them: same specs, same store


def _judge(n, table):
    return REG[n].judge(table, "test")


def test_item1_numbers_and_corruptions(tables):
    t = tables[1]
    slow = t[t["start"] == "slowest"]
    # independent check of the recorded q: the largest |1 - alpha lambda| over the task's endpoints mu = 0.1, L = 1
    q = np.maximum(np.abs(1 - slow["alpha"] * 0.1), np.abs(1 - slow["alpha"] * 1.0))
    np.testing.assert_allclose(slow["q"], q, rtol=1e-15)
    np.testing.assert_allclose(slow["ratio"], q ** slow["N"], rtol=1e-9)
    assert (t.loc[t["N"] == 0, "ratio"] - 1).abs().max() < 1e-14
    # the slope of the slowest-eigenvector error, perturbed by -1e-6 per step, fails
    bad = t.copy()
    rows = bad["start"] == "slowest"
    bad.loc[rows, "ratio"] *= np.exp(-1e-6 * bad.loc[rows, "N"])  # below q^N, wrong slope
    out = _judge(1, bad)
    assert out.verdict == "fails" and "slope" in out.detail
    # a random start above q^N fails
    bad = t.copy()
    i = bad[(bad["start"] == "random0") & (bad["N"] == 8)].index[0]
    bad.loc[i, "ratio"] = 1.001 * bad.loc[i, "q"] ** 8
    out = _judge(1, bad)
    assert out.verdict == "fails" and "exceeds q^N" in out.detail


def test_item2_corruption(tables):
    t = tables[2]
    assert (t["path"] == "never").all() and t["N"].max() == 20
    bad = t.copy()
    bad.loc[bad.index[3], "rel_diff"] = 1e-10
    out = _judge(2, bad)
    assert out.verdict == "fails" and "1.00e-10" in out.detail


def test_item3_numbers_and_corruptions(tables):
    from convtheory.theory.quadratic import meta_smoothness_peak

    t = tables[3]
    # independent: beta_max for a spectrum inside [0, 1/alpha] is at least 2 / max_lambda lambda (1 - alpha lambda)^2N
    for r in t.itertuples():
        assert r.beta_hi >= 2 / meta_smoothness_peak(r.alpha, r.N) * (1 - 1e-12)
        assert r.beta_lo <= r.beta_exact <= r.beta_hi * (1 + 1e-12)
    bad = t.copy()  # the bracket moved just above the exact threshold
    bad["beta_lo"], bad["beta_hi"] = bad["beta_exact"] * (1 + 1e-6), bad["beta_exact"] * (1 + 2e-6)
    out = _judge(3, bad)
    assert out.verdict == "fails" and "misses" in out.detail
    bad = t.copy()  # beta_max flat in N: the slope check fails
    for col in ("beta_lo", "beta_exact", "beta_hi"):
        bad[col] = t[col] / t["N"] ** 0.9
    bad["beta_bound"] = np.nan
    out = _judge(3, bad)
    assert out.verdict == "fails" and "slope" in out.detail


@pytest.mark.parametrize("n", [4, 5])
def test_items_4_5_corruptions(n, tables):
    t = tables[n]
    bad = t.copy()
    bad["alpha_exact"] *= 1 + 1e-6
    assert _judge(n, bad).verdict == "fails"
    bad = t.copy()  # one converging run reported as growing
    i = bad[bad["final_ratio"] < 1].index[0]
    bad.loc[i, "final_ratio"] = 2.0
    out = _judge(n, bad)
    assert out.verdict == "fails" and "disagrees" in out.detail


def test_item4_limit_is_the_closed_form(tables):
    t = tables[4].groupby("N")["alpha_closed_form"].first()
    for N, a in t.items():
        assert N * a >= math.log(4) / 2 and N * a <= math.log(4) / 2 * math.exp(math.log(4) / (2 * N)) + 1e-12


def test_item6_corruptions(tables):
    t = tables[6]
    bad = t.copy()
    bad.loc[bad.index[0], "growth"] = 1.3
    assert _judge(6, bad).verdict == "fails"
    bad = t.copy()
    bad["iterations"] = t["iterations"] * t["N"]
    assert _judge(6, bad).verdict == "fails"


def test_item7_corruption(tables):
    t = tables[7]
    bad = t.copy()
    rows = bad["B"] == bad["B"].max()
    bad.loc[rows, ["floor", "floor_block"]] *= 1.5
    out = _judge(7, bad)
    assert out.verdict == "fails"


def test_inner_rate_run_uses_the_adaptation_loop():
    """The run's errors equal an independent dense computation: ||P^N delta|| with P = I - alpha A."""
    from convtheory.problems import QuadraticTasks

    df = mx.run_inner_rate({"d": 4, "mu": 0.2, "L": 1.0, "alpha_L": 1.5, "n_random": 2, "N_max": 6, "N_step": 3}, 5)
    A = QuadraticTasks(d=4, mu=0.2, L=1.0).sample(1, 5).exact["A"][0].numpy()
    lam, V = np.linalg.eigh(A)
    P = np.eye(4) - 1.5 * A
    slow = V[:, 0] if abs(1 - 1.5 * 0.2) >= abs(1 - 1.5) else V[:, -1]
    for r in df[df["start"] == "slowest"].itertuples():
        expect = np.linalg.norm(np.linalg.matrix_power(P, r.N) @ slow)
        assert math.isclose(r.ratio, expect, rel_tol=1e-12)


def test_meta_gradient_run_compiled_path():
    """The default-policy path (second call compiled under "auto") agrees with the closed form too."""
    from convtheory.hypergrad.meta import set_compile_policy

    old = set_compile_policy("never")  # keep the test fast; the compiled path runs in the quick profile
    try:
        df = mx.run_meta_gradient({"N": 3, "path": "default"}, 4)
    finally:
        set_compile_policy(old)
    assert len(df) == 2 and (df["rel_diff"] < 1e-12).all() and (df["policy"] == "never").all()
    d, B, aL = mx._instance(4, 3)
    assert (df["d"] == d).all() and (df["B"] == B).all() and 1 <= d <= 8 and 0.05 <= aL <= 1.95
