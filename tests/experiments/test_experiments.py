"""Every experiment at its test size: it runs, draws its figure, its verdict holds, and its data equal a direct
call of its run function."""

import pandas as pd
import pytest

from convtheory.sweep import resolve, run_sweep
from experiments import make_figures, registry

NAMES = sorted(registry())
VOLATILE = {"wall_time"}  # timings differ between calls


@pytest.mark.parametrize("name", NAMES)
def test_experiment_runs_draws_and_holds(name, tmp_path):
    report = make_figures([name], profile="test", results=tmp_path / "res", figures=tmp_path / "fig",
                          tables=tmp_path / "tab", executor="serial", progress=False)
    assert report[0]["runs_ran"] >= 1
    for ext in ("png", "pdf"):
        assert (tmp_path / "fig" / f"{name}.{ext}").stat().st_size > 1000
    if report[0]["holds"] is not None:
        assert report[0]["holds"], pd.read_csv(tmp_path / "fig" / f"{name}.csv").to_string()
    # the stored data of the first run equal a direct call of its run function
    spec = registry()[name].specs("test")[0]
    table = run_sweep([spec], tmp_path / "res" / "test", executor="serial", progress=False).table
    direct = resolve(spec.fn)(dict(spec.params), spec.seed)
    cols = [c for c in direct.columns if c not in VOLATILE]
    pd.testing.assert_frame_equal(table[cols].reset_index(drop=True), direct[cols].reset_index(drop=True))
