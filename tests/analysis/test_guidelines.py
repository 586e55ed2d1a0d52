"""convtheory.analysis.guidelines on gradient descent on f(w) = L w^2 / 2, whose exact threshold is alpha < 2/L."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from convtheory.analysis.guidelines import CLASSES, classify, conservativeness, converged_from, guideline_grid
from convtheory.theory import Guideline
from convtheory.types import InvalidArgumentError, InvalidTypeError

ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.45, 0.5, 0.55, 0.9, 1.0, 1.5, 1.9, 2.0, 2.5]
LS = [1.0, 4.0]
K = 300


def gd_quadratic(alpha: float, L: float, seed: int = 0) -> pd.DataFrame:
    """Run K steps of GD on f(w) = L w^2/2 from w0 = 1 + seed; record |f'(w)| and divergence (|w| > 1e8)."""
    w, rows = 1.0 + seed, []
    for k in range(K + 1):
        diverged = not abs(w) <= 1e8
        rows.append({"seed": seed, "iteration": k, "grad_norm": abs(L * w), "diverged": diverged})
        if diverged:
            break
        w = w - alpha * L * w
    return pd.DataFrame(rows)


def exactly_stable(alpha: float, L: float) -> bool:
    """Independent answer: GD on L w^2/2 contracts iff |1 - alpha L| < 1 (THEORY.md §1.1)."""
    return abs(1.0 - alpha * L) < 1.0


def test_exact_theory_matches_practice():
    table = guideline_grid(gd_quadratic, lambda alpha, L: alpha < 2.0 / L, {"alpha": ALPHAS, "L": LS})
    assert list(table.columns[:2]) == ["alpha", "L"] and len(table) == len(ALPHAS) * len(LS)
    assert list(zip(table["alpha"], table["L"]))[:2] == [(0.05, 1.0), (0.05, 4.0)]  # first key varies slowest
    expected = [exactly_stable(a, L) for a, L in zip(table["alpha"], table["L"])]
    assert table["converged"].tolist() == expected
    assert table["admissible"].tolist() == expected
    assert set(table["classification"]) == {"both", "neither"}
    # beyond 2/L the iterates blow up; at exactly 2/L they oscillate with constant size (not diverged, not converged)
    div = table["diverged"].tolist()
    assert div == [a * L > 2.0 for a, L in zip(table["alpha"], table["L"])]
    edge = table[(table["alpha"] == 0.5) & (table["L"] == 4.0)].iloc[0]
    assert not edge["converged"] and edge["final_ratio"] == 1.0 and not edge["diverged"]
    assert table["step_max"].isna().all()
    assert table.attrs == {"grid": ["alpha", "L"], "step": "alpha", "tol": 1e-3}


def test_conservative_guideline_is_practice_only_between_1_over_L_and_2_over_L():
    table = guideline_grid(gd_quadratic, lambda alpha, L: 1.0 / L, {"alpha": ALPHAS, "L": LS})
    for _, row in table.iterrows():
        a, L = row["alpha"], row["L"]
        want = "both" if a <= 1 / L else ("practice only" if a < 2 / L else "neither")
        assert row["classification"] == want, (a, L)
    assert (table["step_max"] == 1.0 / table["L"]).all()
    summ = conservativeness(table)
    assert summ["L"].tolist() == LS
    assert summ["largest_admissible"].tolist() == [1.0, 0.2]
    assert summ["largest_converged"].tolist() == [1.9, 0.45]
    assert summ["ratio"].tolist() == pytest.approx([1.9, 2.25], rel=1e-15)
    assert summ["ratio_to_step_max"].tolist() == pytest.approx([1.9, 1.8], rel=1e-15)
    assert summ["n_practice_only"].tolist() == [2, 2] and summ["n_theory_only"].tolist() == [0, 0]


def test_wrong_theory_is_theory_only():
    table = guideline_grid(gd_quadratic, lambda alpha, L: alpha < 3.0 / L, {"alpha": ALPHAS, "L": LS})
    theory_only = table[table["classification"] == "theory only"]
    assert sorted(zip(theory_only["alpha"], theory_only["L"])) == [(0.5, 4.0), (0.55, 4.0), (2.0, 1.0), (2.5, 1.0)]
    summ = conservativeness(table, step="alpha", by="L")
    assert summ["ratio"].tolist() == pytest.approx([1.9 / 2.5, 0.45 / 0.55], rel=1e-15)


def test_guideline_objects_bools_and_numbers():
    grid = {"alpha": [0.5, 1.5, 2.5], "L": [1.0]}
    by_guideline = guideline_grid(gd_quadratic, lambda alpha, L: Guideline(method="gd", alpha_max=1.0 / L), grid)
    assert by_guideline["classification"].tolist() == ["both", "practice only", "neither"]
    by_bool = guideline_grid(lambda alpha, L: exactly_stable(alpha, L), lambda alpha, L: True, grid)
    assert by_bool["classification"].tolist() == ["both", "both", "theory only"]
    assert by_bool["final_ratio"].isna().all() and by_bool["diverged"].isna().all()
    ratio = lambda alpha, L: abs(1 - alpha * L) ** K if abs(1 - alpha * L) <= 1 else math.inf  # noqa: E731
    by_number = guideline_grid(ratio, lambda alpha, L: 2.0 / L, grid)
    assert by_number["converged"].tolist() == [True, True, False]
    assert by_number["diverged"].tolist() == [False, False, True]


def test_converged_from_traces_with_seeds():
    two = pd.concat([gd_quadratic(0.5, 1.0, seed=0), gd_quadratic(0.5, 1.0, seed=1)])
    conv, ratio, div = converged_from(two)
    assert conv and not div and ratio == pytest.approx(0.5 ** K, rel=1e-12)
    one_bad = pd.concat([gd_quadratic(0.5, 1.0, seed=0), gd_quadratic(2.5, 1.0, seed=1)])
    conv, ratio, div = converged_from(one_bad)
    assert not conv and ratio == math.inf and div
    slow = gd_quadratic(0.01, 1.0)  # 0.99^300 = 0.049: decreasing but not below tol = 1e-3
    conv, ratio, _ = converged_from(slow)
    assert not conv and ratio == pytest.approx(0.99 ** K, rel=1e-12)
    assert converged_from(slow, tol=0.05)[0]


def test_classify_covers_the_four_cases():
    assert [classify(a, c) for a in (True, False) for c in (True, False)] == list(CLASSES)


def test_progress_bar_shows_only_when_large_or_asked(capsys):
    grid = {"alpha": [0.5, 1.5], "L": [1.0]}
    guideline_grid(lambda alpha, L: True, lambda alpha, L: True, grid)
    assert "guideline grid" not in capsys.readouterr().err
    guideline_grid(lambda alpha, L: True, lambda alpha, L: True, grid, disable=False)
    assert "guideline grid" in capsys.readouterr().err
    guideline_grid(lambda alpha, L: True, lambda alpha, L: True, grid, progress_min=2)
    assert "guideline grid" in capsys.readouterr().err


@pytest.mark.parametrize("call, exc, match", [
    (lambda: guideline_grid(gd_quadratic, lambda **p: True, {}), InvalidArgumentError, "empty"),
    (lambda: guideline_grid(gd_quadratic, lambda **p: True, {"alpha": []}), InvalidArgumentError, "alpha"),
    (lambda: guideline_grid(gd_quadratic, lambda **p: True, {"alpha": [0.1], "L": [1.0]}, step="beta"),
     InvalidArgumentError, "beta"),
    (lambda: guideline_grid(lambda **p: "ok", lambda **p: True, {"alpha": [0.1]}), InvalidTypeError, "str"),
    (lambda: guideline_grid(lambda **p: True, lambda **p: math.nan, {"alpha": [0.1]}), InvalidArgumentError, "NaN"),
    (lambda: guideline_grid(lambda **p: True, lambda **p: Guideline(method="x"), {"alpha": [0.1]}),
     InvalidArgumentError, "alpha_max = None"),
    (lambda: guideline_grid(lambda **p: pd.DataFrame({"iteration": [0]}), lambda **p: True, {"alpha": [0.1]}),
     InvalidArgumentError, "grad_norm"),
    (lambda: guideline_grid(lambda **p: True, lambda **p: True, [0.1]), InvalidTypeError, "dict"),
    (lambda: conservativeness(pd.DataFrame({"alpha": [0.1], "admissible": [True], "converged": [True],
                                            "classification": ["both"]})), InvalidArgumentError, "step"),
])
def test_invalid_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
