"""The convtheory command as a user runs it (subprocess): main job output, JSON, and bad input."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "convtheory.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_json_reports_every_engine_and_bounds_hold():
    out = run("demo", "--json")
    assert out.returncode == 0, out.stderr
    tables = json.loads(out.stdout)
    bil = {r["method"] for r in tables["bilevel"]}
    assert bil == {"itd", "itd-forward", "aid-cg", "aid-neumann", "aid-fp", "esj", "exact"}
    for row in tables["bilevel"]:
        if row["kind"] == "exact":  # closed-form predictions are met to round-off
            assert abs(row["rel_error"] - row["predicted"]) <= 1e-9 * max(1.0, row["predicted"])
        if row["kind"] == "bound":
            assert row["holds"] is True
    meta = {r["method"]: r for r in tables["meta"] if r["N"] == 5}
    assert meta["maml"]["rel_distance_to_maml"] < 1e-12
    assert meta["hfmaml"]["rel_distance_to_maml"] < 1e-10
    assert meta["fomaml"]["rel_distance_to_maml"] > 1e-3  # first order: a real bias


def test_demo_tables_are_human_readable():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    assert "aid-cg" in out.stdout and "maml" in out.stdout


def test_bad_input_exits_2_with_one_line():
    out = run("demo", "--seed", "abc")
    assert out.returncode == 2
    assert "invalid int value: 'abc'" in out.stderr
    assert out.stderr.count("\n") == 1
    out = run("no-such-command")
    assert out.returncode == 2 and "invalid choice: 'no-such-command'" in out.stderr
