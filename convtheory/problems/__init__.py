"""Task families with known constants and exact oracles.

Meta-learning families (``sample(B, seed) -> MetaTasks``): QuadraticTasks, LinearRegressionTasks,
LogisticTasks, RobustRegressionTasks, ANILTasks (registered by name in ``FAMILIES``). Bilevel families
(``build(seed) -> BilevelProblem``): QuadraticBilevel, HyperCleaning, HyperRepresentation (``BILEVEL_FAMILIES``).
"""

from .anil import ANILTasks
from .base import BilevelProblem, MetaTasks, make_generator
from .bilevel import HyperCleaning, HyperRepresentation, QuadraticBilevel
from .logistic import LogisticTasks
from .nonconvex import RobustRegressionTasks
from .quadratic import LinearRegressionTasks, QuadraticTasks
from .registry import FAMILIES

BILEVEL_FAMILIES: dict[str, type] = {
    "quadratic_bilevel": QuadraticBilevel,
    "hypercleaning": HyperCleaning,
    "hyperrep": HyperRepresentation,
}

__all__ = [
    "ANILTasks", "BILEVEL_FAMILIES", "BilevelProblem", "FAMILIES", "HyperCleaning", "HyperRepresentation",
    "LinearRegressionTasks", "LogisticTasks", "MetaTasks", "QuadraticBilevel", "QuadraticTasks",
    "RobustRegressionTasks", "make_generator",
]
