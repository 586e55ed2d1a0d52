"""Run functions for sweeps: ``fn(params, seed) -> DataFrame``, importable by workers by their path."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..types import InvalidArgumentError

version = 1


def solver_run(params: dict[str, Any], seed: int) -> pd.DataFrame:
    """One solver on one family: the generic run of every solver experiment.

    ``params``: ``solver`` (a name in ``convtheory.solvers.SOLVERS``), ``solver_params`` (its config fields; a
    ``sampling`` dict becomes a ``Sampling``), ``family`` (a name in ``FAMILIES`` or ``BILEVEL_FAMILIES``),
    ``family_params`` (its config fields), and the budget: ``iterations``, ``oracle_calls`` or ``seconds``;
    optional ``eval_every``. Returns the solver's Trace.
    """
    from ..problems import BILEVEL_FAMILIES, FAMILIES
    from ..solvers import SOLVERS, Budget, Sampling, run

    solver_name, family_name = params.get("solver"), params.get("family")
    if solver_name not in SOLVERS:
        raise InvalidArgumentError(f"solver = {solver_name!r} is unknown; valid: {', '.join(sorted(SOLVERS))}")
    families = {**FAMILIES, **BILEVEL_FAMILIES}
    if family_name not in families:
        raise InvalidArgumentError(f"family = {family_name!r} is unknown; valid: {', '.join(sorted(families))}")
    sp = dict(params.get("solver_params", {}))
    if isinstance(sp.get("sampling"), dict):
        sp["sampling"] = Sampling(**sp["sampling"])
    if "inner_params" in sp:
        sp["inner_params"] = tuple(sp["inner_params"])
    solver = SOLVERS[solver_name](**sp)
    family = families[family_name](**params.get("family_params", {}))
    budget = Budget(iterations=params.get("iterations"), oracle_calls=params.get("oracle_calls"),
                    seconds=params.get("seconds"))
    return run(solver, family, budget, seed=seed, eval_every=params.get("eval_every", 1))
