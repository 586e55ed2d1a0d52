"""Name -> task-family class, for the meta-learning families of this folder (configs built by keyword)."""

from __future__ import annotations

from .anil import ANILTasks
from .logistic import LogisticTasks
from .nonconvex import RobustRegressionTasks
from .quadratic import LinearRegressionTasks, QuadraticTasks

#: Every meta-learning family: ``FAMILIES[name](**config).sample(B, seed)`` gives a MetaTasks batch.
FAMILIES: dict[str, type] = {
    "quadratic": QuadraticTasks,
    "linear_regression": LinearRegressionTasks,
    "logistic": LogisticTasks,
    "robust_regression": RobustRegressionTasks,
    "anil": ANILTasks,
}
