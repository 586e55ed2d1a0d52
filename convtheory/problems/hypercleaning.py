"""Data hyper-cleaning on scikit-learn's digits: learn per-example weights that undo label noise (THEORY.md §9-10).

Inner problem (weighted multinomial logistic regression, :math:`W\\in\\mathbb R^{d\\times K}`, d = 65, K = 10):

.. math:: g(x,W)=\\frac1n\\sum_{i=1}^n\\sigma(x_i)\\,\\mathrm{CE}(W;z_i,c_i)+\\frac{\\mathrm{reg}}2\\|W\\|_F^2,
          \\qquad f(x,W)=\\frac1{n_v}\\sum_{j=1}^{n_v}\\mathrm{CE}(W;z^v_j,c^v_j),

with :math:`\\mathrm{CE}(W;z,c)=-\\log\\mathrm{softmax}(W^\\top z)_c`, :math:`\\sigma` the logistic function, x the
per-training-example logits (the outer variable) and :math:`z_i` the 64 pixels scaled to [0, 1] plus a bias 1.
A fraction of the training labels is replaced by a uniformly random wrong class; the validation and test labels
are clean. The setting follows Franceschi et al. 2017 / Grazzi et al. 2020 / Ji et al. 2021 (MNIST there; digits
here so that the exact oracles are dense 650 x 650 solves and no download is needed).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..types import Constants, InvalidArgumentError, Tensor, check_int, check_positive
from .base import BilevelProblem, make_generator
from .quadratic import check_dtype

K_CLASSES = 10
_N_DIGITS = 1797


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    """(features in [0, 1] with a bias column (1797, 65), labels (1797,)), float64 / int64 (cached)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    Z = torch.as_tensor(data.data, dtype=torch.float64) / 16.0
    Z = torch.cat([Z, torch.ones(Z.shape[0], 1, dtype=torch.float64)], dim=1)
    return Z, torch.as_tensor(data.target, dtype=torch.int64)


# ------------------------------------------------------------------------------------------ pure functions
def cross_entropy(W: Tensor, Z: Tensor, Y: Tensor) -> Tensor:
    """Per-example softmax cross-entropy :math:`-\\sum_kY_{ik}\\log\\mathrm{softmax}(ZW)_{ik}` (Y one-hot), (n,)."""
    return -(Y * torch.log_softmax(Z @ W, dim=-1)).sum(-1)


def weighted_loss(x: Tensor, W: Tensor, Z: Tensor, Y: Tensor, reg: float) -> Tensor:
    """Inner objective :math:`\\frac1n\\sum_i\\sigma(x_i)\\mathrm{CE}_i(W)+\\frac{\\mathrm{reg}}2\\|W\\|_F^2`."""
    return (torch.sigmoid(x) * cross_entropy(W, Z, Y)).mean() + 0.5 * reg * (W**2).sum()


def inner_gradient(x: Tensor, W: Tensor, Z: Tensor, Y: Tensor, reg: float) -> Tensor:
    """Closed-form inner gradient, P = softmax(ZW).

    :math:`\\nabla_Wg=\\frac1nZ^\\top\\mathrm{diag}(\\sigma(x))(P-Y)+\\mathrm{reg}\\,W` (exact).
    """
    P = torch.softmax(Z @ W, dim=-1)
    return Z.T @ (torch.sigmoid(x)[:, None] * (P - Y)) / Z.shape[0] + reg * W


def inner_hessian(x: Tensor, W: Tensor, Z: Tensor, reg: float) -> Tensor:
    """Closed-form dense :math:`\\nabla^2_Wg` in row-major vec(W) order, shape (dK, dK).

    :math:`\\nabla^2_Wg=\\frac1n\\sum_i\\sigma(x_i)\\,z_iz_i^\\top\\otimes(\\mathrm{diag}(p_i)-p_ip_i^\\top)
    +\\mathrm{reg}\\,I`
    with :math:`p_i=\\mathrm{softmax}(W^\\top z_i)` (exact; tests compare it with torch.func.hessian).
    """
    n, d = Z.shape
    K = W.shape[1]
    P = torch.softmax(Z @ W, dim=-1)
    w = torch.sigmoid(x) / n
    diag = torch.einsum("ia,ik,ib->akb", Z * w[:, None], P, Z)  # sum_i w_i z_ia z_ib p_ik
    H = torch.einsum("akb,kl->akbl", diag, torch.eye(K, dtype=Z.dtype)).reshape(d * K, d * K)
    G = (Z[:, :, None] * P[:, None, :]).reshape(n, d * K)  # rows z_i (x) p_i
    H = H - G.T @ (w[:, None] * G)
    return 0.5 * (H + H.T) + reg * torch.eye(d * K, dtype=Z.dtype)


def _spd_solve(A: Tensor, b: Tensor) -> Tensor:
    """Solve A v = b for symmetric positive definite A by Cholesky."""
    return torch.cholesky_solve(b[:, None], torch.linalg.cholesky(A))[:, 0]


def newton_solve(x: Tensor, Z: Tensor, Y: Tensor, reg: float, *, tol: float = 1e-12, max_iter: int = 100) -> Tensor:
    """Minimise the strongly convex :func:`weighted_loss` over W by damped Newton (Armijo backtracking) from W = 0.

    Stops when :math:`\\|\\nabla_Wg\\|_F\\le` tol (float64 throughout); raises RuntimeError if ``max_iter`` Newton
    steps do not get there. Not differentiable: an exact oracle, not an engine.
    """
    x, Z, Y = x.detach().double(), Z.double(), Y.double()
    d, K = Z.shape[1], Y.shape[1]
    W = torch.zeros(d, K, dtype=torch.float64)
    loss = lambda V: float(weighted_loss(x, V, Z, Y, reg))  # noqa: E731
    for _ in range(max_iter):
        G = inner_gradient(x, W, Z, Y, reg)
        gnorm = float(torch.linalg.matrix_norm(G))
        if gnorm <= tol:
            return W
        step = -_spd_solve(inner_hessian(x, W, Z, reg), G.reshape(-1)).reshape(d, K)
        decrement = -float((G * step).sum())
        t, f0 = 1.0, loss(W)
        if decrement > 1e-14:  # far from the optimum: backtrack; close to it, full steps (rounding blurs f)
            while loss(W + t * step) > f0 - 0.25 * t * decrement and t > 1e-10:
                t *= 0.5
        W = W + t * step
    raise RuntimeError(f"Newton did not reach ||grad|| <= {tol:g} in {max_iter} steps (last {gnorm:g})")


def accuracy(W: Tensor, Z: Tensor, labels: Tensor) -> Tensor:
    """Fraction of examples whose arg-max logit :math:`\\arg\\max_k(ZW)_k` equals the label."""
    return ((Z @ W).argmax(-1) == labels).to(W.dtype).mean()


# ------------------------------------------------------------------------------------------------ family
@dataclass(frozen=True)
class HyperCleaning:
    """Configuration of data hyper-cleaning on digits (THEORY.md §10 experiments; Ji et al. 2021, Grazzi et al. 2020).

    ``n_train``, ``n_val``: sizes of the training and validation splits; ``n_test``: size of the test split
    (None: the rest of the 1797 digits). The split is a seeded random permutation. ``corruption``: fraction of
    training labels replaced by a uniformly random wrong class (exactly ``round(corruption * n_train)`` of
    them). ``reg``: ridge weight of the inner problem. x0 = 0 (all weights 1/2), y0 = W = 0.

    Constants (of g in W): ``mu = reg`` exact (attained along :math:`W=v\\mathbf 1^\\top`, where the softmax Hessian
    vanishes); ``L = reg + lambda_max(Z^T Z) / (2n)`` a certified bound for every x and W (weights
    :math:`\\sigma(x_i)\\le1` and :math:`\\lambda_{\\max}(\\mathrm{diag}(p)-pp^\\top)\\le\\tfrac12`, Gershgorin);
    ``M = sqrt(2) max_j ||z^v_j||`` a bound on :math:`\\|\\nabla_Wf\\|` (:math:`\\|p-e_c\\|\\le\\sqrt2`). ``extra``:
    ``L_at_x0`` (the same bound with the weights :math:`\\sigma(x_0)`), ``Lxy`` (a bound on
    :math:`\\|\\nabla_x\\nabla_Wg\\|_2\\le\\frac{\\sqrt2}{4n}\\|Z\\|_F`, :math:`\\sigma'\\le\\tfrac14`),
    ``kappa`` = L/mu (a bound).
    rho and tau are not given.
    """

    n_train: int = 800
    n_val: int = 400
    n_test: int | None = None
    corruption: float = 0.3
    reg: float = 1e-2
    newton_tol: float = 1e-12
    dtype: torch.dtype = torch.float64

    def __post_init__(self):
        n_tr = check_int("n_train", self.n_train, minimum=1)
        n_v = check_int("n_val", self.n_val, minimum=1)
        rest = _N_DIGITS - n_tr - n_v
        if rest < 0:
            raise InvalidArgumentError(
                f"n_train + n_val = {n_tr + n_v} exceeds the {_N_DIGITS} digits; need n_train + n_val <= {_N_DIGITS}"
            )
        if self.n_test is not None:
            n_te = check_int("n_test", self.n_test, minimum=0)
            if n_te > rest:
                raise InvalidArgumentError(f"n_test = {n_te} is invalid; at most {rest} digits are left")
        c = check_positive("corruption", self.corruption, allow_zero=True)
        if c > 1.0:
            raise InvalidArgumentError(f"corruption = {c:g} is invalid; it must be in [0, 1]")
        check_positive("reg", self.reg)
        check_positive("newton_tol", self.newton_tol)
        check_dtype(self.dtype)

    @property
    def num_corrupted(self) -> int:
        """round(corruption * n_train): how many training labels are flipped."""
        return int(round(float(self.corruption) * int(self.n_train)))

    def build(self, seed: int | torch.Generator) -> BilevelProblem:
        """Split and corrupt the digits with ``seed``; return the problem with exact oracles and constants."""
        gen = make_generator(seed)
        Z_all, c_all = _digits()
        n_tr, n_v = int(self.n_train), int(self.n_val)
        n_te = _N_DIGITS - n_tr - n_v if self.n_test is None else int(self.n_test)
        perm = torch.randperm(_N_DIGITS, generator=gen)
        i_tr, i_v, i_te = perm[:n_tr], perm[n_tr : n_tr + n_v], perm[n_tr + n_v : n_tr + n_v + n_te]
        clean = c_all[i_tr]
        m = self.num_corrupted
        flip = torch.randperm(n_tr, generator=gen)[:m]
        noisy = clean.clone()
        noisy[flip] = (clean[flip] + torch.randint(1, K_CLASSES, (m,), generator=gen)) % K_CLASSES
        corrupted = torch.zeros(n_tr, dtype=torch.bool)
        corrupted[flip] = True
        reg, dt = float(self.reg), self.dtype

        Z64, Zv64 = Z_all[i_tr], Z_all[i_v]
        Y64 = torch.nn.functional.one_hot(noisy, K_CLASSES).double()
        Yv64 = torch.nn.functional.one_hot(c_all[i_v], K_CLASSES).double()
        Z, Y, Zv, Yv, Zte = (t.to(dt) for t in (Z64, Y64, Zv64, Yv64, Z_all[i_te]))
        c_te = c_all[i_te]
        d = Z.shape[1]
        tol = float(self.newton_tol)

        def g(x: Tensor, W: Tensor) -> Tensor:
            """Weighted training loss (1/n) sum_i sigmoid(x_i) CE_i(W) + (reg/2)||W||^2."""
            return weighted_loss(x, W, Z, Y, reg)

        def f(x: Tensor, W: Tensor) -> Tensor:
            """Mean validation cross-entropy (x enters only through W)."""
            return cross_entropy(W, Zv, Yv).mean()

        def y_star(x: Tensor) -> Tensor:
            """Exact inner solution argmin_W g(x, W) by damped Newton to ||grad_W g|| <= newton_tol (float64)."""
            return newton_solve(x, Z64, Y64, reg, tol=tol).to(dt)

        def hypergradient(x: Tensor) -> Tensor:
            """Exact hypergradient by the implicit-function theorem with a dense Hessian solve (float64).

            :math:`\\nabla\\Phi(x)_i=-\\frac{\\sigma'(x_i)}n z_i^\\top V(p_i-e_{c_i})`,
            :math:`V=[\\nabla^2_Wg]^{-1}\\nabla_Wf` at :math:`W^*(x)` (:math:`\\nabla_xf=0`;
            :math:`\\partial_{x_i}\\nabla_Wg=\\frac{\\sigma'(x_i)}nz_i(p_i-e_{c_i})^\\top`).
            """
            x64 = x.detach().double()
            W = newton_solve(x64, Z64, Y64, reg, tol=tol)
            fW = Zv64.T @ (torch.softmax(Zv64 @ W, dim=-1) - Yv64) / Zv64.shape[0]
            V = _spd_solve(inner_hessian(x64, W, Z64, reg), fW.reshape(-1)).reshape(d, K_CLASSES)
            R = torch.softmax(Z64 @ W, dim=-1) - Y64
            s = torch.sigmoid(x64)
            return (-(s * (1 - s)) / n_tr * ((Z64 @ V) * R).sum(-1)).to(dt)

        def phi(x: Tensor) -> Tensor:
            """Hyper-objective Phi(x) = f(x, W*(x))."""
            return f(x, y_star(x))

        def test_loss(W: Tensor) -> Tensor:
            """Mean cross-entropy of W on the (clean) test split."""
            return cross_entropy(W, Zte, torch.nn.functional.one_hot(c_te, K_CLASSES).to(dt)).mean()

        def test_accuracy(W: Tensor) -> Tensor:
            """Accuracy of W on the (clean) test split."""
            return accuracy(W, Zte, c_te)

        x0 = torch.zeros(n_tr, dtype=dt)
        lam_ZZ = float(torch.linalg.eigvalsh(Z64.T @ Z64)[-1])
        lam_x0 = float(torch.linalg.eigvalsh(Z64.T @ (torch.sigmoid(x0.double())[:, None] * Z64))[-1])
        L = reg + lam_ZZ / (2 * n_tr)
        constants = Constants(
            L=L,
            mu=reg,
            M=math.sqrt(2.0) * float(torch.linalg.vector_norm(Zv64, dim=1).max()),
            exact=frozenset({"mu"}),
            extra={
                "L_at_x0": reg + lam_x0 / (2 * n_tr),
                "Lxy": math.sqrt(2.0) / (4 * n_tr) * float(torch.linalg.matrix_norm(Z64)),
                "kappa": L / reg,
            },
        )
        extra = {
            "corrupted": corrupted,
            "labels_train": noisy,
            "labels_train_clean": clean,
            "labels_val": c_all[i_v],
            "labels_test": c_te,
            "Z_train": Z,
            "Z_val": Zv,
            "Z_test": Zte,
            "indices": {"train": i_tr, "val": i_v, "test": i_te},
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "phi": phi,
        }
        return BilevelProblem(
            f=f,
            g=g,
            x0=x0,
            y0=torch.zeros(d, K_CLASSES, dtype=dt),
            constants=constants,
            y_star=y_star,
            hypergradient=hypergradient,
            extra=extra,
        )
