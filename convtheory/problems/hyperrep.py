"""Hyper-representation: meta-learning a shared embedding as a bilevel problem with ridge heads (THEORY.md §10-11).

B few-shot linear-regression tasks share an embedding :math:`\\phi_x(a)` of the inputs; each task fits its own
linear head :math:`y_t\\in\\mathbb R^k` on its support set, and the embedding is judged on the query sets:

.. math:: g(x,y)=\\sum_{t=1}^B\\Big[\\frac1{2S}\\|F_ty_t-u_t\\|^2+\\frac{\\mathrm{reg}}2\\|y_t\\|^2\\Big],\\qquad
          f(x,y)=\\frac1B\\sum_{t=1}^B\\frac1{2D}\\|F^Q_ty_t-u^Q_t\\|^2,

with :math:`F_t=\\phi_x(A_t)\\in\\mathbb R^{S\\times k}` the embedded support inputs (:math:`\\phi_x(A)=Ax` for
``"linear"``, :math:`\\tanh(Ax)` for ``"tanh"``), :math:`u_t` the support targets, and :math:`F^Q_t`, :math:`u^Q_t`
the query set (D points). The inner problem is separable over tasks and is a ridge regression in closed form:
:math:`y^*_t(x)=(F_t^\\top F_t/S+\\mathrm{reg}\\,I)^{-1}F_t^\\top u_t/S` for either embedding. This is the
structure of ITD-BiO / ESJ meta-learning (a shared body, a fresh linear head per task; Ji et al. 2021, Sow et al.
2021) with squared loss so that every oracle is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import grad

from ..types import Constants, Tensor, check_choice, check_int, check_positive
from .base import BilevelProblem, make_generator
from .quadratic import check_dtype



# ------------------------------------------------------------------------------------------ pure functions
def embed(x: Tensor, A: Tensor, embedding: str) -> Tensor:
    """Features :math:`\\phi_x(A)`: ``A @ x`` (linear) or ``tanh(A @ x)``; A is (..., n, d_in), x is (d_in, k)."""
    Ax = A @ x
    return Ax if embedding == "linear" else torch.tanh(Ax)


def ridge_heads(F: Tensor, u: Tensor, reg) -> Tensor:
    """Per-task ridge solution :math:`(F_t^\\top F_t/S+\\mathrm{reg}\\,I)^{-1}F_t^\\top u_t/S`, batched.

    F: (B, S, k) embedded support inputs; u: (B, S) targets; returns (B, k). Differentiable (torch.func).
    """
    S, k = F.shape[-2], F.shape[-1]
    A = F.mT @ F / S + reg * torch.eye(k, dtype=F.dtype, device=F.device)
    rhs = (F.mT @ u.unsqueeze(-1)) / S
    return torch.linalg.solve(A, rhs).squeeze(-1)


def head_losses(F: Tensor, y: Tensor, u: Tensor) -> Tensor:
    """Per-task half mean squared error :math:`\\frac1{2n}\\|F_ty_t-u_t\\|^2`, shape (B,)."""
    r = (F @ y.unsqueeze(-1)).squeeze(-1) - u
    return 0.5 * (r**2).mean(-1)


def inner_spectrum(F: Tensor, reg: float) -> Tensor:
    """Eigenvalues (B, k), ascending, of each task's Hessian block :math:`F_t^\\top F_t/S+\\mathrm{reg}\\,I`."""
    return torch.linalg.eigvalsh(F.mT @ F / F.shape[-2]) + reg


# ------------------------------------------------------------------------------------------------ family
@dataclass(frozen=True)
class HyperRepresentation:
    """Configuration of the hyper-representation family (THEORY.md §10-11; exact oracles by ridge closed form).

    ``num_tasks`` (B) tasks; inputs :math:`a\\sim\\mathcal N(0,I_{d_{in}})`; ``n_support`` (S) and ``n_query`` (D)
    points per task; targets :math:`u=\\phi_{x_{true}}(a)^\\top h_t+\\mathrm{noise}\\,\\varepsilon` with a ground-truth
    embedding :math:`x_{true}\\in\\mathbb R^{d_{in}\\times k_{true}}` (entries :math:`\\mathcal N(0,1/d_{in})`, the same
    nonlinearity as the model) and heads :math:`h_t\\sim\\mathcal N(0,I)`. Outer variable x: the (d_in, k)
    embedding weights, x0 with entries :math:`\\mathcal N(0,1/d_{in})`; inner variable y: heads (B, k), y0 = 0.

    Constants (of g in y; they depend on x): ``mu = reg`` exact as the infimum over x (attained at x = 0, where
    :math:`\\nabla^2_yg=\\mathrm{reg}\\,I`); ``L = reg + max_t lambda_max(F_t^T F_t / S)`` exact at x0 (no bound
    holds for all x: the features grow with x). ``rho``, ``tau``, ``M`` are not given (:math:`\\nabla^2_yg` does not
    depend on y, so the Hessian is 0-Lipschitz in y for fixed x, ``extra["rho_y"] = 0``, but it moves with x).
    ``extra``: ``mu_at_x0`` (exact), ``kappa_at_x0`` = L / mu_at_x0; ``BilevelProblem.extra["inner_constants"](x)``
    returns the exact (mu(x), L(x)).
    """

    num_tasks: int = 8
    d_in: int = 10
    k: int = 5
    n_support: int = 10
    n_query: int = 10
    reg: float = 0.1
    noise: float = 0.1
    embedding: str = "linear"
    k_true: int | None = None
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        for name in ("num_tasks", "d_in", "k", "n_support", "n_query"):
            check_int(name, getattr(self, name), minimum=1)
        if self.k_true is not None:
            check_int("k_true", self.k_true, minimum=1)
        check_positive("reg", self.reg)
        check_positive("noise", self.noise, allow_zero=True)
        check_choice("embedding", self.embedding, ("linear", "tanh"))
        check_dtype(self.dtype)

    def build(self, seed: int | torch.Generator) -> BilevelProblem:
        """Sample the tasks from ``seed``; return the problem with exact oracles and constants."""
        gen = make_generator(seed)
        Bt, d, k, S, D = (int(v) for v in (self.num_tasks, self.d_in, self.k, self.n_support, self.n_query))
        kt = k if self.k_true is None else int(self.k_true)
        dt, emb, reg = torch.float64, self.embedding, float(self.reg)
        x_true = torch.randn(d, kt, generator=gen, dtype=dt) / math.sqrt(d)
        heads = torch.randn(Bt, kt, generator=gen, dtype=dt)
        A_s = torch.randn(Bt, S, d, generator=gen, dtype=dt)
        A_q = torch.randn(Bt, D, d, generator=gen, dtype=dt)

        def targets(A):
            clean = (embed(x_true, A, emb) @ heads.unsqueeze(-1)).squeeze(-1)
            return clean + float(self.noise) * torch.randn(clean.shape, generator=gen, dtype=dt)

        u_s, u_q = targets(A_s), targets(A_q)
        x0 = torch.randn(d, k, generator=gen, dtype=dt) / math.sqrt(d)
        spec0 = inner_spectrum(embed(x0, A_s, emb), reg)

        As, Aq, us, uq = (t.to(self.dtype) for t in (A_s, A_q, u_s, u_q))

        def g(x: Tensor, y: Tensor) -> Tensor:
            """Sum over tasks of the support half-MSE of head y_t on features phi_x plus (reg/2)||y_t||^2."""
            return head_losses(embed(x, As, emb), y, us).sum() + 0.5 * reg * (y**2).sum()

        def f(x: Tensor, y: Tensor) -> Tensor:
            """Mean over tasks of the query half-MSE."""
            return head_losses(embed(x, Aq, emb), y, uq).mean()

        def y_star(x: Tensor) -> Tensor:
            """Exact heads: per-task ridge solve (F_t^T F_t / S + reg I)^{-1} F_t^T u_t / S, batched over tasks."""
            return ridge_heads(embed(x, As, emb), us, reg)

        def phi(x: Tensor) -> Tensor:
            """Hyper-objective Phi(x) = f(x, y*(x))."""
            return f(x, y_star(x))

        phi_grad = grad(phi)

        def hypergradient(x: Tensor) -> Tensor:
            """Exact hypergradient: torch.func.grad of Phi through the batched closed-form ridge solve."""
            return phi_grad(x)

        def inner_constants(x: Tensor) -> tuple[float, float]:
            """Exact (mu(x), L(x)): extreme eigenvalues of the block-diagonal Hessian of g in y at x."""
            ev = inner_spectrum(embed(x, As, emb).double(), reg)
            return float(ev[:, 0].min()), float(ev[:, -1].max())

        L0, mu0 = float(spec0[:, -1].max()), float(spec0[:, 0].min())
        constants = Constants(
            L=L0,
            mu=reg,
            exact=frozenset({"L", "mu"}),
            extra={"mu_at_x0": mu0, "kappa_at_x0": L0 / mu0, "rho_y": 0.0},
        )
        extra = {
            "support": (As, us),
            "query": (Aq, uq),
            "x_true": x_true.to(self.dtype),
            "heads_true": heads.to(self.dtype),
            "embedding": emb,
            "inner_constants": inner_constants,
            "phi": phi,
        }
        return BilevelProblem(
            f=f,
            g=g,
            x0=x0.to(self.dtype),
            y0=torch.zeros(Bt, k, dtype=self.dtype),
            constants=constants,
            y_star=y_star,
            hypergradient=hypergradient,
            extra=extra,
        )
