"""Shared test fixtures: a task "family" that always returns one fixed batch, so tests know the pool exactly."""

from dataclasses import dataclass

import torch

from convtheory.problems.base import MetaTasks
from convtheory.problems.quadratic import QuadraticTasks
from convtheory.tree import tree_map

f64 = torch.float64


@dataclass(frozen=True, eq=False)
class FixedTasks:
    """Duck-typed task family: ``sample`` returns ``tasks`` whatever B and the seed (so the pool and the held-out
    batch are both this batch), ``init_params`` returns ``theta0``."""

    tasks: MetaTasks
    theta0: object  # a tensor or a dict of tensors

    def sample(self, B, seed):
        return self.tasks

    def init_params(self, seed):
        return tree_map(torch.clone, self.theta0)


def fixed_quadratic(B=8, d=4, mu=0.2, L=1.0, seed=0, **kw) -> FixedTasks:
    """B quadratic tasks of QuadraticTasks(d, mu, L, **kw) and a standard-normal theta0, all from ``seed``."""
    tasks = QuadraticTasks(d=d, mu=mu, L=L, **kw).sample(B, seed)
    theta0 = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1000), dtype=f64)
    return FixedTasks(tasks, theta0)
