"""Sweeps: run identity, the atomic store, resuming, executors agreeing, failures reported."""

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from convtheory.sweep import CorruptResultWarning, ResultStore, RunSpec, grid, run_sweep
from convtheory.types import InvalidArgumentError

FN = "tests.sweep.toy:gd_run"


def specs(sleep=0.0, n_alpha=4, seeds=(0, 1)):
    return grid("toy", FN, {"alpha": list(np.linspace(0.2, 2.4, n_alpha))}, seeds=seeds,
                fixed={"L": 1.0, "sleep": sleep})


def strip(table):
    return table.sort_values(["run_key", "iteration"]).reset_index(drop=True)


def test_keys_identify_configs():
    a, b = RunSpec("e", FN, {"alpha": 0.1, "L": 1.0}, 0), RunSpec("e", FN, {"L": 1.0, "alpha": 0.1}, 0)
    assert a.key() == b.key()  # parameter order does not matter
    assert a.key() != RunSpec("e", FN, {"alpha": 0.1, "L": 1.0}, 1).key()
    assert a.key() != RunSpec("e", FN, {"alpha": 0.2, "L": 1.0}, 0).key()
    assert a.name == "e[L=1.0,alpha=0.1,seed=0]"
    with pytest.raises(InvalidArgumentError, match="does not resolve"):
        RunSpec("e", "tests.sweep.toy:nope").key()
    with pytest.raises(InvalidArgumentError, match="not finite"):
        RunSpec("e", FN, {"alpha": float("nan")}).key()
    with pytest.raises(InvalidArgumentError, match="grid axis 'alpha' must be a non-empty list"):
        grid("e", FN, {"alpha": []})


def test_resume_recomputes_nothing_and_diverged_runs_are_listed(tmp_path):
    first = run_sweep(specs(), tmp_path, executor="serial", progress=False)
    assert len(first.ran) == 8 and not first.cached and not first.failed
    # alpha L > 2 diverges: alpha in {0.2, 0.93, 1.67, 2.4}, only 2.4 (2 seeds)
    assert len(first.diverged) == 2
    again = run_sweep(specs(), tmp_path, executor="serial", progress=False)
    assert not again.ran and len(again.cached) == 8
    pd.testing.assert_frame_equal(strip(first.table), strip(again.table), check_exact=True)
    assert set(first.table.columns) >= {"iteration", "grad_norm", "alpha", "L", "seed", "run_key", "experiment"}


def test_local_pool_equals_serial(tmp_path):
    serial = run_sweep(specs(), tmp_path / "a", executor="serial", progress=False)
    local = run_sweep(specs(), tmp_path / "b", executor="local", workers=2, progress=False)
    assert len(local.ran) == 8
    pd.testing.assert_frame_equal(strip(serial.table), strip(local.table), check_exact=True)


SOLVER_SPECS = grid("det", "convtheory.sweep.runners:solver_run",
                    {"solver_params": [{"alpha": 0.1, "beta": 0.5, "N": 3}, {"alpha": 0.2, "beta": 1.0, "N": 2}]},
                    seeds=(0, 1), fixed={"solver": "maml", "family": "quadratic", "family_params": {"d": 4},
                                         "iterations": 15})


def test_dask_executor_equals_local_bitwise(tmp_path):
    """Same seed, same numbers: a real solver sweep (MAML on quadratic tasks) gives bitwise-identical traces on the
    local pool and on a Dask LocalCluster (wall_time aside)."""
    local = run_sweep(SOLVER_SPECS, tmp_path / "a", executor="local", workers=2, progress=False)
    dask = run_sweep(SOLVER_SPECS, tmp_path / "b", executor="dask", workers=2, progress=False)
    assert len(dask.ran) == 4 and not dask.failed
    cols = [c for c in local.table.columns if c not in ("wall_time", "solver_params", "family_params")]
    pd.testing.assert_frame_equal(strip(local.table)[cols], strip(dask.table)[cols], check_exact=True)


def test_two_sweeps_on_one_store_do_not_corrupt_each_other(tmp_path):
    """Two processes pointed at the same results folder at once: every run ends whole and readable, once."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(tmp_path)], env=env) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptResultWarning)
        res = run_sweep(specs(sleep=0.5, n_alpha=6, seeds=(0, 1, 2)), tmp_path, executor="serial", progress=False)
    assert not res.ran and len(res.cached) == 18 and res.table["run_key"].nunique() == 18
    assert not list(tmp_path.glob("*/.*.tmp"))  # no temporary file left behind


def test_failing_runs_are_reported_not_dropped(tmp_path):
    s = grid("bad", "tests.sweep.toy:failing_run", {"alpha": [0.1, 0.2]})
    res = run_sweep(s, tmp_path, executor="serial", progress=False)
    assert len(res.failed) == 2 and res.table.empty
    assert all("boom at alpha" in err for err in res.failed.values())


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_corrupt_result_is_reported_moved_aside_and_recomputed(tmp_path, damage):
    s = specs(n_alpha=1, seeds=(0,))
    run_sweep(s, tmp_path, executor="serial", progress=False)
    store = ResultStore(tmp_path)
    key = s[0].key()
    path = store.path(key)
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "flip": raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:],
                      "empty": b""}[damage])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_sweep(s, tmp_path, executor="serial", progress=False)
    assert any(issubclass(w.category, CorruptResultWarning) and key in str(w.message) for w in caught)
    assert res.ran == (key,)
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    assert store.load(key) is not None


SWEEP_SCRIPT = """
import sys
from tests.sweep.test_sweep import specs
from convtheory.sweep import run_sweep
run_sweep(specs(sleep=0.5, n_alpha=6, seeds=(0, 1, 2)), sys.argv[1], executor="local", workers=2, progress=False)
"""


def test_sigkill_at_random_moments_loses_nothing_and_recomputes_nothing(tmp_path):
    """Kill the whole sweep (its process group) 5 times at random moments, then finish it: every run present
    exactly once, no finished run recomputed, and the table equal to an uninterrupted sweep's."""
    root = tmp_path / "killed"
    rng = np.random.default_rng(0)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    store = ResultStore(root)
    done = []
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(root)], env=env, start_new_session=True)
        time.sleep(float(rng.uniform(2.5, 4.0)))  # spawning workers imports torch: ~2 s; 18 runs take 4.5 s more
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done.append(len(store.keys()))
    assert done[0] < 18 and done == sorted(done), done  # the kills did interrupt work in progress
    done_before = set(store.keys())
    final = run_sweep(specs(sleep=0.5, n_alpha=6, seeds=(0, 1, 2)), root, executor="serial", progress=False)
    assert not set(final.ran) & done_before, "a finished run was recomputed"
    assert len(final.ran) + len(final.cached) == 18
    assert final.table.groupby("run_key").size().eq(20).all() and final.table["run_key"].nunique() == 18
    clean = run_sweep(specs(sleep=0.0, n_alpha=6, seeds=(0, 1, 2)), tmp_path / "clean", executor="serial",
                      progress=False)
    cols = ["alpha", "seed", "iteration", "grad_norm", "diverged"]
    pd.testing.assert_frame_equal(
        final.table[cols].sort_values(cols[:3]).reset_index(drop=True),
        clean.table[cols].sort_values(cols[:3]).reset_index(drop=True))
    assert not any(p.name.endswith(".tmp") and p.stat().st_size == 0 for p in root.glob("*/*"))  # noqa: PIE


def test_dask_worker_that_dies_mid_sweep_loses_no_run(tmp_path):
    """A worker process dies inside a run; Dask reschedules it and the sweep finishes with every run present."""
    s = grid("die", "tests.sweep.toy:die_once_run", {"alpha": [0.2, 0.5, 0.9]},
             fixed={"L": 1.0, "marker": str(tmp_path / "marker")})
    res = run_sweep(s, tmp_path / "res", executor="dask", workers=2, progress=False)
    assert (tmp_path / "marker").exists()  # a worker did die
    assert not res.failed and len(res.ran) == 3 and res.table["run_key"].nunique() == 3


def test_a_module_level_version_bump_changes_the_key(monkeypatch):
    """Run modules mark a change of their output by bumping ``version``: on the function, or else module-level."""
    from tests.sweep import toy

    spec = RunSpec("toy", "tests.sweep.toy:gd_run", {"L": 1.0, "alpha": 0.5})
    before = spec.key()
    monkeypatch.setattr(toy, "version", toy.version + 1)
    assert spec.key() != before
    monkeypatch.setattr(toy.gd_run, "version", 7, raising=False)
    with_attr = spec.key()
    monkeypatch.setattr(toy, "version", toy.version + 1)
    assert spec.key() == with_attr  # the function's own version wins


def test_a_run_column_named_like_a_parameter_is_kept(tmp_path):
    """A run may report a column under a parameter's name (e.g. the value it actually used): the table keeps the
    run's column and, when they differ, the spec's value as ``param_<name>``."""
    specs = [RunSpec("toy", "tests.sweep.toy:gd_run", {"L": 1.0, "alpha": 0.5, "iteration": 99, "iterations": 3})]
    table = run_sweep(specs, tmp_path, executor="serial", progress=False).table
    assert table["iteration"].tolist() == [0, 1, 2] and (table["param_iteration"] == 99).all()
    assert (table["iterations"] == 3).all() and "param_iterations" not in table
