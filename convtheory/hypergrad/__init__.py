"""Hypergradient and meta-gradient engines: pure functions on user callables, oracle-counted.

``hypergradient`` (bilevel: ITD, forward ITD, AID with CG/Neumann/fixed point, ESJ, exact) and
``meta_gradient`` (MAML, first-order and Hessian-free MAML, Reptile, iMAML, ANIL).
"""

from .bilevel import METHODS as BILEVEL_METHODS
from .bilevel import hypergradient
from .linsolve import cg, fixed_point, neumann
from .meta import METHODS as META_METHODS
from .meta import cache_info, clear_cache, meta_gradient, set_compile_policy

__all__ = [
    "BILEVEL_METHODS",
    "META_METHODS",
    "cache_info",
    "cg",
    "clear_cache",
    "fixed_point",
    "hypergradient",
    "meta_gradient",
    "neumann",
    "set_compile_policy",
]
