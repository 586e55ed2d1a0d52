"""Random instances shared by the theory tests (numpy, explicit seeds)."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def with_spectrum(rng: np.random.Generator, eigs) -> np.ndarray:
    """A random symmetric matrix with the given eigenvalues."""
    eigs = np.asarray(eigs, dtype=float)
    U = orthogonal(rng, eigs.size)
    M = (U * eigs) @ U.T
    return 0.5 * (M + M.T)


def spectrum(rng: np.random.Generator, d: int, lo: float, hi: float, include_ends: bool = True) -> np.ndarray:
    """d eigenvalues in [lo, hi]; the two ends included when include_ends (d >= 2)."""
    e = rng.uniform(lo, hi, d)
    if include_ends and d >= 2:
        e[0], e[1] = lo, hi
    return e


def cg(matvec, r: np.ndarray, Q: int) -> np.ndarray:
    """Plain conjugate gradient from x_0 = 0, Q steps (textbook; independent of the package)."""
    x = np.zeros_like(r)
    res = r.copy()
    p = res.copy()
    rs = res @ res
    for _ in range(Q):
        if rs == 0.0:
            break
        Ap = matvec(p)
        a = rs / (p @ Ap)
        x = x + a * p
        res = res - a * Ap
        rs_new = res @ res
        p = res + (rs_new / rs) * p
        rs = rs_new
    return x
