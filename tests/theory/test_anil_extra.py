"""convtheory.theory.anil.predicted_oracle_calls against the library's oracle accounting and explicit numbers."""

from __future__ import annotations

import pytest
import torch

from convtheory.hypergrad import meta_gradient
from convtheory.theory import anil as th
from convtheory.types import InvalidArgumentError


def test_predicted_oracle_calls_is_B_2N_plus_1_times_K():
    K = th.predicted_iterations(0.4, 2.0, 1e-2)
    assert K == pytest.approx(160.0)
    assert th.predicted_oracle_calls(3, 0.4, 2.0, 1e-2, B=5) == pytest.approx(5 * 7 * 160.0, rel=1e-15)
    assert th.predicted_oracle_calls(3, 0.4, 2.0, 1e-2, B=5) == pytest.approx(
        10 * th.predicted_cost(3, 0.4, 2.0, 1e-2, overhead=0.5), rel=1e-15)


@pytest.mark.parametrize("N", [1, 4])
def test_per_iteration_cost_matches_the_meta_gradient_accounting(N):
    B, d, k = 3, 4, 2
    g = torch.Generator().manual_seed(0)
    params = {"phi": torch.randn(d, k, generator=g, dtype=torch.float64),
              "u": torch.randn(k, generator=g, dtype=torch.float64)}
    X, y = torch.randn(B, 5, d, generator=g, dtype=torch.float64), torch.randn(B, 5, generator=g, dtype=torch.float64)

    def loss(p, data):
        x, t = data
        return 0.5 * ((torch.tanh(x @ p["phi"]) @ p["u"] - t) ** 2).mean()

    _, info = meta_gradient(loss, params, (X, y), (X, y), method="anil", inner_steps=N, inner_lr=0.1,
                            inner_params=("u",), compile="never")
    per_iter = info.oracle.grad + info.oracle.hvp
    # K = 1 iteration when 2 L Delta0 / eps = 1
    assert th.predicted_oracle_calls(N, 0.5, 1.0, 1.0, B) == pytest.approx(per_iter)


def test_bad_values_are_named():
    with pytest.raises(InvalidArgumentError, match="B"):
        th.predicted_oracle_calls(2, 0.4, 2.0, 1e-2, B=0)
    with pytest.raises(InvalidArgumentError, match="eps"):
        th.predicted_oracle_calls(2, 0.4, 2.0, 0.0, B=1)
