"""One generic loop runs any solver on any problem for a budget and records a Trace (:mod:`.trace`).

A solver is a frozen dataclass config (its fields are the algorithm's settings) with

- ``name`` (class attribute): its registry name; ``source(problem, seed, eval_tasks)``: the data source the
  steps draw from (:class:`~.sources.MetaSource` or :class:`~.sources.BilevelSource`);
- ``init(source, seed) -> state`` and ``step(state, source, gen) -> (state, StepInfo)``: the algorithm;
- ``params(state)`` (the outer variable), ``step_sizes(state) -> (alpha, beta)`` and
  ``metrics(state, source, iteration) -> Metrics``: what the loop records. Metrics are computed by the loop
  between steps and are excluded from ``wall_time``; the solver never sees them.

The loop (``run``): row 0 records the starting point; then while the budget allows, one timed step, its oracle
counts added, a divergence check on the parameters, and a row every ``eval_every`` steps (always at the last).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd
import torch

from ..problems.base import make_generator
from ..types import InvalidArgumentError, InvalidTypeError, OracleCount, check_int, check_positive
from . import trace as tr
from .sources import subseeds, vec


@dataclass(frozen=True)
class Budget:
    """When a run stops: after ``iterations`` steps, ``oracle_calls`` oracle calls, or ``seconds`` of step time.

    At least one limit must be given; the run stops at the first one reached. Oracle calls are
    grad + hvp + jvp + fn. A step is taken only if the calls after it, predicted from the previous step's cost,
    stay within ``oracle_calls`` (the first step is always taken), so a solver with a constant cost per step
    never exceeds the budget. ``seconds`` counts only time spent inside steps.
    """

    iterations: int | None = None
    oracle_calls: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.iterations is None and self.oracle_calls is None and self.seconds is None:
            raise InvalidArgumentError("Budget needs at least one of iterations, oracle_calls, seconds")
        if self.iterations is not None:
            check_int("iterations", self.iterations, minimum=0)
        if self.oracle_calls is not None:
            check_int("oracle_calls", self.oracle_calls, minimum=0)
        if self.seconds is not None:
            check_positive("seconds", self.seconds, allow_zero=True)

    def allows_step(self, k: int, calls: int, seconds: float, last_cost: int | None) -> bool:
        """Whether step k + 1 may be taken after k steps, ``calls`` oracle calls and ``seconds`` of step time."""
        if self.iterations is not None and k >= self.iterations:
            return False
        if self.seconds is not None and seconds >= self.seconds:
            return False
        if self.oracle_calls is not None:
            if calls >= self.oracle_calls:
                return False
            if last_cost is not None and calls + last_cost > self.oracle_calls:
                return False
        return True


def total_calls(count: OracleCount) -> int:
    """grad + hvp + jvp + fn."""
    return count.grad + count.hvp + count.jvp + count.fn


@dataclass(frozen=True)
class StepInfo:
    """What one step reports: the ``direction`` it moved along (its meta-/hypergradient estimate, in the shape
    of ``params``), the ``oracle`` calls it spent, and method-specific ``extra`` diagnostics."""

    direction: Any
    oracle: OracleCount
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    """Recorded at an iterate: ``grad`` (the objective's gradient, or None), its ``grad_kind`` ("exact" or
    "estimate"), ``train_loss`` and ``test_loss`` (NaN when not available)."""

    grad: Any
    grad_kind: str
    train_loss: float
    test_loss: float = math.nan


def _norm(tree: Any) -> float:
    return float(torch.linalg.vector_norm(vec(tree).double()))


def _finite(tree: Any) -> bool:
    return bool(torch.isfinite(vec(tree)).all())


def run(solver: Any, problem: Any, budget: Budget, seed: int, eval_every: int = 1,
        eval_tasks: int = 1000) -> pd.DataFrame:
    """Run ``solver`` on ``problem`` for ``budget``; return the Trace (columns: :mod:`convtheory.solvers.trace`).

    ``problem``: a task family (meta-learning solvers) or a bilevel problem / family / StochasticBilevel
    (bilevel solvers). ``seed``: an int; every random draw (task pools, batches, initial parameters, ES
    directions) derives from it, so the same seed gives the same Trace except ``wall_time``. ``eval_every``:
    record a row every this many steps (and always the first and last). ``eval_tasks``: held-out and
    estimation batch size for meta-learning. A diverging run returns normally with its last row marked.
    """
    for attr in ("init", "step", "metrics", "params", "step_sizes", "source", "method"):
        if not hasattr(solver, attr):
            raise InvalidTypeError(f"solver must be a solver config (see convtheory.solvers.SOLVERS); "
                                   f"{type(solver).__name__} has no {attr}()")
    if not isinstance(budget, Budget):
        raise InvalidTypeError(f"budget must be a Budget, got {type(budget).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidTypeError(f"seed must be an int, got {seed!r}")
    eval_every = check_int("eval_every", eval_every, minimum=1)

    source_seed, init_seed, step_seed = subseeds(seed, 3)
    source = solver.source(problem, source_seed, eval_tasks)
    state = solver.init(source, init_seed)
    gen = make_generator(step_seed)
    base = {"method": solver.method, "problem": type(problem).__name__, "seed": seed}

    rows: list[dict] = []
    pending = {"grad": None, "exact": False}  # the exact gradient at the last row's iterate
    calls = OracleCount()
    wall = 0.0
    ref_norm = _norm(solver.params(state))
    ref_loss: list[float] = []

    def record(k: int, state, diverged: bool) -> bool:
        """Append the row of iterate k; return True if the loss shows divergence."""
        alpha, beta = solver.step_sizes(state)
        row = {**base, "iteration": k, "alpha": float(alpha), "beta": float(beta),
               "oracle_grad": calls.grad, "oracle_hvp": calls.hvp, "oracle_jvp": calls.jvp,
               "oracle_fn": calls.fn, "wall_time": wall, "hypergrad_error": math.nan,
               "direction_norm": math.nan, "diverged": diverged}
        pending["grad"] = None
        if diverged:
            row.update(grad_norm=math.nan, grad_norm_kind="none", train_loss=math.nan, test_loss=math.nan)
            rows.append(row)
            return True
        m = solver.metrics(state, source, k)
        row.update(grad_norm=math.nan if m.grad is None else _norm(m.grad), grad_norm_kind=m.grad_kind,
                   train_loss=float(m.train_loss), test_loss=float(m.test_loss))
        if not ref_loss:
            ref_loss.append(row["train_loss"])
        loss_bad = tr.is_divergent(row["train_loss"], ref_loss[0])
        row["diverged"] = loss_bad
        rows.append(row)
        pending.update(grad=m.grad, exact=m.grad_kind == "exact")
        return loss_bad

    stop = record(0, state, False)
    k, last_cost = 0, None
    while not stop and budget.allows_step(k, total_calls(calls), wall, last_cost):
        t0 = time.perf_counter()
        state, info = solver.step(state, source, gen)
        wall += time.perf_counter() - t0
        calls = calls + info.oracle
        last_cost = total_calls(info.oracle)
        if rows[-1]["iteration"] == k:  # the direction computed at the iterate of the last row
            rows[-1]["direction_norm"] = _norm(info.direction) if _finite(info.direction) else math.inf
            if pending["grad"] is not None and pending["exact"]:
                diff = vec(info.direction).double() - vec(pending["grad"]).double()
                rows[-1]["hypergrad_error"] = float(torch.linalg.vector_norm(diff))
        k += 1
        params = solver.params(state)
        diverged = not _finite(params) or tr.is_divergent(_norm(params), ref_norm)
        last = diverged or not budget.allows_step(k, total_calls(calls), wall, last_cost)
        if last or k % eval_every == 0:
            stop = record(k, state, diverged)
        stop = stop or diverged

    config = tr.config_columns(solver)
    return tr.to_frame(rows, config)
