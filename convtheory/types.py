"""The package's vocabulary: parameter and data types, oracle counts, constants, and errors.

Everything else composes these. Names follow the glossary in the README: alpha (inner step), beta (meta/outer
step), N (inner steps), Q (linear-solver steps or ES directions), B (tasks per batch), S and D (inner and outer
samples per task), K (shots).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

import torch

Tensor = torch.Tensor
#: Parameters: one tensor or a flat dict of named tensors (what ``torch.func.functional_call`` takes).
Params = Union[Tensor, dict[str, Tensor]]
#: One task's data, or a stack of tasks (task axis first): a tensor, a tuple or a dict of tensors.
Data = Union[Tensor, tuple, dict]
#: ``loss(params, data) -> scalar`` for one task.
LossFn = Callable[[Params, Data], Tensor]


# ---------------------------------------------------------------------------------------------------- errors
class ConvTheoryError(Exception):
    """Base class of every error the package raises on purpose."""


class InvalidArgumentError(ConvTheoryError, ValueError):
    """A value is out of range, names something unknown, or does not fit the other arguments."""


class InvalidTypeError(ConvTheoryError, TypeError):
    """An argument has a type the function cannot use."""


def _fmt(value: Any) -> str:
    return repr(value) if not isinstance(value, float) else f"{value:g}"


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` if finite and > 0 (or >= 0); else raise naming the value and the valid range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a real number, got {_fmt(value)} of type {type(value).__name__}")
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        rng = "[0, inf)" if allow_zero else "(0, inf)"
        raise InvalidArgumentError(f"{name} = {_fmt(value)} is invalid; it must be finite and in {rng}")
    return v


def check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    """Return ``int(value)`` if it is an integer >= minimum; else raise naming the value and the valid range."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise InvalidTypeError(f"{name} must be an integer >= {minimum}, got {_fmt(value)}")
    v = int(value)
    if v < minimum:
        raise InvalidArgumentError(f"{name} = {v} is invalid; it must be an integer >= {minimum}")
    return v


def check_choice(name: str, value: Any, choices) -> str:
    """Return ``value`` if it is one of ``choices``; else raise listing the valid names."""
    if value not in choices:
        raise InvalidArgumentError(f"{name} = {_fmt(value)} is unknown; valid: {', '.join(sorted(choices))}")
    return value


# ---------------------------------------------------------------------------------------------- oracle counts
@dataclass(frozen=True)
class OracleCount:
    """Oracle calls spent by one computation, summed over tasks.

    ``grad``: gradient evaluations; ``hvp``: Hessian-vector products; ``jvp``: Jacobian-vector (or
    vector-Jacobian) products of mixed second derivatives such as :math:`\\nabla_x\\nabla_y g\\,v`;
    ``fn``: function evaluations. A Hessian-vector product costs about two gradients; we count it apart
    because the theorems count it apart (Ji et al. 2021, Table 1).
    """

    grad: int = 0
    hvp: int = 0
    jvp: int = 0
    fn: int = 0

    def __add__(self, other: "OracleCount") -> "OracleCount":
        return OracleCount(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def __mul__(self, k: int) -> "OracleCount":
        return OracleCount(*(a * int(k) for a in dataclasses.astuple(self)))

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# -------------------------------------------------------------------------------------------------- constants
@dataclass(frozen=True)
class Constants:
    """Problem constants, computed from the sampled data (never guessed).

    ``L``: gradient-Lipschitz constant; ``mu``: strong-convexity constant (None if not strongly convex;
    negative values are a lower bound on the smallest Hessian eigenvalue of a nonconvex problem);
    ``rho``: Hessian-Lipschitz constant; ``M``: bound on the outer gradient in y; ``tau``: Lipschitz constant of
    the mixed derivative (bilevel); ``sigma2``: gradient variance. ``exact`` names the fields that are exact
    values (attained by some task or point); every other non-None field is a certified upper bound.
    """

    L: float
    mu: float | None = None
    rho: float | None = None
    M: float | None = None
    tau: float | None = None
    sigma2: float | None = None
    exact: frozenset = field(default_factory=frozenset)
    extra: Mapping[str, float] = field(default_factory=dict)

    @property
    def kappa(self) -> float | None:
        return None if not self.mu or self.mu <= 0 else self.L / self.mu

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("L", "mu", "rho", "M", "tau", "sigma2")}
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------------------------------------ engine info
@dataclass(frozen=True)
class EngineInfo:
    """What an engine returns beside its gradient.

    ``oracle``: the calls it spent (summed over tasks); ``inner``: the adapted inner variables (for
    ``meta_gradient`` the per-task adapted parameters with the task axis first; for ``hypergradient`` the inner
    iterate y the estimate was formed at); ``extra``: method-specific diagnostics (e.g. CG residuals).
    """

    oracle: OracleCount
    inner: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
