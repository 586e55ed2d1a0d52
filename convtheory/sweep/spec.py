"""A run's identity: its experiment, the function that computes it, its parameters and seed, hashed into a key.

Grids are data (``grid(..., axes={"alpha": [...], "N": [...]}, seeds=[0, 1])``); a run's key hashes its full config
and the code version that matters (the package version and the run function's own ``version`` attribute), so a
finished run is found again after a kill, and a change to the code that computes it invalidates it.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..types import InvalidArgumentError, InvalidTypeError


def _canonical(value: Any) -> Any:
    """JSON-able canonical form of a parameter value (dict keys sorted, tuples as lists, numpy scalars unwrapped)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"parameter value {value!r} is not finite; sweep parameters must be finite")
        return value
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _canonical(value.item())
    raise InvalidTypeError(f"parameter value {value!r} of type {type(value).__name__} is not JSON-able")


def resolve(fn: str) -> Callable:
    """Import ``"package.module:function"``; raise naming the path when it does not resolve."""
    if not isinstance(fn, str) or ":" not in fn:
        raise InvalidArgumentError(f"run function {fn!r} must be written 'package.module:function'")
    module, _, name = fn.partition(":")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgumentError(f"run function {fn!r} does not resolve: {exc}") from None
    if not callable(obj):
        raise InvalidTypeError(f"run function {fn!r} is not callable")
    return obj


@dataclass(frozen=True)
class RunSpec:
    """One run: ``fn(params, seed) -> pandas.DataFrame``, named by the import path ``fn``."""

    experiment: str
    fn: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "fn": self.fn, "params": _canonical(dict(self.params)),
                "seed": int(self.seed)}

    def key(self) -> str:
        """Hash of the full config and the code version (package version, the function's ``version`` attribute or
        else its module's ``version``)."""
        from .. import __version__

        fn = resolve(self.fn)
        # the function's own version, else its module's (most run modules bump a module-level `version`)
        code = getattr(fn, "version", getattr(sys.modules.get(fn.__module__), "version", 0))
        code = code if isinstance(code, (int, float, str)) else 0
        blob = json.dumps({**self.as_dict(), "package": __version__, "code": code}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    @property
    def name(self) -> str:
        """Canonical run name, e.g. ``maml_alpha[N=5,alpha=0.1,seed=0]``."""
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.experiment}[{inner}{',' if inner else ''}seed={self.seed}]"


def grid(experiment: str, fn: str, axes: Mapping[str, list], seeds=(0,), fixed: Mapping[str, Any] | None = None
         ) -> list[RunSpec]:
    """The cartesian product of ``axes`` (name -> values) times ``seeds``, with ``fixed`` parameters added."""
    for k, vals in axes.items():
        if not isinstance(vals, (list, tuple)) or len(vals) == 0:
            raise InvalidArgumentError(f"grid axis {k!r} must be a non-empty list, got {vals!r}")
    names = list(axes)
    out = []
    for combo in itertools.product(*(axes[k] for k in names)):
        for s in seeds:
            out.append(RunSpec(experiment, fn, {**(fixed or {}), **dict(zip(names, combo))}, int(s)))
    return out
