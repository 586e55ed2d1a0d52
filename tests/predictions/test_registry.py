"""The predictions framework: the registry, the runner, the command line, and every registered entry at its
smallest size (exact-constant entries must hold)."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from convtheory.theory.predictions import (CONSTANTS, VERDICTS, Outcome, Prediction, evaluate, evaluate_all,
                                           holds_within, ratio_stats, registry)
from convtheory.types import InvalidArgumentError

REG = registry()


def test_registry_is_keyed_by_number_and_well_formed():
    assert list(REG) == sorted(REG)
    for n, p in REG.items():
        assert p.number == n
        assert p.constants in CONSTANTS
        assert p.statement and p.theory and p.source and p.experiment
        assert p.tolerance > 0
        assert ":" in p.theory or "." in p.theory


@pytest.mark.parametrize("n", list(REG))
def test_entry_at_test_size(n, tmp_path):
    p = REG[n]
    out, sweep = evaluate(p, "test", tmp_path, executor="serial", progress=False)
    assert out.verdict in VERDICTS
    assert out.measured and out.predicted
    if p.constants == "exact":
        assert out.verdict == "holds", out.detail
    if out.verdict != "holds":
        assert out.detail, "a verdict other than holds must say where or why"
    # a second evaluation reuses every run
    _, again = evaluate(p, "test", tmp_path, executor="serial", progress=False)
    assert again["runs_ran"] == 0 and again["runs_cached"] == sweep["runs_ran"] + sweep["runs_cached"]


def test_bad_values_are_named():
    with pytest.raises(InvalidArgumentError, match="verdict"):
        Outcome("maybe", "m", "p")
    with pytest.raises(InvalidArgumentError, match=r"\[1, 28\]"):
        Prediction(29, "s", "e", "t", "src", "exact", 1e-9, specs=lambda p: [], judge=lambda t, p: None)
    with pytest.raises(InvalidArgumentError, match="constants"):
        Prediction(1, "s", "e", "t", "src", "guessed", 1e-9, specs=lambda p: [], judge=lambda t, p: None)
    with pytest.raises(InvalidArgumentError, match="unknown"):
        evaluate_all([99], "test", "/nonexistent", progress=False)


def test_helpers():
    assert holds_within([1.0, 2.0], [1.0, 2.0 + 1e-13], 1e-12)[0]
    ok, rel, i = holds_within([1.0, 2.5], [1.0, 2.0], 0.1)
    assert not ok and i == 1 and math.isclose(rel, 0.25)
    worst, med = ratio_stats([1.0, 3.0, 2.0], [2.0, 3.0, float("nan")])
    assert (worst, med) == (1.0, 0.75)


def test_command_line_json_and_exit_status(tmp_path):
    n = min(k for k, p in REG.items() if p.constants == "exact")
    cmd = [sys.executable, "-m", "convtheory.cli", "predictions", str(n), "--profile", "test", "--json",
           "--executor", "serial", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "fig"),
           "--tables", str(tmp_path / "tab")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert [row["number"] for row in obj["predictions"]] == [n]
    assert obj["predictions"][0]["verdict"] == "holds"
    assert pd.read_csv(tmp_path / "fig" / "predictions.csv")["number"].tolist() == [n]
    assert "longtable" in (tmp_path / "tab" / "predictions.tex").read_text()
    bad = subprocess.run(cmd[:4] + ["0"] + cmd[5:], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "[0]" in bad.stderr
