"""Nonconvex robust-regression tasks with certified smoothness, curvature and Hessian-Lipschitz constants.

Task loss :math:`\\ell(w)=\\frac1n\\sum_j\\phi(x_j^\\top w-y_j)+\\tfrac\\lambda2\\|w\\|^2` with a bounded, smooth,
nonconvex :math:`\\phi` (Geman-McClure or Cauchy). Its Hessian is :math:`X^\\top\\mathrm{diag}(\\phi''(r))X/n+\\lambda I`,
so with :math:`G=X^\\top X/n` (THEORY.md §0 constants, derivation [derived]):

- :math:`\\|\\nabla^2\\ell\\|\\le\\sup|\\phi''|\\,\\|G\\|+\\lambda=:L`,
- :math:`\\lambda_{\\min}(\\nabla^2\\ell)\\ge\\inf\\phi''\\,\\|G\\|+\\lambda=:\\mu` (negative: a lower bound on the most
  negative curvature),
- :math:`\\|\\nabla^2\\ell(w)-\\nabla^2\\ell(v)\\|\\le\\sup|\\phi'''|\\max_j\\|x_j\\|\\,\\|G\\|\\,\\|w-v\\|=:\\rho\\|w-v\\|`, because
  :math:`|\\phi''(r_j(w))-\\phi''(r_j(v))|\\le\\sup|\\phi'''|\\,\\|x_j\\|\\|w-v\\|` and
  :math:`X^\\top\\mathrm{diag}(\\delta)X/n\\preceq\\max_j|\\delta_j|\\,G` in norm.

The suprema of :math:`\\phi` are closed forms (:data:`ROBUST_LOSSES`), derived in :class:`RobustLoss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..types import Constants, Tensor, check_choice, check_int, check_positive
from .base import MetaTasks, make_generator
from .quadratic import check_dtype, check_probability


@dataclass(frozen=True)
class RobustLoss:
    """A bounded smooth robust loss phi(r) with exact derivative extremes.

    ``d2_sup`` = sup phi'', ``d2_inf`` = inf phi'' (< 0: nonconvex), ``d3_sup`` = sup |phi'''|, each exact.
    """

    name: str
    phi: Callable[[Tensor], Tensor]
    d2_sup: float
    d2_inf: float
    d3_sup: float

    @property
    def d2_abs_sup(self) -> float:
        """sup |phi''| = max(sup phi'', -inf phi'')."""
        return max(self.d2_sup, -self.d2_inf)


def geman_mcclure(r: Tensor) -> Tensor:
    """:math:`\\phi(r)=r^2/(1+r^2)`."""
    r2 = r * r
    return r2 / (1.0 + r2)


def cauchy(r: Tensor) -> Tensor:
    """:math:`\\phi(r)=\\log(1+r^2/2)`."""
    return torch.log1p(0.5 * r * r)


def _gm_constants() -> tuple[float, float, float]:
    # phi'' = (2 - 6 r^2)/(1+r^2)^3: max 2 at r = 0, min -1/2 at r^2 = 1.
    # phi''' = 24 r (r^2 - 1)/(1+r^2)^4; phi'''' = 24(-5 r^4 + 10 r^2 - 1)/(1+r^2)^5 = 0 at r^2 = 1 +- 2/sqrt(5);
    # |phi'''| is largest at r^2 = 1 - 2/sqrt(5).
    s = 1.0 - 2.0 / math.sqrt(5.0)
    r = math.sqrt(s)
    d3 = 24.0 * r * (1.0 - s) / (1.0 + s) ** 4
    return 2.0, -0.5, d3


def _cauchy_constants() -> tuple[float, float, float]:
    # phi'' = (4 - 2 r^2)/(2+r^2)^2: max 1 at r = 0, min -1/8 at r^2 = 6.
    # phi''' = 4 r (r^2 - 6)/(2+r^2)^3; phi'''' = 4(-3 r^4 + 36 r^2 - 12)/(2+r^2)^4 = 0 at r^2 = 6 +- 4 sqrt(2);
    # |phi'''| is largest at r^2 = 6 - 4 sqrt(2).
    s = 6.0 - 4.0 * math.sqrt(2.0)
    r = math.sqrt(s)
    d3 = 4.0 * r * (6.0 - s) / (2.0 + s) ** 3
    return 1.0, -0.125, d3


#: name -> RobustLoss with exact sup phi'', inf phi'', sup |phi'''|.
ROBUST_LOSSES: dict[str, RobustLoss] = {
    "geman_mcclure": RobustLoss("geman_mcclure", geman_mcclure, *_gm_constants()),
    "cauchy": RobustLoss("cauchy", cauchy, *_cauchy_constants()),
}


def robust_loss(name: str) -> RobustLoss:
    """Look up a robust loss by name (see :data:`ROBUST_LOSSES`)."""
    return ROBUST_LOSSES[check_choice("phi", name, ROBUST_LOSSES)]


def robust_constants(X: Tensor, rl: RobustLoss, lam: float) -> tuple[float, float, float]:
    """Certified (L, mu, rho) over a stack of design matrices X of shape (B, n, d), as in the module docstring."""
    n = X.shape[-2]
    G_norm = torch.linalg.matrix_norm(X.double(), ord=2) ** 2 / n  # ||X^T X / n||_2 per task
    row_max = torch.linalg.vector_norm(X.double(), dim=-1).amax(-1)  # max_j ||x_j|| per task
    L = rl.d2_abs_sup * float(G_norm.max()) + lam
    mu = rl.d2_inf * float(G_norm.max()) + lam
    rho = rl.d3_sup * float((row_max * G_norm).max())
    return L, mu, rho


@dataclass(frozen=True)
class RobustRegressionTasks:
    """Nonconvex robust linear regression tasks (bounded smooth loss, known L, mu < 0 and rho).

    Task i: :math:`x\\sim\\mathcal N(0,\\texttt{feature\\_scale}^2I)`, :math:`w_i\\sim\\mathcal N(m,\\texttt{task\\_spread}^2I)`,
    :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt d`, :math:`y=x^\\top w_i+\\texttt{noise}\\cdot\\varepsilon`, and with
    probability ``outlier_frac`` a label is replaced by :math:`\\texttt{outlier\\_scale}\\cdot z`; S support, D query
    samples. Loss :math:`\\frac1n\\sum_j\\phi(x_j^\\top w-y_j)+\\frac\\lambda2\\|w\\|^2` with ``phi`` in
    :data:`ROBUST_LOSSES`. Constants (certified bounds, none exact; module docstring): L, mu (negative lower
    bound on the smallest Hessian eigenvalue), rho, over tasks and both sets.
    """

    d: int = 5
    S: int = 20
    D: int = 20
    phi: str = "geman_mcclure"
    lam: float = 0.0
    noise: float = 0.1
    outlier_frac: float = 0.1
    outlier_scale: float = 10.0
    feature_scale: float = 1.0
    center: float = 1.0
    task_spread: float = 1.0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("d", self.d, minimum=1)
        check_int("S", self.S, minimum=1)
        check_int("D", self.D, minimum=1)
        check_choice("phi", self.phi, ROBUST_LOSSES)
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("noise", self.noise, allow_zero=True)
        check_probability("outlier_frac", self.outlier_frac)
        check_positive("outlier_scale", self.outlier_scale, allow_zero=True)
        check_positive("feature_scale", self.feature_scale)
        check_positive("center", self.center, allow_zero=True)
        check_positive("task_spread", self.task_spread, allow_zero=True)
        check_dtype(self.dtype)

    @property
    def robust(self) -> RobustLoss:
        return ROBUST_LOSSES[self.phi]

    def loss_fn(self) -> Callable:
        """One task's loss ``loss(w, (X, y))``."""
        return _RobustRegressionLoss(self.robust.phi, float(self.lam))

    def sample(self, B: int, seed: int | torch.Generator) -> MetaTasks:
        """B tasks: support (X, y) of shapes (B, S, d), (B, S); query of shapes (B, D, d), (B, D)."""
        B = check_int("B", B, minimum=1)
        gen = make_generator(seed)
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        w = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)

        def draw(n):
            X = self.feature_scale * torch.randn(B, n, self.d, generator=gen, dtype=torch.float64)
            y = (X @ w.unsqueeze(-1)).squeeze(-1) + self.noise * torch.randn(B, n, generator=gen,
                                                                              dtype=torch.float64)
            out = torch.rand(B, n, generator=gen, dtype=torch.float64) < self.outlier_frac
            z = self.outlier_scale * torch.randn(B, n, generator=gen, dtype=torch.float64)
            return X.to(self.dtype), torch.where(out, z, y).to(self.dtype)

        Xs, ys = draw(self.S)
        Xq, yq = draw(self.D)
        LS, muS, rhoS = robust_constants(Xs, self.robust, self.lam)
        LQ, muQ, rhoQ = robust_constants(Xq, self.robust, self.lam)
        consts = Constants(
            L=max(LS, LQ), mu=min(muS, muQ), rho=max(rhoS, rhoQ), exact=frozenset(),
            extra={"phi_d2_sup": self.robust.d2_sup, "phi_d2_inf": self.robust.d2_inf,
                   "phi_d3_sup": self.robust.d3_sup},
        )
        return MetaTasks(support=(Xs, ys), query=(Xq, yq), loss=self.loss_fn(), constants=consts,
                         exact={"w_true": w.to(self.dtype)})

    def init_params(self, seed: int | torch.Generator) -> Tensor:
        """w_0 ~ N(0, I_d)."""
        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64).to(self.dtype)


@dataclass(frozen=True)
class _RobustRegressionLoss:
    """Callable loss(w, (X, y)) = mean_j phi(x_j^T w - y_j) + lam/2 ||w||^2 (a frozen value: hashable, comparable)."""

    phi: Callable[[Tensor], Tensor]
    lam: float

    def __call__(self, w: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
        X, y = data
        return self.phi(X @ w - y).mean() + 0.5 * self.lam * (w * w).sum()
