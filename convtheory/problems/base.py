"""What a task family hands to the engines and solvers: stacked task data, the per-task loss, and constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from ..types import Constants, Data, InvalidTypeError, LossFn, Params


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed (or pass one through). ``None`` is refused: seeds everywhere."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidTypeError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


@dataclass(frozen=True)
class MetaTasks:
    """A batch of B meta-learning tasks.

    ``support`` and ``query`` stack the tasks on axis 0 (a tensor, or a tuple/dict of tensors);
    ``loss(params, data)`` is one task's loss on its slice, the same function for support and query unless
    ``query_loss`` is given. ``constants`` hold for every task of the batch. ``exact`` carries whatever
    the family needs for its exact oracles (e.g. the matrices of a quadratic family).
    """

    support: Data
    query: Data
    loss: LossFn
    constants: Constants
    query_loss: LossFn | None = None
    exact: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outer_loss(self) -> LossFn:
        return self.query_loss if self.query_loss is not None else self.loss

    @property
    def num_tasks(self) -> int:
        first = self.support
        while isinstance(first, (tuple, list, dict)):
            first = next(iter(first.values())) if isinstance(first, dict) else first[0]
        return int(first.shape[0])


@dataclass(frozen=True)
class BilevelProblem:
    """min_x f(x, y*(x)) with y*(x) = argmin_y g(x, y).

    ``f(x, y)`` and ``g(x, y)`` are closures over the problem's data; ``x0``/``y0`` are starting points.
    ``y_star(x)`` and ``hypergradient(x)`` are exact oracles where the mathematics gives them (else None).
    ``constants``: L, mu of g in y; rho, tau, M as defined in :class:`convtheory.types.Constants`.
    """

    f: Callable[[Params, Params], torch.Tensor]
    g: Callable[[Params, Params], torch.Tensor]
    x0: Params
    y0: Params
    constants: Constants
    y_star: Callable[[Params], Params] | None = None
    hypergradient: Callable[[Params], Params] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
