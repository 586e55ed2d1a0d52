"""The Trace: what one solver run records, as a tidy pandas table with one row per recorded iteration.

Columns (every run has all of them, in this order, then the ``cfg_*`` columns):

==================  ====================================================================================
column              meaning
==================  ====================================================================================
``iteration``       k: the row describes the iterate after k steps (row 0 is the starting point)
``method``          registry name of the solver (``convtheory.solvers.SOLVERS``)
``problem``         class name of the task family or bilevel problem
``seed``            the run's seed
``grad_norm``       :math:`\\|\\nabla F(\\theta_k)\\|` of the objective the solver targets (meta-objective at the
                    solver's alpha and N, or :math:`\\Phi` for bilevel problems); see ``grad_norm_kind``
``grad_norm_kind``  ``"exact"`` (closed form, or exact differentiation of the whole finite-sum objective, or the
                    problem's exact hypergradient oracle) or ``"estimate"`` (computed on a large fresh batch of
                    tasks, or by an approximate solve); ``"none"`` on a diverged row (metrics not computed)
``train_loss``      the objective at the iterate (meta-objective on the training tasks; :math:`\\Phi(x_k)` or
                    :math:`f(x_k, y_k)`)
``test_loss``       the meta-objective on held-out tasks; for bilevel problems the problem's ``test_loss`` at the
                    inner iterate (NaN if the problem has none)
``hypergrad_error`` :math:`\\|\\hat g_k-\\nabla F(\\theta_k)\\|`: the direction the solver's next step used (computed
                    at this iterate) against the exact gradient; NaN when ``grad_norm_kind`` is not exact or
                    no step followed this row
``direction_norm``  :math:`\\|\\hat g_k\\|` of that direction (NaN if no step followed)
``alpha``           inner step size in force at this iterate (Meta-SGD: mean of the per-parameter steps)
``beta``            outer (meta) step size in force at this iterate
``oracle_grad``     cumulative gradient evaluations spent to reach this iterate
``oracle_hvp``      cumulative Hessian-vector products
``oracle_jvp``      cumulative mixed Jacobian-vector products
``oracle_fn``       cumulative function evaluations
``wall_time``       cumulative seconds spent inside the solver's steps (metric evaluation excluded)
``diverged``        True on the row where the run was stopped for divergence (the last row), else False
``cfg_<field>``     every field of the solver's config (and of its ``sampling``), one column each
==================  ====================================================================================

Divergence (DESIGN.md): a run is stopped, never raised and never dropped, when the parameters or the training
loss become non-finite or exceed :math:`10^{12}\\max(\\text{initial value},1)` in absolute value / norm; the last
row then carries ``diverged=True`` and its iteration (:func:`diverged_at`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import pandas as pd
import torch

#: Metric and bookkeeping columns, in order (the ``cfg_*`` columns follow).
COLUMNS: tuple[str, ...] = (
    "iteration", "method", "problem", "seed", "grad_norm", "grad_norm_kind", "train_loss", "test_loss",
    "hypergrad_error", "direction_norm", "alpha", "beta", "oracle_grad", "oracle_hvp", "oracle_jvp",
    "oracle_fn", "wall_time", "diverged",
)

#: Divergence threshold: a value beyond ``DIVERGENCE_FACTOR * max(initial, 1)`` counts as diverged.
DIVERGENCE_FACTOR = 1e12


def _scalar(value: Any) -> Any:
    """A config value as a table cell: tensors become floats (their mean if not scalar), dtypes strings."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().double().mean())
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (tuple, list)):
        return str(tuple(value))
    return value


def config_columns(config: Any, prefix: str = "cfg_") -> dict[str, Any]:
    """The fields of a frozen dataclass config as ``{prefix + name: value}``; nested dataclasses are flattened."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(config_columns(value, prefix))
        else:
            out[prefix + f.name] = _scalar(value)
    return out


def to_frame(rows: Iterable[dict], config: dict[str, Any]) -> pd.DataFrame:
    """Assemble recorded rows and the config columns into the Trace table (columns in :data:`COLUMNS` order)."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for name, value in config.items():
        df[name] = [value] * len(df)
    df["diverged"] = df["diverged"].astype(bool)
    df["iteration"] = df["iteration"].astype(int)
    return df


def diverged_at(trace: pd.DataFrame) -> int | None:
    """The iteration at which a run was stopped for divergence, or None if it did not diverge.

    >>> import pandas as pd
    >>> diverged_at(pd.DataFrame({"iteration": [0, 1, 2], "diverged": [False, False, True]}))
    2
    """
    hit = trace.loc[trace["diverged"].astype(bool), "iteration"]
    return None if hit.empty else int(hit.iloc[0])


def is_divergent(value: float, reference: float) -> bool:
    """True if ``value`` is non-finite or ``|value| > DIVERGENCE_FACTOR * max(|reference|, 1)``."""
    if not math.isfinite(value):
        return True
    return abs(value) > DIVERGENCE_FACTOR * max(abs(reference), 1.0)
