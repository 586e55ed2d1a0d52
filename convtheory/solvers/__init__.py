"""Outer loops (meta-training and bilevel algorithms), each a frozen config plus a step function, run by one
generic loop that records a Trace.

>>> from convtheory.problems.quadratic import QuadraticTasks
>>> from convtheory.solvers import SOLVERS, Budget, run
>>> trace = run(SOLVERS["maml"](alpha=0.2, beta=0.5, N=2), QuadraticTasks(d=3), Budget(iterations=5), seed=0)
>>> len(trace), trace["grad_norm_kind"].iloc[0]
(6, 'exact')
"""

from .base import Budget, Metrics, StepInfo, run
from .bilevel import (
    ESJ,
    MRBO,
    VRBO,
    AIDBiO,
    AIDBiONeumann,
    BilevelState,
    ITDBiO,
    RecursiveState,
    StocBiO,
    StochasticESJ,
    aid_hypergradient,
    esjs_hypergradient,
    samples_per_step,
    stocbio_hypergradient,
)
from .meta import (
    ANIL,
    FOMAML,
    HFMAML,
    IMAML,
    MAML,
    AlphaMAML,
    MetaObjective,
    MetaSGD,
    MetaState,
    Reptile,
    imaml_exact,
    metasgd_gradient,
    objective_value_and_grad,
)
from .sources import (
    BilevelSource,
    MetaSource,
    Sampling,
    StochasticBilevel,
    as_stochastic,
    deterministic_samples,
    hypercleaning_minibatches,
    quadratic_noise,
)
from .trace import COLUMNS, diverged_at

#: Registry: solver name -> config class (``SOLVERS[name](**settings)``).
SOLVERS: dict[str, type] = {
    "maml": MAML,
    "fomaml": FOMAML,
    "hfmaml": HFMAML,
    "reptile": Reptile,
    "anil": ANIL,
    "imaml": IMAML,
    "metasgd": MetaSGD,
    "alpha-maml": AlphaMAML,
    "aid-bio": AIDBiO,
    "aid-bio-neumann": AIDBiONeumann,
    "itd-bio": ITDBiO,
    "stocbio": StocBiO,
    "esj": ESJ,
    "esj-s": StochasticESJ,
    "mrbo": MRBO,
    "vrbo": VRBO,
}

__all__ = [
    "AIDBiO", "AIDBiONeumann", "ANIL", "AlphaMAML", "BilevelSource", "BilevelState", "Budget", "COLUMNS", "ESJ",
    "FOMAML", "HFMAML", "IMAML", "ITDBiO", "MAML", "MetaObjective", "MetaSGD", "MetaSource", "MetaState",
    "Metrics", "Reptile", "SOLVERS", "Sampling", "StepInfo", "StocBiO", "StochasticBilevel", "aid_hypergradient",
    "as_stochastic", "deterministic_samples", "diverged_at", "hypercleaning_minibatches", "imaml_exact",
    "metasgd_gradient", "objective_value_and_grad", "quadratic_noise", "run", "stocbio_hypergradient",
    "MRBO", "VRBO", "RecursiveState", "StochasticESJ", "esjs_hypergradient", "samples_per_step",
]
