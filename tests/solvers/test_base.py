"""The generic loop: budgets, reproducibility, divergence records, row layout, and one conformance test that
every registered solver passes."""

import math

import numpy as np
import pandas as pd
import pytest

from convtheory.problems.anil import ANILTasks
from convtheory.problems.bilevel_quadratic import QuadraticBilevel
from convtheory.problems.quadratic import QuadraticTasks
from convtheory.solvers import COLUMNS, MAML, SOLVERS, Budget, Sampling, diverged_at, run
from convtheory.solvers.trace import DIVERGENCE_FACTOR
from convtheory.types import InvalidArgumentError, InvalidTypeError

ISOTROPIC = QuadraticTasks(d=3, mu=1.0, L=1.0)  # A_i = C_i = I: meta-Hessian (1 - alpha)^(2N) I, exactly


def test_budget_needs_a_limit_and_valid_values():
    with pytest.raises(InvalidArgumentError, match="at least one"):
        Budget()
    with pytest.raises(InvalidArgumentError, match="iterations"):
        Budget(iterations=-1)
    with pytest.raises(InvalidArgumentError, match="seconds"):
        Budget(seconds=float("nan"))


def test_iteration_budget_and_eval_every():
    """K steps give rows at 0, every eval_every, and K; oracle counts are exactly K times MAML's per-step cost."""
    B, N = 4, 2
    tr = run(MAML(alpha=0.2, beta=0.5, N=N, sampling=Sampling(B=B)), QuadraticTasks(d=3), Budget(iterations=7),
             seed=0, eval_every=3, eval_tasks=8)
    assert tr["iteration"].tolist() == [0, 3, 6, 7]
    assert tr["oracle_grad"].tolist() == [k * B * (N + 1) for k in (0, 3, 6, 7)]
    assert tr["oracle_hvp"].tolist() == [k * B * N for k in (0, 3, 6, 7)]
    assert (tr["oracle_jvp"] == 0).all() and (tr["oracle_fn"] == 0).all()
    assert tr["wall_time"].is_monotonic_increasing and tr["wall_time"].iloc[0] == 0.0


def test_oracle_budget_is_respected_and_tight():
    """A step is taken only if its (constant) cost fits: final calls <= budget < final calls + one step."""
    per_step = 4 * 3 + 4 * 2  # B(N+1) gradients + BN Hessian-vector products
    tr = run(MAML(alpha=0.2, beta=0.5, N=2, sampling=Sampling(B=4)), QuadraticTasks(d=3),
             Budget(oracle_calls=205), seed=0, eval_tasks=8)
    total = int((tr[["oracle_grad", "oracle_hvp", "oracle_jvp", "oracle_fn"]].iloc[-1]).sum())
    assert total <= 205 < total + per_step
    assert tr["iteration"].iloc[-1] == 10


def test_first_limit_reached_stops_the_run():
    tr = run(MAML(alpha=0.2, beta=0.5, N=1, sampling=Sampling(B=2)), QuadraticTasks(d=2),
             Budget(iterations=3, oracle_calls=10**6), seed=0, eval_tasks=4)
    assert tr["iteration"].iloc[-1] == 3


def test_seconds_budget_counts_step_time_only():
    tr = run(MAML(alpha=0.2, beta=0.5, N=1, sampling=Sampling(B=2)), QuadraticTasks(d=2), Budget(seconds=0.05),
             seed=0, eval_tasks=4)
    w = tr["wall_time"].to_numpy()
    assert w[-1] >= 0.05 and (len(w) < 2 or w[-2] < 0.05)


@pytest.mark.parametrize("sampling", [Sampling(B=2, num_tasks=6), Sampling(mode="resample", B=3)])
def test_same_seed_same_trace_other_seed_differs(sampling):
    cfg = MAML(alpha=0.2, beta=0.5, N=1, sampling=sampling)
    runs = [run(cfg, QuadraticTasks(d=3), Budget(iterations=4), seed=s, eval_tasks=16) for s in (3, 3, 4)]
    a, b, c = (r.drop(columns="wall_time") for r in runs)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["grad_norm"], c["grad_norm"])


def test_divergence_is_recorded_at_the_predicted_iteration():
    """Isotropic tasks, meta-GD with |1 - beta h| = 3: the loss is L* + 9^k (L_0 - L*) exactly, so the run must stop
    (returning normally) at the first k with L_k > 1e12 max(|L_0|, 1), every earlier loss matching the formula."""
    alpha, N = 0.3, 1
    h = (1 - alpha) ** (2 * N)
    tr = run(MAML(alpha=alpha, beta=4.0 / h, N=N, sampling=Sampling(B=8)), ISOTROPIC, Budget(iterations=100),
             seed=0, eval_tasks=4)
    L0, g0 = tr["train_loss"].iloc[0], tr["grad_norm"].iloc[0]
    excess0 = g0**2 / (2 * h)  # L_0 - L* for the quadratic h/2 ||theta - theta*||^2
    k = np.arange(100)
    predicted_loss = (L0 - excess0) + excess0 * 9.0**k
    k_div = int(np.argmax(predicted_loss > DIVERGENCE_FACTOR * max(abs(L0), 1.0)))
    assert diverged_at(tr) == k_div == tr["iteration"].iloc[-1]
    assert tr["diverged"].sum() == 1 and bool(tr["diverged"].iloc[-1])
    np.testing.assert_allclose(tr["train_loss"], predicted_loss[: k_div + 1], rtol=1e-9)


def test_non_finite_parameters_stop_the_run_quietly():
    tr = run(MAML(alpha=0.3, beta=1e300, N=1, sampling=Sampling(B=2)), QuadraticTasks(d=2), Budget(iterations=50),
             seed=0, eval_tasks=4)
    k = diverged_at(tr)
    assert k is not None and k <= 3 and len(tr) == k + 1
    assert math.isnan(tr["grad_norm"].iloc[-1]) or tr["grad_norm"].iloc[-1] > 1e100


def test_no_divergence_reports_none():
    tr = run(MAML(alpha=0.2, beta=0.5, N=1, sampling=Sampling(B=2)), QuadraticTasks(d=2), Budget(iterations=3),
             seed=0, eval_tasks=4)
    assert diverged_at(tr) is None and not tr["diverged"].any()


def test_run_rejects_bad_arguments():
    cfg = MAML(sampling=Sampling(B=2))
    with pytest.raises(InvalidTypeError, match="solver"):
        run("maml", QuadraticTasks(d=2), Budget(iterations=1), seed=0)
    with pytest.raises(InvalidTypeError, match="Budget"):
        run(cfg, QuadraticTasks(d=2), 5, seed=0)
    with pytest.raises(InvalidTypeError, match="seed"):
        run(cfg, QuadraticTasks(d=2), Budget(iterations=1), seed=1.5)
    with pytest.raises(InvalidTypeError, match="task family"):
        run(cfg, QuadraticBilevel(p=2, q=3), Budget(iterations=1), seed=0)
    with pytest.raises(InvalidTypeError, match="bilevel"):
        run(SOLVERS["aid-bio"](), QuadraticTasks(d=2), Budget(iterations=1), seed=0)
    with pytest.raises(InvalidArgumentError, match="eval_every"):
        run(cfg, QuadraticTasks(d=2), Budget(iterations=1), seed=0, eval_every=0)


# ------------------------------------------------------------------------------------- registry conformance
def _problem_for(name):
    if name == "anil":
        return ANILTasks(d=3, width=2, S=5, D=5)
    if name in ("aid-bio", "aid-bio-neumann", "itd-bio", "stocbio", "esj", "esj-s", "mrbo", "vrbo"):
        return QuadraticBilevel(p=2, q=3, mu=0.5, L=1.0)
    return QuadraticTasks(d=3)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_registered_solver_conforms(name):
    """Every registry entry: default config runs 3 steps on a suitable problem, names itself, records every
    column (metrics exact, finite), counts oracles monotonically, and does not diverge."""
    cls = SOLVERS[name]
    fields = cls.__dataclass_fields__
    cfg = cls(sampling=Sampling(B=3)) if "sampling" in fields else cls(N=5) if "N" in fields else cls()
    tr = run(cfg, _problem_for(name), Budget(iterations=3), seed=1, eval_tasks=8)
    assert cfg.method == cls.name == name
    assert list(tr.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert all(c.startswith("cfg_") for c in tr.columns[len(COLUMNS):])
    assert {"cfg_alpha", "cfg_beta"} | ({"cfg_N"} if "N" in fields else set()) <= set(tr.columns)
    assert len(tr) == 4 and (tr["method"] == name).all() and not tr["diverged"].any()
    assert (tr["grad_norm_kind"] == "exact").all()
    assert np.isfinite(tr[["grad_norm", "train_loss", "alpha", "beta"]].to_numpy(float)).all()
    calls = tr[["oracle_grad", "oracle_hvp", "oracle_jvp"]].sum(axis=1).to_numpy()
    assert np.all(np.diff(calls) > 0)
    assert tr["direction_norm"].iloc[:3].notna().all() and math.isnan(tr["direction_norm"].iloc[3])
