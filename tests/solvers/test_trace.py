"""Trace helpers: config columns, divergence detection, table assembly."""

import dataclasses

import pandas as pd
import torch

from convtheory.solvers import COLUMNS, MAML, Sampling, diverged_at
from convtheory.solvers.trace import config_columns, is_divergent, to_frame


def test_config_columns_flatten_nested_configs_and_tensors():
    cols = config_columns(MAML(alpha=torch.tensor(0.25, dtype=torch.float64), sampling=Sampling(B=5, S=3)))
    assert cols["cfg_alpha"] == 0.25 and cols["cfg_B"] == 5 and cols["cfg_S"] == 3
    assert cols["cfg_mode"] == "finite-sum" and "cfg_sampling" not in cols
    assert set(cols) == {"cfg_" + f.name for f in dataclasses.fields(MAML) if f.name != "sampling"} | {
        "cfg_" + f.name for f in dataclasses.fields(Sampling)}


def test_diverged_at_and_threshold():
    assert diverged_at(pd.DataFrame({"iteration": [0, 5, 10], "diverged": [False, False, True]})) == 10
    assert diverged_at(pd.DataFrame({"iteration": [0, 5], "diverged": [False, False]})) is None
    assert is_divergent(float("nan"), 1.0) and is_divergent(float("inf"), 1.0)
    assert is_divergent(2e12, 1.0) and not is_divergent(0.5e12, 1.0)
    assert is_divergent(-3e12, 0.0) and not is_divergent(1e12, 1e-5)  # floor: max(|reference|, 1)
    assert is_divergent(2e15, 1e3) and not is_divergent(0.9e15, -1e3)


def test_to_frame_orders_columns_and_types():
    row = dict.fromkeys(COLUMNS, 0)
    row.update(diverged=0, method="maml", grad_norm_kind="exact")
    df = to_frame([row, {**row, "iteration": 1, "diverged": 1}], {"cfg_x": 1})
    assert list(df.columns) == list(COLUMNS) + ["cfg_x"]
    assert df["diverged"].dtype == bool and df["iteration"].tolist() == [0, 1]
