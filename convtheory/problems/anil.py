"""ANIL tasks: a shared tanh embedding (outer only) and a task-adapted head (THEORY.md §6-7).

Parameters ``{"phi": W (d, width), "u": (width,)}``; features :math:`h=\\tanh(XW)\\in[-1,1]^{n\\times k}` (smooth, so
finite differences and every derivative exist). Only the head ``u`` adapts in the inner loop
(``MetaTasks.exact["inner_params"] == ("u",)``). Two heads (Ji, Lee, Liang, Poor 2020, the two inner geometries of
THEORY.md §7):

- ``head="ridge"``: :math:`\\ell(u)=\\tfrac12\\,\\mathrm{mean}_j(h_j^\\top u-y_j)^2+\\tfrac\\lambda2\\|u\\|^2`, strongly convex
  in u with Hessian :math:`G+\\lambda I`, :math:`G=h^\\top h/n`;
- ``head="nonconvex"``: :math:`\\ell(u)=\\mathrm{mean}_j\\phi(h_j^\\top u-y_j)+\\tfrac\\lambda2\\|u\\|^2` with a robust
  :math:`\\phi` (:data:`convtheory.problems.nonconvex.ROBUST_LOSSES`), Hessian :math:`h^\\top\\mathrm{diag}(\\phi''(r))h/n+\\lambda I`,
  negative curvature where residuals are large.

Constants, for the inner loss in u, hold for **every** embedding W (they use only :math:`|\\tanh|\\le1`, so
:math:`\\|h_j\\|^2\\le k` and :math:`\\|G\\|_2\\le\\max_j\\|h_j\\|^2\\le k`, k = width) [derived; certified bounds]:
ridge: :math:`L=k+\\lambda`, :math:`\\mu=\\lambda`, :math:`\\rho=0` (exact: the Hessian does not depend on u);
nonconvex: :math:`L=\\sup|\\phi''|\\,k+\\lambda`, :math:`\\mu=\\inf\\phi''\\,k+\\lambda` (lower bound, negative when
:math:`\\lambda<|\\inf\\phi''|k`), :math:`\\rho=\\sup|\\phi'''|\\,k^{3/2}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..types import Constants, Tensor, check_choice, check_int, check_positive
from .base import MetaTasks, make_generator
from .nonconvex import ROBUST_LOSSES
from .quadratic import check_dtype, check_probability


@dataclass(frozen=True)
class _ANILLoss:
    """Callable loss(params, (X, y)) for one task; ``link`` is None (squared error) or a robust phi."""

    link: Callable[[Tensor], Tensor] | None
    lam: float

    def __call__(self, params: dict[str, Tensor], data: tuple[Tensor, Tensor]) -> Tensor:
        X, y = data
        u = params["u"]
        r = torch.tanh(X @ params["phi"]) @ u - y
        fit = 0.5 * (r * r).mean() if self.link is None else self.link(r).mean()
        return fit + 0.5 * self.lam * (u * u).sum()


@dataclass(frozen=True)
class ANILTasks:
    """Few-shot regression tasks on a shared tanh embedding with a ridge or nonconvex head (THEORY.md §7).

    Ground truth: embedding :math:`W^\\star` (d x width, entries :math:`\\mathcal N(0,1/d)`, fixed by ``structure_seed``);
    task head :math:`u_i\\sim\\mathcal N(m,\\texttt{task\\_spread}^2I)`, :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt{k}`;
    :math:`x\\sim\\mathcal N(0,I_d)`, :math:`y=\\tanh(x^\\top W^\\star)u_i+\\texttt{noise}\\cdot\\varepsilon`, a label replaced by
    :math:`\\texttt{outlier\\_scale}\\cdot z` with probability ``outlier_frac``; S support, D query samples.
    Loss and constants (for the inner loss in the head u, certified for every W): module docstring.
    """

    d: int = 5
    width: int = 4
    S: int = 10
    D: int = 10
    head: str = "ridge"
    robust: str = "geman_mcclure"
    lam: float = 0.1
    noise: float = 0.1
    outlier_frac: float = 0.0
    outlier_scale: float = 10.0
    center: float = 1.0
    task_spread: float = 1.0
    structure_seed: int = 0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("d", self.d, minimum=1)
        check_int("width", self.width, minimum=1)
        check_int("S", self.S, minimum=1)
        check_int("D", self.D, minimum=1)
        check_choice("head", self.head, ("ridge", "nonconvex"))
        check_choice("robust", self.robust, ROBUST_LOSSES)
        if self.head == "ridge":
            check_positive("lam", self.lam)
        else:
            check_positive("lam", self.lam, allow_zero=True)
        check_positive("noise", self.noise, allow_zero=True)
        check_probability("outlier_frac", self.outlier_frac)
        check_positive("outlier_scale", self.outlier_scale, allow_zero=True)
        check_positive("center", self.center, allow_zero=True)
        check_positive("task_spread", self.task_spread, allow_zero=True)
        check_int("structure_seed", self.structure_seed, minimum=0)
        check_dtype(self.dtype)

    def loss_fn(self) -> Callable:
        """One task's loss ``loss(params, (X, y))``."""
        link = None if self.head == "ridge" else ROBUST_LOSSES[self.robust].phi
        return _ANILLoss(link, float(self.lam))

    def head_constants(self) -> Constants:
        """Certified constants of the inner loss in u, valid for every embedding W (module docstring)."""
        k, lam = float(self.width), float(self.lam)
        if self.head == "ridge":
            return Constants(L=k + lam, mu=lam, rho=0.0, exact=frozenset({"rho"}), extra={"width": k})
        rl = ROBUST_LOSSES[self.robust]
        return Constants(L=rl.d2_abs_sup * k + lam, mu=rl.d2_inf * k + lam, rho=rl.d3_sup * k ** 1.5,
                         exact=frozenset(), extra={"width": k})

    def true_embedding(self) -> Tensor:
        """W* (d, width), float64; the same for every batch of this config."""
        g0 = make_generator(self.structure_seed)
        return torch.randn(self.d, self.width, generator=g0, dtype=torch.float64) / math.sqrt(self.d)

    def sample(self, B: int, seed: int | torch.Generator) -> MetaTasks:
        """B tasks: support (X, y) of shapes (B, S, d), (B, S); query of shapes (B, D, d), (B, D)."""
        B = check_int("B", B, minimum=1)
        gen = make_generator(seed)
        W = self.true_embedding()
        m = torch.full((self.width,), self.center / math.sqrt(self.width), dtype=torch.float64)
        u = m + self.task_spread * torch.randn(B, self.width, generator=gen, dtype=torch.float64)

        def draw(n):
            X = torch.randn(B, n, self.d, generator=gen, dtype=torch.float64)
            y = (torch.tanh(X @ W) @ u.unsqueeze(-1)).squeeze(-1)
            y = y + self.noise * torch.randn(B, n, generator=gen, dtype=torch.float64)
            out = torch.rand(B, n, generator=gen, dtype=torch.float64) < self.outlier_frac
            z = self.outlier_scale * torch.randn(B, n, generator=gen, dtype=torch.float64)
            return X.to(self.dtype), torch.where(out, z, y).to(self.dtype)

        Xs, ys = draw(self.S)
        Xq, yq = draw(self.D)
        return MetaTasks(
            support=(Xs, ys), query=(Xq, yq), loss=self.loss_fn(), constants=self.head_constants(),
            exact={"inner_params": ("u",), "phi_true": W.to(self.dtype), "u_true": u.to(self.dtype)},
        )

    def init_params(self, seed: int | torch.Generator) -> dict[str, Tensor]:
        """{"phi": N(0, 1/d) entries (d, width), "u": N(0, 1/width) entries (width,)}."""
        gen = make_generator(seed)
        phi = torch.randn(self.d, self.width, generator=gen, dtype=torch.float64) / math.sqrt(self.d)
        u = torch.randn(self.width, generator=gen, dtype=torch.float64) / math.sqrt(self.width)
        return {"phi": phi.to(self.dtype), "u": u.to(self.dtype)}
