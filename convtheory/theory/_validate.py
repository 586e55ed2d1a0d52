"""Input checks shared by the theory modules: every failure names the value and the valid range."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..types import InvalidArgumentError, InvalidTypeError, check_int, check_positive

__all__ = [
    "positive", "nonnegative", "real", "count", "below", "unit_open", "mu_le_L", "sym_matrix",
    "task_matrices", "task_vectors", "vector",
]

_SYM_TOL = 1e-10


def positive(name: str, value: Any) -> float:
    """``float(value)`` if finite and > 0."""
    return check_positive(name, value)


def nonnegative(name: str, value: Any) -> float:
    """``float(value)`` if finite and >= 0."""
    return check_positive(name, value, allow_zero=True)


def real(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite real number (any sign)."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidTypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{name} = {v!r} is invalid; it must be finite, in (-inf, inf)")
    return v


def count(name: str, value: Any, minimum: int = 0) -> int:
    """``int(value)`` if it is an integer >= minimum (numpy integers accepted)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = int(value)
    return check_int(name, value, minimum=minimum)


def below(name: str, value: float, bound: float, what: str, *, strict: bool = False) -> float:
    """Check ``value <= bound`` (``<`` if strict); ``what`` names the bound, e.g. ``'1/L'``."""
    ok = value < bound if strict else value <= bound * (1 + 1e-12)
    if not ok:
        op = "<" if strict else "<="
        raise InvalidArgumentError(f"{name} = {value:g} is invalid; it must satisfy {name} {op} {what} = {bound:g}")
    return value


def unit_open(name: str, value: Any) -> float:
    """``float(value)`` if in (0, 1)."""
    v = positive(name, value)
    if v >= 1:
        raise InvalidArgumentError(f"{name} = {v:g} is invalid; it must be in (0, 1)")
    return v


def mu_le_L(mu: Any, L: Any) -> tuple[float, float]:
    """``(mu, L)`` as floats with 0 < mu <= L."""
    L = positive("L", L)
    mu = positive("mu", mu)
    if mu > L:
        raise InvalidArgumentError(f"mu = {mu:g} is invalid; it must satisfy 0 < mu <= L = {L:g}")
    return mu, L


def _array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a real array, got {type(value).__name__}")
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{name} has non-finite entries; every entry must be finite")
    return arr


def vector(name: str, value: Any) -> np.ndarray:
    """A finite float64 vector (1-D, non-empty)."""
    arr = _array(name, value)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}; it must be a non-empty vector (d,)")
    return arr


def _check_square(name: str, arr: np.ndarray, symmetric: bool) -> None:
    if arr.shape[-1] != arr.shape[-2] or arr.shape[-1] == 0:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}; its last two axes must be square (d, d), d >= 1")
    if symmetric:
        asym = np.max(np.abs(arr - np.swapaxes(arr, -1, -2)), initial=0.0)
        scale = max(1.0, float(np.max(np.abs(arr), initial=0.0)))
        if asym > _SYM_TOL * scale:
            raise InvalidArgumentError(f"{name} is not symmetric (max |A - A^T| = {asym:g}); it must be symmetric")


def sym_matrix(name: str, value: Any, *, symmetric: bool = True) -> np.ndarray:
    """A finite float64 square matrix (d, d), symmetric unless ``symmetric=False``."""
    arr = _array(name, value)
    if arr.ndim != 2:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}; it must be a matrix (d, d)")
    _check_square(name, arr, symmetric)
    return arr


def task_matrices(name: str, value: Any, *, symmetric: bool = True) -> np.ndarray:
    """A stack of task matrices (B, d, d); one matrix (d, d) is read as B = 1."""
    arr = _array(name, value)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise InvalidArgumentError(f"{name} has shape {arr.shape}; it must be (B, d, d) or (d, d)")
    _check_square(name, arr, symmetric)
    return arr


def task_vectors(name: str, value: Any, B: int, d: int) -> np.ndarray:
    """A stack of task vectors (B, d); one vector (d,) is broadcast to every task."""
    arr = _array(name, value)
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, (B, arr.shape[0]))
    if arr.shape != (B, d):
        raise InvalidArgumentError(f"{name} has shape {arr.shape}; it must be ({B}, {d}) or ({d},)")
    return arr


def query_matrices(A: np.ndarray, C: Any) -> np.ndarray:
    """Query Hessians C_i shaped like the support stack A (B, d, d); None means C = A (shared curvature), and one
    matrix is broadcast to every task."""
    if C is None:
        return A
    C = task_matrices("C", C)
    if C.shape[1:] != A.shape[1:] or C.shape[0] not in (1, A.shape[0]):
        raise InvalidArgumentError(f"C has shape {C.shape}; it must match A's shape {A.shape} (or be one matrix)")
    return np.broadcast_to(C, A.shape)


def task_quadratics(A: Any, a: Any, C: Any, b: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A, a, C, b) of quadratic tasks 1/2 (w-a)^T A (w-a) (support) and 1/2 (w-b)^T C (w-b) (query), validated
    and broadcast to B tasks; C defaults to A and b to a."""
    A = task_matrices("A", A)
    n, d = A.shape[0], A.shape[1]
    C = query_matrices(A, C)
    a = task_vectors("a", a, n, d)
    b = a if b is None else task_vectors("b", b, n, d)
    return A, a, C, b
