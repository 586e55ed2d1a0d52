"""Quadratic meta-learning tasks with exact N-step MAML oracles (THEORY.md §1.1-1.2).

Two families share one algebraic form. Every task's inner (support) loss is a quadratic
:math:`\\ell^S_i(w)=\\tfrac12 w^\\top A_i w-c_i^\\top w+\\text{const}` and its outer (query) loss is
:math:`\\ell^D_i(w)=\\tfrac12 w^\\top C_i w-e_i^\\top w+e^0_i`:

- :class:`QuadraticTasks` (population): :math:`\\ell^S_i=\\tfrac12(w-a_i)^\\top A_i(w-a_i)`,
  :math:`\\ell^D_i=\\tfrac12(w-b_i)^\\top C_i(w-b_i)`, so :math:`c_i=A_ia_i`, :math:`e_i=C_ib_i`,
  :math:`e^0_i=\\tfrac12 b_i^\\top C_ib_i`;
- :class:`LinearRegressionTasks` (finite sample): :math:`\\ell=\\tfrac12\\,\\mathrm{mean}_j(x_j^\\top w-y_j)^2`, so
  :math:`A_i=X_i^\\top X_i/S`, :math:`c_i=X_i^\\top y_i/S` on the support set and likewise on the query set.

``MetaTasks.exact`` holds ``A, c, C, e, e0`` (task axis first), which is all the exact oracles read:
:func:`maml_adapted`, :func:`exact_inner_iterates`, :func:`exact_meta_objective`, :func:`exact_meta_gradient`,
:func:`meta_hessian`. With :math:`P_i=I-\\alpha A_i` the N-step adapted point is the affine map
:math:`w^i_N=P_i^N\\theta+\\alpha\\sum_{k<N}P_i^k c_i`, and

.. math:: \\nabla\\mathcal L(\\theta)=\\mathbb E_i\\big[P_i^N(C_i w^i_N-e_i)\\big],\\qquad
          \\nabla^2\\mathcal L=\\mathbb E_i[P_i^N C_i P_i^N],

for every :math:`\\alpha` (inside or outside :math:`(0, 2/L)`) and :math:`N\\ge0` (THEORY.md §1.2, [derived]).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..types import (
    Constants,
    InvalidArgumentError,
    InvalidTypeError,
    Tensor,
    check_choice,
    check_int,
    check_positive,
)
from .base import MetaTasks, make_generator

_DTYPES = (torch.float64, torch.float32)


# ------------------------------------------------------------------------------------------ shared helpers
def check_dtype(dtype) -> torch.dtype:
    """Return ``dtype`` if it is torch.float64 or torch.float32; else raise naming it."""
    if dtype not in _DTYPES:
        raise InvalidArgumentError(f"dtype = {dtype!r} is unsupported; valid: torch.float64, torch.float32")
    return dtype


def check_bounds(mu, L, *, mu_name: str = "mu", L_name: str = "L") -> tuple[float, float]:
    """Validate a spectrum interval: 0 < mu <= L, both finite; raise naming the bad value."""
    mu_v = check_positive(mu_name, mu)
    L_v = check_positive(L_name, L)
    if mu_v > L_v:
        raise InvalidArgumentError(f"{mu_name} = {mu_v:g} > {L_name} = {L_v:g}; need 0 < {mu_name} <= {L_name}")
    return mu_v, L_v


def check_probability(name: str, value) -> float:
    """Return ``float(value)`` if it lies in [0, 1); else raise naming it."""
    v = check_positive(name, value, allow_zero=True)
    if v >= 1.0:
        raise InvalidArgumentError(f"{name} = {v:g} is invalid; it must be in [0, 1)")
    return v


def random_orthogonal(B: int, d: int, gen: torch.Generator) -> Tensor:
    """B Haar-distributed orthogonal d x d matrices, float64, shape (B, d, d) (QR of a Gaussian, signs fixed)."""
    G = torch.randn(B, d, d, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    return Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)


def spectrum_with_endpoints(B: int, d: int, mu: float, L: float, gen: torch.Generator) -> Tensor:
    """Eigenvalues (B, d) in [mu, L], float64; for d >= 2 each row contains mu and L exactly.

    For d = 1 the single eigenvalue is uniform on [mu, L] (so the batch constants are min/max over tasks).
    """
    u = torch.rand(B, d, generator=gen, dtype=torch.float64)
    lam = mu + (L - mu) * u
    if d >= 2:
        lam[:, 0] = mu
        lam[:, 1] = L
    return lam


def symmetric_from_eig(Q: Tensor, lam: Tensor) -> Tensor:
    """Q diag(lam) Q^T, symmetrised exactly (batched)."""
    M = (Q * lam.unsqueeze(-2)) @ Q.transpose(-1, -2)
    return 0.5 * (M + M.transpose(-1, -2))


def _check_alpha_N(alpha, N) -> int:
    if not isinstance(alpha, Tensor):
        check_positive("alpha", alpha, allow_zero=True)
    return check_int("N", N, minimum=0)


# ------------------------------------------------------------------------------------------ exact oracles
def _affine_power(P: Tensor, v: Tensor, N: int) -> tuple[Tensor, Tensor]:
    """(P^N, sum_{k<N} P^k v) by binary powering of the affine map w -> P w + v (batched, O(log N) matmuls)."""
    Mr = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device).expand_as(P)
    vr = torch.zeros_like(v)
    Mb, vb = P, v
    n = N
    while n:
        if n & 1:  # result <- base o result (all maps are powers of one map, so they commute)
            vr = (Mb @ vr.unsqueeze(-1)).squeeze(-1) + vb
            Mr = Mb @ Mr
        n >>= 1
        if n:
            vb = (Mb @ vb.unsqueeze(-1)).squeeze(-1) + vb
            Mb = Mb @ Mb
    return Mr, vr


def _inner_map(A: Tensor, alpha) -> Tensor:
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return eye - alpha * A


def maml_adapted(theta: Tensor, A: Tensor, c: Tensor, alpha, N: int) -> Tensor:
    """Exact N-step gradient-descent iterate on the quadratic 0.5 w^T A w - c^T w, started at theta.

    :math:`w_N=P^N\\theta+\\alpha\\sum_{k<N}P^k c`, :math:`P=I-\\alpha A` (THEORY.md §1.1, exact). ``A`` is (d, d)
    or batched (B, d, d) with ``c`` (d,) or (B, d); ``theta`` (d,) is broadcast over tasks. Works for singular or
    indefinite A and any alpha >= 0 (a tensor alpha stays differentiable).
    """
    N = _check_alpha_N(alpha, N)
    PN, s = _affine_power(_inner_map(A, alpha), alpha * c, N)
    return (PN @ theta.unsqueeze(-1)).squeeze(-1) + s


def exact_inner_iterates(theta: Tensor, A: Tensor, c: Tensor, alpha, N: int) -> Tensor:
    """All iterates w_0 = theta, ..., w_N of GD on 0.5 w^T A w - c^T w, stacked on axis 0: (N+1, [B,] d).

    :math:`w_{t+1}=w_t-\\alpha(Aw_t-c)` (THEORY.md §1.1, exact); a loop over the N steps, batched over tasks.
    """
    N = _check_alpha_N(alpha, N)
    w = theta.expand(c.shape) if c.dim() > theta.dim() else theta
    out = [w]
    for _ in range(N):
        w = w - alpha * ((A @ w.unsqueeze(-1)).squeeze(-1) - c)
        out.append(w)
    return torch.stack(out)


def _exact_parts(tasks: MetaTasks) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    ex = tasks.exact
    missing = [k for k in ("A", "c", "C", "e", "e0") if k not in ex]
    if missing:
        raise InvalidArgumentError(
            f"tasks.exact lacks {missing}; the quadratic oracles need A, c, C, e, e0 "
            "(use a QuadraticTasks / LinearRegressionTasks sample or tasks_from_quadratics)"
        )
    return ex["A"], ex["c"], ex["C"], ex["e"], ex["e0"]


def _adapted_and_power(theta: Tensor, tasks: MetaTasks, alpha, N: int):
    A, c, C, e, e0 = _exact_parts(tasks)
    N = _check_alpha_N(alpha, N)
    PN, s = _affine_power(_inner_map(A, alpha), alpha * c, N)
    wN = (PN @ theta.unsqueeze(-1)).squeeze(-1) + s
    return PN, wN, C, e, e0


def exact_meta_objective(theta: Tensor, tasks: MetaTasks, alpha, N: int) -> Tensor:
    """Exact N-step MAML meta-objective :math:`\\mathcal L(\\theta)=\\frac1B\\sum_i\\ell^D_i(w^i_N(\\theta))`.

    :math:`\\ell^D_i(w)=\\tfrac12w^\\top C_iw-e_i^\\top w+e^0_i`, :math:`w^i_N` from :func:`maml_adapted`
    (THEORY.md §1.2, exact). Differentiable in theta (and in a tensor alpha) with torch.func.
    """
    _, wN, C, e, e0 = _adapted_and_power(theta, tasks, alpha, N)
    quad = 0.5 * (wN * (C @ wN.unsqueeze(-1)).squeeze(-1)).sum(-1)
    return (quad - (e * wN).sum(-1) + e0).mean()


def exact_meta_gradient(theta: Tensor, tasks: MetaTasks, alpha, N: int) -> Tensor:
    """Exact N-step MAML meta-gradient :math:`\\frac1B\\sum_iP_i^N(C_iw^i_N-e_i)`, :math:`P_i=I-\\alpha A_i`.

    Equals :math:`\\mathbb E_i[P_i^NC_i(a_i-b_i+P_i^N(\\theta-a_i))]` on the population family (THEORY.md §1.2,
    exact; :math:`P_i` is symmetric, so :math:`(\\partial w_N/\\partial\\theta)^\\top=P_i^N`).
    """
    PN, wN, C, e, _ = _adapted_and_power(theta, tasks, alpha, N)
    r = (C @ wN.unsqueeze(-1)).squeeze(-1) - e
    return (PN.transpose(-1, -2) @ r.unsqueeze(-1)).squeeze(-1).mean(0)


def meta_hessian(tasks: MetaTasks, alpha, N: int) -> Tensor:
    """Exact meta-Hessian :math:`H_N=\\frac1B\\sum_iP_i^NC_iP_i^N` (constant in theta; THEORY.md §1.2, exact)."""
    A, c, C, _, _ = _exact_parts(tasks)
    N = _check_alpha_N(alpha, N)
    PN, _ = _affine_power(_inner_map(A, alpha), alpha * c, N)
    H = (PN.transpose(-1, -2) @ C @ PN).mean(0)
    return 0.5 * (H + H.transpose(-1, -2))


def meta_spectrum(tasks: MetaTasks, alpha, N: int) -> Tensor:
    """Eigenvalues (ascending) of :func:`meta_hessian`: L_meta = last, mu_meta = first (THEORY.md §1.2, exact)."""
    return torch.linalg.eigvalsh(meta_hessian(tasks, alpha, N))


# ------------------------------------------------------------------------------------------ losses
def quadratic_loss(w: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
    """One task's loss :math:`\\tfrac12(w-a)^\\top A(w-a)` with ``data = (A, a)``."""
    A, a = data
    r = w - a
    return 0.5 * r @ (A @ r)


def least_squares_loss(w: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
    """One task's loss :math:`\\tfrac12\\,\\mathrm{mean}_j(x_j^\\top w-y_j)^2` with ``data = (X, y)``."""
    X, y = data
    r = X @ w - y
    return 0.5 * (r * r).mean()


def _eig_range(M: Tensor) -> tuple[float, float]:
    ev = torch.linalg.eigvalsh(M)
    return float(ev.min()), float(ev.max())


def tasks_from_quadratics(A: Tensor, a: Tensor, C: Tensor | None = None, b: Tensor | None = None) -> MetaTasks:
    """A MetaTasks batch from explicit task quadratics: support (A_i, a_i), query (C_i, b_i) (defaults C=A, b=a).

    Losses :math:`\\tfrac12(w-a_i)^\\top A_i(w-a_i)` and :math:`\\tfrac12(w-b_i)^\\top C_i(w-b_i)`. Any symmetric
    A_i is allowed, indefinite included (THEORY.md §1.2 nonconvex inner case): ``constants`` hold the exact
    extreme eigenvalues over tasks (L = largest |eigenvalue|, mu = smallest eigenvalue, possibly <= 0), rho = 0.
    """
    if A.dim() != 3 or A.shape[-1] != A.shape[-2] or a.shape != A.shape[:-1]:
        raise InvalidArgumentError(f"need A of shape (B, d, d) and a of shape (B, d); got {tuple(A.shape)}, "
                                   f"{tuple(a.shape)}")
    C = A if C is None else C
    b = a if b is None else b
    if C.shape != A.shape or b.shape != a.shape:
        raise InvalidArgumentError(f"C {tuple(C.shape)} and b {tuple(b.shape)} must match A {tuple(A.shape)} "
                                   f"and a {tuple(a.shape)}")
    ev = torch.linalg.eigvalsh(A)
    evC = torch.linalg.eigvalsh(C)
    c = (A @ a.unsqueeze(-1)).squeeze(-1)
    e = (C @ b.unsqueeze(-1)).squeeze(-1)
    e0 = 0.5 * (b * e).sum(-1)
    consts = Constants(
        L=float(ev.abs().max()), mu=float(ev.min()), rho=0.0, exact=frozenset({"L", "mu", "rho"}),
        extra={"L_query": float(evC.abs().max()), "mu_query": float(evC.min())},
    )
    return MetaTasks(support=(A, a), query=(C, b), loss=quadratic_loss, constants=consts,
                     exact={"A": A, "c": c, "C": C, "e": e, "e0": e0, "a": a, "b": b})


# ------------------------------------------------------------------------------------------ families
@dataclass(frozen=True)
class QuadraticTasks:
    """Strongly convex quadratic tasks (population losses), THEORY.md §1.1-1.2.

    Task i: support loss :math:`\\tfrac12(w-a_i)^\\top A_i(w-a_i)`, query loss :math:`\\tfrac12(w-b_i)^\\top C_i(w-b_i)`.
    :math:`A_i=Q_i\\,\\mathrm{diag}(\\lambda_i)Q_i^\\top` with :math:`Q_i` Haar-orthogonal and
    :math:`\\lambda_i\\in[\\mu,L]` containing mu and L exactly when d >= 2 (so ``constants.L == L`` and
    ``constants.mu == mu``, exact); :math:`a_i\\sim\\mathcal N(m,\\,\\texttt{task\\_spread}^2I)` with
    :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt d`; ``query="same"``: :math:`C_i=A_i`, ``"independent"``: a fresh
    matrix with spectrum in [mu, L]; :math:`b_i=a_i+\\texttt{query\\_shift}\\cdot z_i`, :math:`z_i\\sim\\mathcal N(0,I)`.
    ``shared_curvature=True`` uses one A (and one C) for all tasks, drawn from ``structure_seed`` (the same for
    every batch). Constants (exact, over the batch): L, mu of the support Hessians, rho = 0; ``extra`` has
    L_query, mu_query.
    """

    d: int = 5
    mu: float = 0.1
    L: float = 1.0
    center: float = 1.0
    task_spread: float = 1.0
    query: str = "same"
    query_shift: float = 0.0
    shared_curvature: bool = False
    structure_seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("d", self.d, minimum=1)
        check_bounds(self.mu, self.L)
        check_positive("center", self.center, allow_zero=True)
        check_positive("task_spread", self.task_spread, allow_zero=True)
        check_choice("query", self.query, ("same", "independent"))
        check_positive("query_shift", self.query_shift, allow_zero=True)
        if not isinstance(self.shared_curvature, bool):
            raise InvalidTypeError(f"shared_curvature must be a bool, got {self.shared_curvature!r}")
        check_int("structure_seed", self.structure_seed, minimum=0)
        check_dtype(self.dtype)

    def _matrices(self, B: int, gen: torch.Generator) -> Tensor:
        if self.shared_curvature:
            g0 = make_generator(self.structure_seed)
            lam = spectrum_with_endpoints(1, self.d, self.mu, self.L, g0)
            Q = random_orthogonal(1, self.d, g0)
            return symmetric_from_eig(Q, lam).expand(B, self.d, self.d), lam.expand(B, self.d)
        lam = spectrum_with_endpoints(B, self.d, self.mu, self.L, gen)
        Q = random_orthogonal(B, self.d, gen)
        return symmetric_from_eig(Q, lam), lam

    def sample(self, B: int, seed: int | torch.Generator) -> MetaTasks:
        """B tasks: support (A, a) of shapes (B, d, d), (B, d); query (C, b) likewise."""
        B = check_int("B", B, minimum=1)
        gen = make_generator(seed)
        A, lam = self._matrices(B, gen)
        if self.query == "same":
            C, lamC = A, lam
        elif self.shared_curvature:
            g1 = make_generator(self.structure_seed + 1)
            lamC = spectrum_with_endpoints(1, self.d, self.mu, self.L, g1)
            C = symmetric_from_eig(random_orthogonal(1, self.d, g1), lamC).expand(B, self.d, self.d)
            lamC = lamC.expand(B, self.d)
        else:
            C, lamC = self._matrices(B, gen)
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        a = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)
        b = a + self.query_shift * torch.randn(B, self.d, generator=gen, dtype=torch.float64)
        A, a, C, b = (t.to(self.dtype).contiguous() for t in (A, a, C, b))
        c = (A @ a.unsqueeze(-1)).squeeze(-1)
        e = (C @ b.unsqueeze(-1)).squeeze(-1)
        consts = Constants(
            L=float(lam.max()), mu=float(lam.min()), rho=0.0, exact=frozenset({"L", "mu", "rho"}),
            extra={"L_query": float(lamC.max()), "mu_query": float(lamC.min())},
        )
        return MetaTasks(
            support=(A, a), query=(C, b), loss=quadratic_loss, constants=consts,
            exact={"A": A, "c": c, "C": C, "e": e, "e0": 0.5 * (b * e).sum(-1), "a": a, "b": b,
                   "eigenvalues": lam.to(self.dtype)},
        )

    def init_params(self, seed: int | torch.Generator) -> Tensor:
        """theta_0 ~ N(0, I_d)."""
        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64).to(self.dtype)


@functools.lru_cache(maxsize=64)
def _population(d: int, mu: float, L: float, structure_seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sigma (spectrum in [mu, L], Haar basis from ``structure_seed``), its eigenvalues, and its symmetric square root;
    cached, since every batch of a config shares them (a QR and an eigh per call dominated resampled runs)."""
    g0 = make_generator(structure_seed)
    lam = spectrum_with_endpoints(1, d, mu, L, g0)
    Sigma = symmetric_from_eig(random_orthogonal(1, d, g0), lam)[0]
    ev, V = torch.linalg.eigh(Sigma)
    return Sigma, lam[0], (V * ev.clamp_min(0).sqrt()) @ V.T


@dataclass(frozen=True)
class LinearRegressionTasks:
    """Finite-sample linear-regression tasks (THEORY.md §1.2 with empirical quadratics, §14 item 28).

    Task i: :math:`x\\sim\\mathcal N(0,\\Sigma)`, :math:`\\Sigma` fixed across batches (from ``structure_seed``) with
    spectrum in [mu, L] containing both ends when d >= 2; :math:`w_i\\sim\\mathcal N(m,\\texttt{task\\_spread}^2I)`,
    :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt d`; :math:`y=x^\\top w_i+\\varepsilon`,
    :math:`\\varepsilon\\sim\\mathcal N(0,\\sigma^2)`; S support and D query samples; loss
    :math:`\\tfrac12\\,\\mathrm{mean}_j(x_j^\\top w-y_j)^2`. Constants (exact, over tasks and both sets):
    L / mu = largest / smallest eigenvalue of :math:`X^\\top X/n` (mu = 0 when n < d), rho = 0,
    sigma2 = the noise variance :math:`\\sigma^2`; ``extra``: population L_pop, mu_pop (spectrum of Sigma) and
    per-set L_support, mu_support, L_query, mu_query.
    """

    d: int = 5
    S: int = 10
    D: int = 10
    mu: float = 0.1
    L: float = 1.0
    sigma2: float = 0.1
    center: float = 1.0
    task_spread: float = 1.0
    structure_seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("d", self.d, minimum=1)
        check_int("S", self.S, minimum=1)
        check_int("D", self.D, minimum=1)
        check_bounds(self.mu, self.L)
        check_positive("sigma2", self.sigma2, allow_zero=True)
        check_positive("center", self.center, allow_zero=True)
        check_positive("task_spread", self.task_spread, allow_zero=True)
        check_int("structure_seed", self.structure_seed, minimum=0)
        check_dtype(self.dtype)

    def population_covariance(self) -> tuple[Tensor, Tensor]:
        """(Sigma, its eigenvalues), float64; the same for every batch of this config."""
        Sigma, lam, _ = _population(int(self.d), float(self.mu), float(self.L), int(self.structure_seed))
        return Sigma.clone(), lam.clone()

    def sample(self, B: int, seed: int | torch.Generator) -> MetaTasks:
        """B tasks: support (X, y) of shapes (B, S, d), (B, S); query (X, y) of shapes (B, D, d), (B, D)."""
        B = check_int("B", B, minimum=1)
        gen = make_generator(seed)
        Sigma, lam, root = _population(int(self.d), float(self.mu), float(self.L), int(self.structure_seed))
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        w = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)
        sd = math.sqrt(self.sigma2)

        def draw(n):
            X = torch.randn(B, n, self.d, generator=gen, dtype=torch.float64) @ root
            y = (X @ w.unsqueeze(-1)).squeeze(-1) + sd * torch.randn(B, n, generator=gen, dtype=torch.float64)
            return X.to(self.dtype), y.to(self.dtype)

        Xs, ys = draw(self.S)
        Xq, yq = draw(self.D)
        A = Xs.transpose(-1, -2) @ Xs / self.S
        c = (Xs.transpose(-1, -2) @ ys.unsqueeze(-1)).squeeze(-1) / self.S
        C = Xq.transpose(-1, -2) @ Xq / self.D
        e = (Xq.transpose(-1, -2) @ yq.unsqueeze(-1)).squeeze(-1) / self.D
        e0 = 0.5 * (yq * yq).mean(-1)
        muS, LS = _eig_range(A.double())
        muQ, LQ = _eig_range(C.double())
        mu_S = 0.0 if self.S < self.d else max(muS, 0.0)
        mu_Q = 0.0 if self.D < self.d else max(muQ, 0.0)
        consts = Constants(
            L=max(LS, LQ), mu=min(mu_S, mu_Q), rho=0.0, sigma2=float(self.sigma2),
            exact=frozenset({"L", "mu", "rho", "sigma2"}),
            extra={"L_pop": float(lam.max()), "mu_pop": float(lam.min()), "L_support": LS, "mu_support": mu_S,
                   "L_query": LQ, "mu_query": mu_Q},
        )
        return MetaTasks(
            support=(Xs, ys), query=(Xq, yq), loss=least_squares_loss, constants=consts,
            exact={"A": A, "c": c, "C": C, "e": e, "e0": e0, "w_true": w.to(self.dtype),
                   "Sigma": Sigma.to(self.dtype, copy=True)},
        )

    def init_params(self, seed: int | torch.Generator) -> Tensor:
        """theta_0 ~ N(0, I_d)."""
        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64).to(self.dtype)
