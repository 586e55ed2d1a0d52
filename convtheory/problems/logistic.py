"""L2-regularised logistic-regression tasks (strongly convex, smooth, Hessian-Lipschitz), with certified constants.

Task loss :math:`\\ell(w)=\\frac1n\\sum_j\\log(1+e^{-y_jx_j^\\top w})+\\tfrac\\lambda2\\|w\\|^2`, :math:`y_j\\in\\{\\pm1\\}`.
With :math:`z_j=y_jx_j^\\top w` the Hessian is :math:`X^\\top\\mathrm{diag}(\\sigma'(z_j))X/n+\\lambda I`, where
:math:`\\sigma'=\\sigma(1-\\sigma)\\in(0,\\tfrac14]` and :math:`|\\sigma''|=|\\sigma(1-\\sigma)(1-2\\sigma)|\\le\\frac1{6\\sqrt3}`
(the maximum of :math:`t(1-t)(1-2t)` on [0, 1] is at :math:`t=\\tfrac12-\\tfrac1{2\\sqrt3}`). Hence (THEORY.md §0
constants, [derived]):

- :math:`L=\\|X\\|_2^2/(4n)+\\lambda` (max over tasks; exact: attained at w = 0, where every
  :math:`\\sigma'(0)=\\tfrac14`),
- :math:`\\mu=\\lambda` (certified lower bound: the data term is PSD),
- :math:`\\rho=\\max_j\\|x_j\\|\\,\\|X\\|_2^2/(6\\sqrt3\\,n)` (max over tasks), since
  :math:`|\\sigma'(z_j(w))-\\sigma'(z_j(v))|\\le\\frac{\\|x_j\\|\\|w-v\\|}{6\\sqrt3}` (labels are ±1; certified
  upper bound, attained for d = n = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..types import Constants, Tensor, check_int, check_positive
from .base import MetaTasks, make_generator
from .quadratic import check_dtype, check_probability

#: sup_z |sigma''(z)| = max_{t in [0,1]} |t(1-t)(1-2t)| = 1/(6 sqrt 3).
SIGMOID_D2_SUP = 1.0 / (6.0 * math.sqrt(3.0))


def logistic_constants(X: Tensor, lam: float) -> tuple[float, float, float]:
    """Certified (L, mu, rho) over a stack of design matrices X of shape (B, n, d) (module docstring)."""
    n = X.shape[-2]
    G_norm = torch.linalg.matrix_norm(X.double(), ord=2) ** 2 / n  # ||X||_2^2 / n per task
    row_max = torch.linalg.vector_norm(X.double(), dim=-1).amax(-1)
    return 0.25 * float(G_norm.max()) + lam, lam, SIGMOID_D2_SUP * float((row_max * G_norm).max())


@dataclass(frozen=True)
class _LogisticLoss:
    """Callable loss(w, (X, y)) = mean_j softplus(-y_j x_j^T w) + lam/2 ||w||^2 (hashable value)."""

    lam: float

    def __call__(self, w: Tensor, data: tuple[Tensor, Tensor]) -> Tensor:
        X, y = data
        return F.softplus(-y * (X @ w)).mean() + 0.5 * self.lam * (w * w).sum()


@dataclass(frozen=True)
class LogisticTasks:
    """Binary logistic-regression tasks with an L2 penalty (strongly convex), THEORY.md §0 constants.

    Task i: separator :math:`w_i\\sim\\mathcal N(m,\\texttt{task\\_spread}^2I)`, :math:`m=\\texttt{center}\\cdot\\mathbf 1/\\sqrt d`;
    features :math:`x\\sim\\mathcal N(0,\\texttt{feature\\_scale}^2I)`; labels :math:`y=\\mathrm{sign}(x^\\top w_i)\\in\\{\\pm1\\}`,
    each flipped with probability ``flip``; S support and D query samples. Loss
    :math:`\\frac1n\\sum_j\\log(1+e^{-y_jx_j^\\top w})+\\frac\\lambda2\\|w\\|^2`. Constants (certified bounds, module
    docstring): L (exact), mu = lam and rho (bounds), over tasks and both sets.
    """

    d: int = 5
    S: int = 20
    D: int = 20
    lam: float = 0.1
    flip: float = 0.0
    feature_scale: float = 1.0
    center: float = 1.0
    task_spread: float = 1.0
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("d", self.d, minimum=1)
        check_int("S", self.S, minimum=1)
        check_int("D", self.D, minimum=1)
        check_positive("lam", self.lam)
        check_probability("flip", self.flip)
        check_positive("feature_scale", self.feature_scale)
        check_positive("center", self.center, allow_zero=True)
        check_positive("task_spread", self.task_spread, allow_zero=True)
        check_dtype(self.dtype)

    def sample(self, B: int, seed: int | torch.Generator) -> MetaTasks:
        """B tasks: support (X, y) of shapes (B, S, d), (B, S) with y in {-1, +1}; query of shapes (B, D, d), (B, D)."""
        B = check_int("B", B, minimum=1)
        gen = make_generator(seed)
        m = torch.full((self.d,), self.center / math.sqrt(self.d), dtype=torch.float64)
        w = m + self.task_spread * torch.randn(B, self.d, generator=gen, dtype=torch.float64)

        def draw(n):
            X = self.feature_scale * torch.randn(B, n, self.d, generator=gen, dtype=torch.float64)
            z = (X @ w.unsqueeze(-1)).squeeze(-1)
            y = torch.where(z >= 0, 1.0, -1.0).to(torch.float64)
            flip = torch.rand(B, n, generator=gen, dtype=torch.float64) < self.flip
            return X.to(self.dtype), torch.where(flip, -y, y).to(self.dtype)

        Xs, ys = draw(self.S)
        Xq, yq = draw(self.D)
        LS, _, rhoS = logistic_constants(Xs, self.lam)
        LQ, _, rhoQ = logistic_constants(Xq, self.lam)
        consts = Constants(L=max(LS, LQ), mu=float(self.lam), rho=max(rhoS, rhoQ), exact=frozenset({"L"}))
        return MetaTasks(support=(Xs, ys), query=(Xq, yq), loss=_LogisticLoss(float(self.lam)), constants=consts,
                         exact={"w_true": w.to(self.dtype)})

    def init_params(self, seed: int | torch.Generator) -> Tensor:
        """w_0 ~ N(0, I_d)."""
        return torch.randn(self.d, generator=make_generator(seed), dtype=torch.float64).to(self.dtype)
