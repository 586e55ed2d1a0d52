"""Quadratic bilevel family with an exact hypergradient and exact estimator answers (THEORY.md §1.3).

.. math:: g(x,y)=\\tfrac12y^\\top Hy-y^\\top(Bx+b),\\qquad f(x,y)=\\tfrac12\\|y-\\bar y\\|^2+\\tfrac\\gamma2\\|x\\|^2,

:math:`x\\in\\mathbb R^p`, :math:`y\\in\\mathbb R^q`, :math:`H=U\\,\\mathrm{diag}(\\lambda)U^\\top` with
:math:`\\lambda\\subset[\\mu,L]` containing :math:`\\mu` and :math:`L` exactly. Then
:math:`y^*(x)=H^{-1}(Bx+b)`, :math:`\\nabla\\Phi(x)=\\gamma x+B^\\top H^{-1}(y^*(x)-\\bar y)` and
:math:`\\nabla^2\\Phi=\\gamma I+B^\\top H^{-2}B` (all [derived], exact).

Module-level pure functions give the exact answers the hypergradient engines must reproduce on this family:
:func:`inner_iterate_exact` (N GD steps), :func:`itd_hypergradient_exact`, :func:`itd_error_exact`,
:func:`fixed_point_v_exact`, :func:`aid_fp_exact`, :func:`neumann_exact`, :func:`esj_moments`. They read the
matrices from ``prob.extra`` (``H, B, b, ybar, gamma, eigenvalues, eigenvectors``) and apply functions of
:math:`H` through its eigendecomposition, so large N stays accurate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..types import Constants, InvalidArgumentError, Tensor, check_choice, check_int, check_positive
from .base import BilevelProblem, make_generator
from .quadratic import check_dtype

_KEYS = ("H", "B", "b", "ybar", "gamma", "eigenvalues", "eigenvectors")


# ------------------------------------------------------------------------------------------------ family
@dataclass(frozen=True)
class QuadraticBilevel:
    """Configuration of the quadratic bilevel family of THEORY.md §1.3 (exact oracles, exact constants).

    ``p``, ``q``: dimensions of x and y. ``mu``, ``L``: the smallest and largest eigenvalues of :math:`H`
    (both attained when q >= 2; q = 1 needs mu == L). ``spectrum``: ``"uniform"`` (mu, L and q - 2 eigenvalues
    uniform on [mu, L]) or ``"linspace"`` (q evenly spaced eigenvalues). ``gamma`` >= 0: outer ridge weight.
    ``b_scale``: entries of :math:`B` are :math:`\\mathcal N(0, b\\_scale^2/p)`; :math:`b`, :math:`\\bar y`, ``x0``
    and ``y0`` are standard normal. ``radius``: the ball :math:`\\|y\\|\\le R` on which ``M`` bounds
    :math:`\\|\\nabla_yf\\|=\\|y-\\bar y\\|`
    (None: :math:`R=2\\max(\\|y_0\\|,\\|y^*(x_0)\\|,\\|y^*(x^*)\\|,\\|\\bar y\\|)`).

    Constants (``L``, ``mu`` of g in y): ``L``, ``mu`` exact; ``rho = 0`` and ``tau = 0`` exact (the Hessian
    :math:`H` and the mixed derivative :math:`\\partial_x\\nabla_yg=-B` are constant); ``M = R + ||ybar||`` exact
    (the supremum over the ball, attained at :math:`y=-R\\bar y/\\|\\bar y\\|`). ``extra``: ``Lxy`` =
    :math:`\\|B\\|_2` (the size of the mixed derivative), ``L_Phi`` = :math:`\\gamma+\\|B^\\top H^{-2}B\\|`,
    ``mu_Phi`` = :math:`\\gamma+\\lambda_{\\min}(B^\\top H^{-2}B)`, ``L_Phi_bound`` = :math:`\\gamma+\\|B\\|^2/\\mu^2`,
    ``M_radius`` = R, ``Phi_star`` = :math:`\\min_x\\Phi`, ``kappa`` = L/mu (all exact except ``L_Phi_bound``).
    """

    p: int = 5
    q: int = 10
    mu: float = 0.1
    L: float = 1.0
    gamma: float = 0.1
    b_scale: float = 1.0
    spectrum: str = "uniform"
    radius: float | None = None
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        check_int("p", self.p, minimum=1)
        q = check_int("q", self.q, minimum=1)
        mu, L = check_positive("mu", self.mu), check_positive("L", self.L)
        if mu > L:
            raise InvalidArgumentError(f"mu = {mu:g} > L = {L:g}; need 0 < mu <= L")
        if q == 1 and mu != L:
            raise InvalidArgumentError(
                f"q = 1 leaves room for one eigenvalue, so mu = {mu:g} and L = {L:g} must be equal (or use q >= 2)"
            )
        check_positive("gamma", self.gamma, allow_zero=True)
        check_positive("b_scale", self.b_scale, allow_zero=True)
        check_choice("spectrum", self.spectrum, ("uniform", "linspace"))
        if self.radius is not None:
            check_positive("radius", self.radius)
        check_dtype(self.dtype)

    def eigenvalues(self, gen: torch.Generator) -> Tensor:
        """The q eigenvalues of H (float64, ascending): both endpoints mu and L exactly, the rest per ``spectrum``."""
        q, mu, L = int(self.q), float(self.mu), float(self.L)
        if self.spectrum == "linspace" or q <= 2:
            lam = torch.linspace(mu, L, q, dtype=torch.float64)
        else:
            inner = mu + (L - mu) * torch.rand(q - 2, generator=gen, dtype=torch.float64)
            lam = torch.cat([torch.tensor([mu, L], dtype=torch.float64), inner])
        lam = torch.sort(lam).values
        lam[0], lam[-1] = mu, L
        return lam

    def build(self, seed: int | torch.Generator) -> BilevelProblem:
        """Sample H, B, b, ybar, x0, y0 from ``seed`` and return the problem with exact oracles and constants."""
        gen = make_generator(seed)
        p, q, dt = int(self.p), int(self.q), torch.float64
        lam = self.eigenvalues(gen)
        G = torch.randn(q, q, generator=gen, dtype=dt)
        Qm, R = torch.linalg.qr(G)
        U = Qm * torch.sign(torch.diagonal(R)).unsqueeze(0)
        H = (U * lam) @ U.T
        H = 0.5 * (H + H.T)
        B = float(self.b_scale) / math.sqrt(p) * torch.randn(q, p, generator=gen, dtype=dt)
        b = torch.randn(q, generator=gen, dtype=dt)
        ybar = torch.randn(q, generator=gen, dtype=dt)
        x0 = torch.randn(p, generator=gen, dtype=dt)
        y0 = torch.randn(q, generator=gen, dtype=dt)
        gamma = float(self.gamma)

        # Hyper-objective Phi(x) = 0.5 x^T A x + r^T x + const with A = gamma I + B^T H^-2 B.
        Hinv_B = U @ ((U.T @ B) / lam[:, None])
        A = gamma * torch.eye(p, dtype=dt) + Hinv_B.T @ Hinv_B
        A = 0.5 * (A + A.T)
        c0 = U @ ((U.T @ b) / lam) - ybar  # y*(0) - ybar
        r = Hinv_B.T @ c0
        s, V = torch.linalg.eigh(A)
        keep = s > s.max().clamp_min(1e-300) * 1e-12
        x_star = -(V[:, keep] @ ((V[:, keep].T @ r) / s[keep]))  # minimum-norm minimiser
        Phi_star = 0.5 * torch.sum((Hinv_B @ x_star + c0) ** 2) + 0.5 * gamma * torch.sum(x_star**2)
        sB = torch.linalg.svdvals(B)
        BtH2B = torch.linalg.eigvalsh(Hinv_B.T @ Hinv_B)  # ascending; rank <= min(p, q)
        mu_Phi = gamma + (max(float(BtH2B[0]), 0.0) if p <= q else 0.0)

        def ystar64(x):
            return U @ ((U.T @ (B @ x + b)) / lam)

        if self.radius is None:
            norms = [y0, ystar64(x0), ystar64(x_star), ybar]
            R = 2.0 * max(float(torch.linalg.vector_norm(v)) for v in norms)
        else:
            R = float(self.radius)
        ybar_norm = float(torch.linalg.vector_norm(ybar))

        cast = dict(dtype=self.dtype)
        Hc, Bc, bc, ybc, Uc, lamc = (t.to(**cast) for t in (H, B, b, ybar, U, lam))

        def g(x: Tensor, y: Tensor) -> Tensor:
            """Inner objective 0.5 y^T H y - y^T (B x + b)."""
            return 0.5 * (y * (y @ Hc)).sum(-1) - (y * (x @ Bc.T + bc)).sum(-1)

        def f(x: Tensor, y: Tensor) -> Tensor:
            """Outer objective 0.5 ||y - ybar||^2 + (gamma / 2) ||x||^2."""
            return 0.5 * ((y - ybc) ** 2).sum(-1) + 0.5 * gamma * (x**2).sum(-1)

        def y_star(x: Tensor) -> Tensor:
            """Exact lower-level solution H^{-1}(B x + b) (THEORY.md §1.3)."""
            return _apply_fn(Uc, 1.0 / lamc, x @ Bc.T + bc)

        def hypergradient(x: Tensor) -> Tensor:
            """Exact hypergradient gamma x + B^T H^{-1} (y*(x) - ybar) (THEORY.md §1.3)."""
            return gamma * x + _apply_fn(Uc, 1.0 / lamc, y_star(x) - ybc) @ Bc

        def phi(x: Tensor) -> Tensor:
            """Hyper-objective Phi(x) = f(x, y*(x))."""
            return f(x, y_star(x))

        L_Phi = gamma + float(BtH2B[-1])
        constants = Constants(
            L=float(self.L),
            mu=float(self.mu),
            rho=0.0,
            tau=0.0,
            M=R + ybar_norm,
            exact=frozenset({"L", "mu", "rho", "tau", "M"}),
            extra={
                "Lxy": float(sB.max()),
                "L_Phi": L_Phi,
                "mu_Phi": mu_Phi,
                "L_Phi_bound": gamma + float(sB.max()) ** 2 / float(self.mu) ** 2,
                "M_radius": R,
                "Phi_star": float(Phi_star),
                "kappa": float(self.L) / float(self.mu),
            },
        )
        extra = {
            "H": Hc,
            "B": Bc,
            "b": bc,
            "ybar": ybc,
            "gamma": gamma,
            "eigenvalues": lamc,
            "eigenvectors": Uc,
            "x_star": x_star.to(**cast),
            "Phi_star": float(Phi_star),
            "phi": phi,
        }
        return BilevelProblem(
            f=f,
            g=g,
            x0=x0.to(**cast),
            y0=y0.to(**cast),
            constants=constants,
            y_star=y_star,
            hypergradient=hypergradient,
            extra=extra,
        )


# ------------------------------------------------------------------------------------------ exact answers
def _apply_fn(U: Tensor, d: Tensor, v: Tensor) -> Tensor:
    """U diag(d) U^T v for v of shape (..., q) (a function of H applied through its eigendecomposition)."""
    return ((v @ U) * d) @ U.T


def _parts(prob: BilevelProblem) -> dict:
    missing = [k for k in _KEYS if k not in prob.extra]
    if missing:
        raise InvalidArgumentError(
            f"prob.extra lacks {missing}; these exact answers need a problem built by QuadraticBilevel.build"
        )
    return {k: prob.extra[k] for k in _KEYS}


def _step(name: str, value) -> None:
    if not isinstance(value, Tensor):
        check_positive(name, value)


def inner_iterate_exact(prob: BilevelProblem, x: Tensor, y0: Tensor, alpha, N: int) -> Tensor:
    """Exact N-th gradient-descent iterate on g(x, .) from y0.

    :math:`y_N=y^*+P^N(y_0-y^*)`, :math:`P=I-\\alpha H`, :math:`y^*=H^{-1}(Bx+b)` (THEORY.md §1.3, exact for every
    alpha > 0 and N >= 0).
    """
    _step("alpha", alpha)
    N = check_int("N", N, minimum=0)
    m = _parts(prob)
    U, lam = m["eigenvectors"], m["eigenvalues"]
    ys = _apply_fn(U, 1.0 / lam, x @ m["B"].T + m["b"])
    return ys + _apply_fn(U, (1.0 - alpha * lam) ** N, y0 - ys)


def itd_hypergradient_exact(prob: BilevelProblem, x: Tensor, y0: Tensor, alpha, N: int) -> Tensor:
    """Exact ITD hypergradient: reverse mode through N GD steps (step alpha) on g from y0 (y0 independent of x).

    :math:`\\hat g_{\\rm ITD}=\\gamma x+B^\\top(I-P^N)H^{-1}(y_N-\\bar y)`, :math:`P=I-\\alpha H`,
    :math:`y_N` from :func:`inner_iterate_exact`
    (THEORY.md §1.3, exact; :math:`\\partial y_N/\\partial x=(I-P^N)H^{-1}B`).
    """
    yN = inner_iterate_exact(prob, x, y0, alpha, N)
    m = _parts(prob)
    lam = m["eigenvalues"]
    d = (1.0 - (1.0 - alpha * lam) ** N) / lam
    return m["gamma"] * x + _apply_fn(m["eigenvectors"], d, yN - m["ybar"]) @ m["B"]


def itd_error_exact(prob: BilevelProblem, x: Tensor, y0: Tensor, alpha, N: int) -> Tensor:
    """Exact ITD error vector :math:`e_{\\rm ITD}(N)=\\hat g_{\\rm ITD}-\\nabla\\Phi(x)`.

    :math:`e_{\\rm ITD}(N)=B^\\top H^{-1}P^N[(y_0-y^*)-(y_N-\\bar y)]`, :math:`P=I-\\alpha H`, so
    :math:`\\|e\\|\\le\\frac{\\|B\\|}{\\mu}q^N(\\|y_0-y^*\\|+\\|y_N-\\bar y\\|)` with :math:`q=\\|P\\|`
    (THEORY.md §1.3 and
    §14 item 17, exact; decay :math:`q^N` with no polynomial prefactor).
    """
    yN = inner_iterate_exact(prob, x, y0, alpha, N)
    m = _parts(prob)
    U, lam = m["eigenvectors"], m["eigenvalues"]
    ys = _apply_fn(U, 1.0 / lam, x @ m["B"].T + m["b"])
    return _apply_fn(U, (1.0 - alpha * lam) ** N / lam, (y0 - ys) - (yN - m["ybar"])) @ m["B"]


def fixed_point_v_exact(prob: BilevelProblem, y: Tensor, eta, Q: int) -> Tensor:
    """Exact Q-th iterate of the fixed-point (Richardson) solver for :math:`Hv=\\nabla_yf=y-\\bar y` from v_0 = 0.

    Iteration :math:`v_{k+1}=v_k-\\eta(Hv_k-(y-\\bar y))`, closed form :math:`v_Q=(I-(I-\\eta H)^Q)H^{-1}(y-\\bar y)`
    (THEORY.md §1.3, exact for every eta > 0 and Q >= 0). It is :math:`\\eta` times hypertorch's ``fixed_point`` v.
    """
    _step("eta", eta)
    Q = check_int("Q", Q, minimum=0)
    m = _parts(prob)
    lam = m["eigenvalues"]
    return _apply_fn(m["eigenvectors"], (1.0 - (1.0 - eta * lam) ** Q) / lam, y - m["ybar"])


def aid_fp_exact(prob: BilevelProblem, x: Tensor, y: Tensor, eta, Q: int) -> Tensor:
    """Exact AID fixed-point hypergradient at inner point y: :math:`\\gamma x+B^\\top v_Q`.

    :math:`v_Q=(I-(I-\\eta H)^Q)H^{-1}(y-\\bar y)` from :func:`fixed_point_v_exact`
    (:math:`\\nabla_xf-\\partial_x\\nabla_yg^\\top v=\\gamma x+B^\\top v`). At :math:`y=y_N` with :math:`\\eta=\\alpha`,
    :math:`Q=N` it equals :func:`itd_hypergradient_exact` (THEORY.md §1.3 and §14 item 19, exact).
    """
    m = _parts(prob)
    return m["gamma"] * x + fixed_point_v_exact(prob, y, eta, Q) @ m["B"]


def neumann_exact(prob: BilevelProblem, x: Tensor, y: Tensor, eta, Q: int) -> Tensor:
    """Exact Neumann-series hypergradient with terms j = 0..Q.

    :math:`\\hat g=\\gamma x+B^\\top\\eta\\sum_{j=0}^Q(I-\\eta H)^j(y-\\bar y)`.

    Equal to :func:`aid_fp_exact` with Q + 1 steps, since
    :math:`\\eta\\sum_{j=0}^{Q}(I-\\eta H)^j=(I-(I-\\eta H)^{Q+1})H^{-1}`
    (THEORY.md §1.3, exact; also the mean of stocBiO's estimator with independent Hessian batches).
    """
    Q = check_int("Q", Q, minimum=0)
    return aid_fp_exact(prob, x, y, eta, Q + 1)


class ESJMoments(NamedTuple):
    """Exact moments of the one-direction ESJ hypergradient :math:`\\hat g_1=\\gamma x+s\\,uu^\\top a`.

    ``mean``: :math:`\\mathbb E\\hat g_1` (= the ITD hypergradient for ``"gaussian"`` and ``"sphere"``);
    ``variance``: :math:`\\mathbb E\\|\\hat g_1-\\mathbb E\\hat g_1\\|^2`, so Q independent directions give
    :math:`\\mathbb E\\|\\hat g_Q-\\text{mean}\\|^2=\\text{variance}/Q`; ``itd``: the ITD hypergradient;
    ``a``: :math:`J_N^\\top(y_N-\\bar y)`.
    """

    mean: Tensor
    variance: Tensor
    itd: Tensor
    a: Tensor


def esj_moments(prob: BilevelProblem, x: Tensor, y0: Tensor, alpha, N: int, directions: str = "gaussian") -> ESJMoments:
    """Exact mean and variance of the ES-Jacobian (ESJ) hypergradient on the quadratic family.

    The forward difference through N GD steps is exact, :math:`(y_N(x+\\delta u)-y_N(x))/\\delta=J_Nu` with
    :math:`J_N=(I-P^N)H^{-1}B`; with :math:`a=J_N^\\top(y_N-\\bar y)` one direction gives
    :math:`\\hat g_1=\\gamma x+s\\,uu^\\top a`. ``directions``: ``"gaussian"`` (:math:`u\\sim\\mathcal N(0,I_p)`, s = 1:
    mean ITD, variance :math:`(p+1)\\|a\\|^2`), ``"sphere"`` (u uniform on the unit sphere, s = p: mean ITD,
    variance :math:`(p-1)\\|a\\|^2`), ``"sphere_unscaled"`` (s = 1: mean :math:`\\gamma x+a/p`, variance
    :math:`(p-1)\\|a\\|^2/p^2`) (THEORY.md §1.3 and §14 item 25, exact; Sow, Ji, Liang 2021 for the estimator).
    """
    check_choice("directions", directions, ("gaussian", "sphere", "sphere_unscaled"))
    m = _parts(prob)
    itd = itd_hypergradient_exact(prob, x, y0, alpha, N)
    a = itd - m["gamma"] * x
    p = x.shape[-1]
    a2 = (a**2).sum(-1)
    if directions == "gaussian":
        return ESJMoments(itd, (p + 1) * a2, itd, a)
    if directions == "sphere":
        return ESJMoments(itd, (p - 1) * a2, itd, a)
    return ESJMoments(m["gamma"] * x + a / p, (p - 1) * a2 / p**2, itd, a)
