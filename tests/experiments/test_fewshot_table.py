"""The few-shot results table: the published rows as data (copied, tagged, complete), the test profile of the
training grid end to end into a temporary folder (CSV and LaTeX with measured, published and "not run" rows), a
second call that reuses the store, and a 20-way 1-shot run scored on the 20 official runs from its checkpoint."""

import math

import pandas as pd
import pytest

from convtheory.sweep import ResultStore
from experiments import fewshot_table as ft
from experiments import published, registry


def test_published_rows_are_complete_tagged_and_copied_exactly():
    t = published.published_table()
    assert list(t.columns) == list(published.COLUMNS)
    assert t["value"].notna().all() and t["source"].notna().all() and (t["source"].str.len() > 0).all()
    assert t["source"].str.contains("seed 001|THEORY.md|runs.py").all()
    assert t.duplicated(["paper", "method", "dataset", "ways", "shots", "metric"]).sum() == 0

    def one(**kw):
        sel = t
        for k, v in kw.items():
            sel = sel[sel[k] == v]
        assert len(sel) == 1, (kw, sel)
        return sel.iloc[0]

    maml = one(method="MAML", dataset="omniglot", ways=5, shots=1)
    assert (maml["value"], maml["ci"], maml["printed"]) == (98.7, 0.4, "98.7 ± 0.4")
    assert "seed 001" in maml["source"] and "[paper via iMAML table in slides]" in maml["source"]
    assert one(method="FO-MAML", dataset="omniglot", ways=20, shots=1)["value"] == 89.4
    assert one(method="Reptile", dataset="omniglot", ways=5, shots=5)["printed"] == "98.90 ± 0.10"
    assert one(method="iMAML-HF", dataset="omniglot", ways=20, shots=1)["value"] == 96.18
    assert one(method="ANIL", dataset="omniglot", ways=20, shots=5)["source"].endswith("[uncertain]")
    assert one(method="MAML", dataset="miniimagenet", ways=5, shots=1)["printed"] == "48.70 ± 1.84"
    assert one(method="meta-learner LSTM", dataset="miniimagenet", ways=5, shots=5)["value"] == 60.60
    assert one(method="ProtoNet (learn2learn)", dataset="miniimagenet", ways=5, shots=5)["value"] == 66.5
    assert math.isnan(one(method="Siamese nets", dataset="omniglot", ways=20, shots=1)["ci"])
    # the source prints "-" for MANN / MAML without convolutions at 20 ways: no row, nothing invented
    assert t[(t["method"] == "MANN, no conv") & (t["ways"] == 20)].empty
    runs = published.runs_rows().set_index("method")["value"].to_dict()
    assert runs == {"people": 4.5, "BPL": 3.3, "Siamese convnet": 8.0, "MHD nearest neighbour": 38.8}


def test_no_experiment_is_registered_for_the_figures_command():
    assert not hasattr(ft, "EXPERIMENT") and not hasattr(published, "EXPERIMENT")
    assert "fewshot_table" not in registry()


def test_profiles_configure_valid_runs():
    from convtheory.fewshot.train import FewShotConfig

    for profile in ft.PROFILES:
        for s in ft.specs(profile, mhd=False):
            p = s.params
            FewShotConfig(method=p["method"], ways=p["ways"], shots=p["shots"], **p["overrides"]).resolved()
    assert len(ft.specs("cpu", mhd=False)) == len(ft.METHODS) * 4
    assert [s.params["method"] for s in ft.specs("test", mhd=False)] == list(ft.TEST_METHODS)
    assert all(s.params["overrides"]["time_limit"] <= 480 for s in ft.specs("cpu", mhd=False))


def test_test_profile_end_to_end_writes_tables_and_a_second_call_reuses_the_store(tmp_path):
    paths = dict(results=tmp_path / "res", figures=tmp_path / "fig", tables=tmp_path / "tab")
    rc = ft.main(["--profile", "test", "--no-progress", "--results", str(paths["results"]),
                  "--figures", str(paths["figures"]), "--tables", str(paths["tables"])])
    assert rc == 0
    csv, runs_csv, texfile = (paths["figures"] / "fewshot_table.csv", paths["figures"] / "fewshot_table_runs.csv",
                              paths["tables"] / "fewshot_table.tex")
    table = pd.read_csv(csv)
    measured = table[table["row"] == "measured"]
    assert sorted(measured["family"]) == sorted(ft.TEST_METHODS)
    assert ((measured["ways"] == 5) & (measured["shots"] == 1)).all()
    assert measured["accuracy"].between(0, 100).all() and (measured["iterations"] == 3).all()
    assert measured["source"].str.contains("profile test").all()
    assert (table["result"].notna() & (table["result"].astype(str).str.len() > 0)).all()  # never blank
    pub = table[table["row"] == "published"]
    assert ((pub["method"] == "MAML") & (pub["setting"] == "Omniglot 5-way 1-shot")
            & (pub["result"] == "98.7 ± 0.4")).sum() == 1
    mini = table[table["dataset"] == "miniimagenet"]
    assert set(mini.loc[mini["row"] != "published", "row"]) == {"not run: needs data"}
    assert mini.loc[mini["row"] != "published", "accuracy"].isna().all()  # nothing invented
    runs = pd.read_csv(runs_csv)
    mhd = runs[(runs["method"] == "MHD nearest neighbour") & (runs["row"] == "measured")]
    assert mhd["error"].iloc[0] == pytest.approx(38.75)  # README: 38.75% here, Lake et al. 38.8%
    assert "within-alphabet" in runs["protocol"].iloc[0]
    tex = texfile.read_text()
    for word in ("measured", "published", "not run: needs data", "miniImageNet", r"\begin{longtable}",
                 "20 official Omniglot one-shot runs"):
        assert word in tex, word
    ckpts = sorted((paths["results"] / "test" / ft.CHECKPOINT_DIR).glob("*.pt"))
    assert len(ckpts) == len(ft.TEST_METHODS)

    store = ResultStore(paths["results"] / "test")
    before = {k: store.path(k).stat().st_mtime_ns for k in store.keys()}
    report = ft.make_table("test", progress=False, **paths)
    assert report["ran"] == () and len(report["cached"]) == len(before) == len(ft.TEST_METHODS) + 1
    assert {k: store.path(k).stat().st_mtime_ns for k in store.keys()} == before
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)


def test_20_way_1_shot_run_scores_the_official_runs_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(ft.ENV_CHECKPOINTS, str(tmp_path))
    params = {"method": "protonet", "ways": 20, "shots": 1, "profile": "test", "device": "cpu",
              "overrides": dict(hidden=8, queries=2, iterations=1, eval_episodes=2, compile="never")}
    row = ft.run(params, 0)
    r = row.iloc[0]
    assert 0 <= r["runs_error"] <= 1 and r["test_episodes"] == 2 and r["iterations"] == 1
    assert r["checkpoint"].startswith(str(tmp_path)) and list(tmp_path.glob("protonet_20w1s_seed0_*.pt"))
    row["seed"] = 0
    runs = ft.build_runs_table(row, pd.DataFrame(), "test")
    best = runs[runs["row"] == "measured"].iloc[0]
    assert best["error"] == pytest.approx(100 * r["runs_error"]) and "ProtoNet" in best["method"]
    assert (runs["row"] == "published").sum() == 4
