"""The sweep-layer and few-shot throughput benchmarks at a tiny size: they run, pass their correctness gates and
write JSON and Markdown with the environment. No timing assertions."""

from __future__ import annotations

import json
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH.parent))

from benchmarks import fewshot_throughput, sweeps  # noqa: E402


def test_sweeps_overhead_part_runs(tmp_path):
    res = sweeps.main(["--runs", "2", "--rounds", "1", "--parts", "overhead", "--experiment", "maml_alpha",
                       "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sweeps.json").read_text())
    assert data["overhead"]["runs"] == 2 and data["overhead"]["direct_s"] > 0
    assert "cpu" in data["environment"] and res["overhead"]["sweep_s"] > 0
    assert "overhead" in (tmp_path / "sweeps.md").read_text()


def test_fewshot_throughput_gate_and_output(tmp_path):
    res = fewshot_throughput.main(["--quick", "--meta-batch", "2", "--rounds", "1", "--out", str(tmp_path)])
    rows = {r["variant"]: r for r in res["rows"]}
    assert set(rows) == {"loop over tasks (autograd)", "convtheory eager"}
    assert rows["convtheory eager"]["rel_err_vs_loop"] < 1e-4
    data = json.loads((tmp_path / "fewshot_throughput.json").read_text())
    assert data["setting"]["meta_batch"] == 2 and data["environment"]["device"] == "cpu"
