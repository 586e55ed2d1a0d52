"""Figure 10 on Omniglot: the profiles configure valid runs (the cpu profile is experiments.fewshot_table's), the
curve loop trains exactly as convtheory.fewshot.train.train does, the verdicts report what the numbers say, and the
test profile runs end to end into a temporary folder (png, pdf, csv, tex) with a second call that reruns nothing."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from convtheory.sweep import ResultStore
from experiments import fewshot_curves as fc
from experiments import fewshot_table as ft
from experiments import registry


def test_no_experiment_is_registered_for_the_figures_command():
    assert not hasattr(fc, "EXPERIMENT")
    assert "fewshot_curves" not in registry()


def test_profiles_configure_valid_runs():
    from convtheory.fewshot.train import FewShotConfig

    for profile in fc.PROFILES:
        sp = fc.specs(profile)
        assert sorted({s.params["method"] for s in sp}) == sorted(fc.METHODS)
        assert len(sp) == len(fc.METHODS) * len(fc.DEFAULT_SEEDS[profile])
        for s in sp:
            p = s.params
            FewShotConfig(method=p["method"], ways=p["ways"], shots=p["shots"], **p["overrides"]).resolved()
    cpu = {s.params["method"]: s.params for s in fc.specs("cpu")}
    limits = {m: p["overrides"]["time_limit"] for m, p in cpu.items()}
    assert limits == {"maml": 240, "fomaml": 180, "reptile": 300}
    assert all(p["overrides"]["compile"] == "never" and p["overrides"]["eval_episodes"] == 600 for p in cpu.values())
    for m in ("maml", "fomaml"):
        o = cpu[m]["overrides"]
        assert (o["hidden"], o["outer_lr"], o["train_queries"]) == (32, 3e-3, 5)
        assert {k: v for k, v in o.items() if k != "log_every"} == ft.run_config("cpu", m, 5, 1)
    assert not {"hidden", "outer_lr", "train_queries"} & set(cpu["reptile"]["overrides"])  # package defaults
    assert all(p["val_episodes"] == 100 and p["val_every_seconds"] == 30 for p in cpu.values())
    assert [s.seed for s in fc.specs("cpu")] == [0, 0, 0] and len(fc.specs("cpu", seeds=[0, 1])) == 6


def test_curve_loop_trains_exactly_as_train_does():
    from convtheory.fewshot.train import FewShotConfig, train

    ds = ft._dataset(str(ft.DATA), 28, True)
    cfg = FewShotConfig(method="maml", hidden=8, queries=2, iterations=3, eval_episodes=2, eval_batch=2,
                        compile="never", outer_lr=1e-2, log_every=1)
    ref = train(cfg, ds, progress=False)
    c = fc.train_curve(cfg, ds, val_episodes=2, val_every=1)
    assert c.iterations == 3 and list(c.val["iteration"]) == [0, 1, 2, 3] and list(c.train["iteration"]) == [1, 2, 3]
    for k, v in ref.params.items():  # validating between steps changes nothing in the training
        assert torch.equal(v, c.params[k]), k
    np.testing.assert_array_equal(c.test.accuracies, ref.test.accuracies)
    np.testing.assert_allclose(c.train["loss"], ref.history["loss"])


def _fake(method, accs, config, val=((0, 0.2), (10, 0.5), (20, 0.8), (30, 0.9))):
    rows = [{"method": method, "kind": "val", "iteration": it, "seconds": float(it), "accuracy": a, "ci95": 0.01,
             "seed": 0, "diverged": False} for it, a in val]
    rows.append({"method": method, "kind": "test", "iteration": 30, "seconds": 30.0, "accuracy": float(np.mean(accs)),
                 "ci95": 0.0, "seed": 0, "diverged": False, "test_accuracies": json.dumps(list(accs)),
                 "iterations_run": 30, "train_seconds": 30.0, "eval_seconds": 1.0, "n_episodes": len(accs)})
    return [{**r, "config": json.dumps(config)} for r in rows]


def test_verdicts_report_what_the_paired_differences_say():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 1.0, 600)
    cfg = {"hidden": 32, "outer_lr": 3e-3}
    flat = ((0, 0.2), (10, 0.5), (20, 0.51), (30, 0.51))
    reptile = np.clip(base - 0.1, 0, 1)
    same = pd.DataFrame(_fake("maml", base, cfg) + _fake("fomaml", base - 0.005, cfg)
                        + _fake("reptile", reptile, {"hidden": 64, "outer_lr": 1e-3}, val=flat))
    v = fc.verdicts(same)
    assert "shows up here" in v["fomaml"] and "does not" not in v["fomaml"]
    assert "differs from MAML by -10.0" in v["reptile"] and "as a different fixed point would" in v["reptile"]
    assert "filters 32/64" in v["reptile"] and "cannot be laid to the fixed point alone" in v["reptile"]
    assert "still rising" in v["maml"] and "levelled off" in v["reptile"]
    unfinished = pd.DataFrame(_fake("maml", base, cfg) + _fake("reptile", reptile, cfg))
    assert "unfinished run, not figure 10's" in fc.verdicts(unfinished)["reptile"]
    far = pd.DataFrame(_fake("maml", base, cfg) + _fake("fomaml", base - 0.05, cfg) + _fake("reptile", base, cfg))
    v = fc.verdicts(far)
    assert "does not show up" in v["fomaml"] and "-5.0" in v["fomaml"]
    assert "indistinguishable" in v["reptile"] and "configurations differ" not in v["reptile"]
    s = fc.summarize(far)
    assert list(s["method"]) == list(fc.METHODS) and s["accuracy"].iloc[0] == pytest.approx(100 * base.mean())
    assert fc.verdicts(pd.DataFrame(_fake("fomaml", base, cfg)))["fomaml"].startswith("no verdict")


def test_test_profile_end_to_end_writes_the_figure_and_a_second_call_reruns_nothing(tmp_path):
    paths = dict(results=tmp_path / "res", figures=tmp_path / "fig", tables=tmp_path / "tab")
    rc = fc.main(["--profile", "test", "--no-progress", "--results", str(paths["results"]),
                  "--figures", str(paths["figures"]), "--tables", str(paths["tables"])])
    assert rc == 0
    for ext in ("png", "pdf", "csv"):
        assert (paths["figures"] / f"fewshot_curves.{ext}").stat().st_size > 0, ext
    csv = paths["figures"] / "fewshot_curves.csv"
    curves = pd.read_csv(csv)
    assert list(curves.columns) == list(fc.CURVE_COLUMNS)
    assert sorted(curves["method"].unique()) == sorted(fc.METHODS)
    for m in fc.METHODS:
        for kind in ("train", "val"):
            c = curves[(curves["method"] == m) & (curves["kind"] == kind)]
            assert len(c) >= 2 and c["iteration"].is_monotonic_increasing and c["iteration"].is_unique
            assert c["seconds"].is_monotonic_increasing and c["seconds"].iloc[-1] > 0
        val = curves[(curves["method"] == m) & (curves["kind"] == "val")]
        assert list(val["iteration"]) == [0, 2, 4] and (val["n_episodes"] == 10).all()
        test = curves[(curves["method"] == m) & (curves["kind"] == "test")]
        assert len(test) == 1 and test["iteration"].iloc[0] == 4 and test["n_episodes"].iloc[0] == 10
        assert 0 <= test["accuracy"].iloc[0] <= 100 and test["ci95"].iloc[0] > 0
    tex = (paths["tables"] / "fewshot_curves.tex").read_text()
    for word in ("MAML", "FO-MAML", "Reptile", "Verdict", "paired", r"\begin{longtable}", "profile test"):
        assert word in tex, word

    store = ResultStore(paths["results"] / "test")
    before = {k: store.path(k).stat().st_mtime_ns for k in store.keys()}
    assert len(before) == len(fc.METHODS)
    report = fc.make_figure("test", progress=False, **paths)
    assert report["ran"] == () and len(report["cached"]) == len(fc.METHODS) and not report["failed"]
    assert {k: store.path(k).stat().st_mtime_ns for k in store.keys()} == before
    pd.testing.assert_frame_equal(pd.read_csv(csv), curves)
