"""Linear solvers of convtheory.hypergrad.linsolve against dense solves and their closed forms (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convtheory.hypergrad.linsolve import cg, fixed_point, neumann
from convtheory.tree import flatten, unflatten
from convtheory.types import InvalidArgumentError, InvalidTypeError

DT = torch.float64


def spd(n: int, seed: int, mu: float = 0.5, L: float = 2.0) -> torch.Tensor:
    """Random symmetric matrix with spectrum in [mu, L] (mu and L attained when n > 1)."""
    gen = torch.Generator().manual_seed(seed)
    O, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    eig = mu + (L - mu) * torch.rand(n, generator=gen, dtype=DT)
    eig[0], eig[-1] = mu, L
    A = O @ torch.diag(eig) @ O.T
    return 0.5 * (A + A.T)


def rhs(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed + 1), dtype=DT)


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    return float(torch.linalg.vector_norm(a - b)) <= tol * (1.0 + float(torch.linalg.vector_norm(b)))


class Counter:
    """A matvec that counts its calls."""

    def __init__(self, A: torch.Tensor):
        self.A, self.calls = A, 0

    def __call__(self, v):
        self.calls += 1
        return self.A @ v


dims = st.integers(1, 8)
seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(n=dims, seed=seeds)
def test_cg_exact_in_n_steps(n, seed):
    """CG solves an n x n SPD system to round-off in n steps; residual norms start at ||b|| and end near 0."""
    A, b = spd(n, seed), rhs(n, seed)
    mv = Counter(A)
    x, res = cg(mv, b, n)
    assert mv.calls == n
    assert res.shape == (n + 1,)
    assert torch.isclose(res[0], torch.linalg.vector_norm(b))
    assert close(x, torch.linalg.solve(A, b), 1e-10)
    assert float(torch.linalg.vector_norm(b - A @ x)) <= 1e-10 * (1 + float(res[0]))
    assert float(res[-1]) <= 1e-10 * (1 + float(res[0]))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 8), seed=seeds, Q=st.integers(0, 6))
def test_cg_obeys_energy_norm_bound_and_warm_start(n, seed, Q):
    """||x_Q - x*||_A <= 2 r^Q ||x0 - x*||_A, r = (sqrt(kappa)-1)/(sqrt(kappa)+1); x0 costs one extra matvec."""
    A, b = spd(n, seed, mu=0.1, L=3.0), rhs(n, seed)
    x_star = torch.linalg.solve(A, b)
    x0 = torch.randn(n, generator=torch.Generator().manual_seed(seed + 2), dtype=DT)
    mv = Counter(A)
    x, res = cg(mv, b, Q, x0=x0)
    assert mv.calls == Q + 1
    assert torch.isclose(res[0], torch.linalg.vector_norm(b - A @ x0))

    def energy(e):
        return float(torch.sqrt(e @ A @ e))

    r = (30.0**0.5 - 1) / (30.0**0.5 + 1)
    assert energy(x - x_star) <= 2 * r**Q * energy(x0 - x_star) * (1 + 1e-9) + 1e-12


@settings(max_examples=25, deadline=None)
@given(n=dims, seed=seeds, Q=st.integers(0, 12), frac=st.floats(0.1, 1.0))
def test_neumann_and_fixed_point_closed_forms(n, seed, Q, frac):
    """FP with Q steps: (I - (I - eta A)^Q) A^{-1} b; Neumann with terms 0..Q: the same with Q + 1; matvec counts."""
    A, b = spd(n, seed), rhs(n, seed)
    eta = frac / 2.0
    P = torch.eye(n, dtype=DT) - eta * A
    sol = torch.linalg.solve(A, b)
    fp_closed = sol - torch.linalg.matrix_power(P, Q) @ sol
    nm_closed = sol - torch.linalg.matrix_power(P, Q + 1) @ sol
    mv_fp, mv_nm = Counter(A), Counter(A)
    assert close(fixed_point(mv_fp, b, Q, eta), fp_closed, 1e-12)
    assert close(neumann(mv_nm, b, Q, eta), nm_closed, 1e-12)
    assert mv_fp.calls == max(Q - 1, 0)
    assert mv_nm.calls == Q
    # a tensor step size gives the same numbers
    assert close(fixed_point(mv_fp, b, Q, torch.tensor(eta, dtype=DT)), fp_closed, 1e-12)


def test_series_converge_at_rate_one_minus_eta_mu():
    """FP error after Q steps is <= (1 - eta mu)^Q ||b|| / mu, with equality along the mu eigenvector."""
    n, mu, L = 5, 0.5, 2.0
    A = spd(n, 3, mu, L)
    evals, evecs = torch.linalg.eigh(A)
    b = evecs[:, 0] * 3.0  # along the smallest eigenvalue
    eta = 1 / L
    for Q in (1, 5, 20):
        err = torch.linalg.vector_norm(fixed_point(lambda v: A @ v, b, Q, eta) - torch.linalg.solve(A, b))
        assert torch.isclose(err, torch.tensor((1 - eta * mu) ** Q * 3.0 / mu, dtype=DT), rtol=1e-10)


def test_dict_valued_rhs_matches_flat():
    """A dict right-hand side (matvec on dicts) gives the flat answer for all three solvers."""
    n = 7
    A, b = spd(n, 11), rhs(n, 11)
    like = {"w": torch.zeros(2, 2, dtype=DT), "c": torch.zeros(3, dtype=DT)}
    bd = unflatten(b, like)

    def mv(vd):
        return unflatten(A @ flatten(vd), like)

    xd, res_d = cg(mv, bd, 4)
    x, res = cg(lambda v: A @ v, b, 4)
    assert isinstance(xd, dict) and set(xd) == {"w", "c"} and xd["w"].shape == (2, 2)
    assert close(flatten(xd), x, 1e-13) and close(res_d, res, 1e-13)
    assert close(flatten(neumann(mv, bd, 6, 0.4)), neumann(lambda v: A @ v, b, 6, 0.4), 1e-13)
    assert close(flatten(fixed_point(mv, bd, 6, 0.4)), fixed_point(lambda v: A @ v, b, 6, 0.4), 1e-13)
    assert close(flatten(cg(mv, bd, n)[0]), torch.linalg.solve(A, b), 1e-10)


def test_solvers_vmap_over_a_batch_of_systems():
    """No data-dependent branching: vmap over a batch of (A, b), including b = 0 (CG's zero-denominator guard)."""
    n, k = 4, 3
    As = torch.stack([spd(n, s) for s in range(k)])
    bs = torch.stack([rhs(n, s) for s in range(k)])
    bs[1] = 0.0
    xs, res = torch.func.vmap(lambda A, b: cg(lambda v: A @ v, b, n))(As, bs)
    assert res.shape == (k, n + 1)
    assert torch.isfinite(xs).all()
    assert close(xs, torch.linalg.solve(As, bs.unsqueeze(-1)).squeeze(-1), 1e-10)
    ns = torch.func.vmap(lambda A, b: neumann(lambda v: A @ v, b, 3, 0.4))(As, bs)
    for i in range(k):
        assert close(ns[i], neumann(lambda v: As[i] @ v, bs[i], 3, 0.4), 1e-14)


def test_cg_compiles_into_one_graph():
    """torch.compile(fullgraph=True) captures CG (no graph breaks), and the compiled solve matches eager."""
    n = 3
    A, b = spd(n, 5), rhs(n, 5)
    fn = torch.compile(lambda A, b: cg(lambda v: A @ v, b, n), fullgraph=True, backend="eager")
    x, res = fn(A, b)
    assert close(x, torch.linalg.solve(A, b), 1e-10)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: cg(lambda v: v, torch.ones(2), -1), InvalidArgumentError),
        (lambda: cg(lambda v: v, torch.ones(2), 1.5), InvalidTypeError),
        (lambda: neumann(lambda v: v, torch.ones(2), -2, 0.1), InvalidArgumentError),
        (lambda: neumann(lambda v: v, torch.ones(2), 2, 0.0), InvalidArgumentError),
        (lambda: fixed_point(lambda v: v, torch.ones(2), 2, float("nan")), InvalidArgumentError),
        (lambda: fixed_point(lambda v: v, torch.ones(2), 2, -0.1), InvalidArgumentError),
    ],
)
def test_invalid_arguments_raise(call, exc):
    with pytest.raises(exc):
        call()
