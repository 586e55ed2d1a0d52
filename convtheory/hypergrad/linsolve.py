"""Linear solvers for :math:`Av=b` given only the product :math:`v\\mapsto Av`, as pure functions.

Every solver takes ``matvec`` (a function of a tensor or a dict of tensors returning the same structure), the
right-hand side ``b`` (same structure) and a static number of steps ``Q``; the step size ``eta`` may be a Python
number or a tensor (a new eta does not recompile). The loop over the Q steps is a plain Python loop with no
``.item()`` and no data-dependent branching, so ``torch.func.vmap`` and ``torch.compile(fullgraph=True)`` capture
the whole solve. A is assumed symmetric (CG: positive definite); for the series a step
:math:`\\eta\\le 1/\\lambda_{\\max}(A)` makes them converge.

Cost in matrix-vector products (what the bilevel engine counts as Hessian-vector products):
``cg``: Q (Q + 1 with a starting point ``x0``, for the initial residual); ``neumann``: Q;
``fixed_point``: max(Q - 1, 0) (its first step from :math:`v_0=0` is :math:`\\eta b` and needs no product).

Closed forms, with :math:`A` SPD (THEORY.md §1.3, [derived]):

- fixed point, Q steps from 0: :math:`v_Q=(I-(I-\\eta A)^Q)A^{-1}b`;
- Neumann, terms 0..Q: :math:`\\eta\\sum_{k=0}^{Q}(I-\\eta A)^k b=(I-(I-\\eta A)^{Q+1})A^{-1}b`, i.e. fixed point
  with Q + 1 steps (the hypertorch convention);
- CG: :math:`\\|v_Q-v^*\\|_A\\le 2r^Q\\|v^*\\|_A`, :math:`r=(\\sqrt\\kappa-1)/(\\sqrt\\kappa+1)`, exact (in exact
  arithmetic) after at most n steps, n the number of distinct eigenvalues of A.

>>> import torch
>>> A = torch.tensor([[2.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
>>> x, res = cg(lambda v: A @ v, torch.tensor([2.0, 4.0], dtype=torch.float64), 2)
>>> x.tolist(), res.shape
([1.0, 1.0], torch.Size([3]))
"""

from __future__ import annotations

from typing import Callable

import torch

from ..tree import tree_add, tree_dot, tree_scale, tree_sub, tree_zeros_like
from ..types import Params, check_int, check_positive

Matvec = Callable[[Params], Params]

__all__ = ["cg", "neumann", "fixed_point"]


def _check_eta(eta):
    """A Python step size must be finite and > 0; a tensor passes unchecked (checking would sync the device)."""
    if not isinstance(eta, torch.Tensor):
        check_positive("eta", eta)
    return eta


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > 0, else 0 (keeps CG finite once it has converged exactly; no Python branch)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def cg(matvec: Matvec, b: Params, Q: int, x0: Params | None = None) -> tuple[Params, torch.Tensor]:
    """Q steps of conjugate gradients on :math:`Av=b`; returns ``(x_Q, residual_norms)``.

    Hestenes-Stiefel CG from :math:`x_0` (zero by default): :math:`r_0=b-Ax_0`, :math:`p_0=r_0`, and for
    k = 0..Q-1: :math:`a_k=\\|r_k\\|^2/p_k^\\top Ap_k`, :math:`x_{k+1}=x_k+a_kp_k`, :math:`r_{k+1}=r_k-a_kAp_k`,
    :math:`p_{k+1}=r_{k+1}+(\\|r_{k+1}\\|^2/\\|r_k\\|^2)p_k`. A step whose denominator is 0 (exact convergence) is
    a zero step. Inner products run over all leaves of a dict. ``residual_norms`` is the tensor
    :math:`(\\|r_0\\|,\\dots,\\|r_Q\\|)` of the recursively updated residuals (shape (Q + 1,)).
    Bound: :math:`\\|x_Q-x^*\\|_A\\le2r^Q\\|x^*-x_0\\|_A`, :math:`r=(\\sqrt\\kappa-1)/(\\sqrt\\kappa+1)` (textbook,
    exact constant; THEORY.md §1.3). Costs Q matvecs (Q + 1 with ``x0``).
    """
    Q = check_int("Q", Q, minimum=0)
    if x0 is None:
        x, r = tree_zeros_like(b), b
    else:
        x, r = x0, tree_sub(b, matvec(x0))
    p = r
    rr = tree_dot(r, r)
    norms = [torch.sqrt(rr)]
    for _ in range(Q):
        Ap = matvec(p)
        a = _safe_div(rr, tree_dot(p, Ap))
        x = tree_add(x, p, a)
        r = tree_add(r, Ap, -a)
        rr_new = tree_dot(r, r)
        p = tree_add(r, p, _safe_div(rr_new, rr))
        rr = rr_new
        norms.append(torch.sqrt(rr))
    return x, torch.stack(norms)


def neumann(matvec: Matvec, b: Params, Q: int, eta) -> Params:
    """Truncated Neumann series :math:`v=\\eta\\sum_{k=0}^{Q}(I-\\eta A)^k b` (terms 0..Q) for :math:`A^{-1}b`.

    Equals :func:`fixed_point` with Q + 1 steps: :math:`(I-(I-\\eta A)^{Q+1})A^{-1}b` (THEORY.md §1.3 and §14
    item 19, [derived]); error :math:`\\le(1-\\eta\\mu)^{Q+1}\\|b\\|/\\mu` for :math:`\\eta\\le1/L`. This is the
    stocBiO estimator with one Hessian batch (Ji, Yang, Liang 2021). Costs Q matvecs.
    """
    Q = check_int("Q", Q, minimum=0)
    eta = _check_eta(eta)
    term, acc = b, b
    for _ in range(Q):
        term = tree_add(term, matvec(term), -eta)
        acc = tree_add(acc, term)
    return tree_scale(acc, eta)


def fixed_point(matvec: Matvec, b: Params, Q: int, eta) -> Params:
    """Q steps of the fixed-point (Richardson) iteration :math:`v\\leftarrow v-\\eta(Av-b)` from :math:`v_0=0`.

    Closed form :math:`v_Q=(I-(I-\\eta A)^Q)A^{-1}b`; error :math:`\\le(1-\\eta\\mu)^Q\\|b\\|/\\mu` for
    :math:`\\eta\\le1/L` (THEORY.md §1.3, [derived]; AID-FP of Grazzi et al. 2020). Costs max(Q - 1, 0)
    matvecs: the first step is :math:`v_1=\\eta b`.
    """
    Q = check_int("Q", Q, minimum=0)
    eta = _check_eta(eta)
    if Q == 0:
        return tree_zeros_like(b)
    v = tree_scale(b, eta)
    for _ in range(Q - 1):
        v = tree_add(v, tree_sub(matvec(v), b), -eta)
    return v
