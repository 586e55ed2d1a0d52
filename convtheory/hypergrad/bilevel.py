"""Hypergradients of bilevel problems :math:`\\min_x\\Phi(x)=f(x,y^*(x))`, :math:`y^*(x)=\\arg\\min_y g(x,y)`.

:math:`f(x,y)` and :math:`g(x,y)` are user callables returning scalars; x and y are tensors or dicts of tensors.
Every method but ``"exact"`` starts from N inner gradient steps from :math:`y_0` with step alpha,

.. math::  y_{t+1}=y_t-\\alpha\\nabla_y g(x,y_t),\\qquad t=0,\\dots,N-1,

and estimates the implicit-function hypergradient (Ghadimi & Wang 2018; THEORY.md §10)

.. math::  \\nabla\\Phi(x)=\\nabla_xf(x,y^*)-\\nabla_x\\nabla_yg(x,y^*)\\,[\\nabla^2_yg(x,y^*)]^{-1}\\nabla_yf(x,y^*).

Methods (``METHODS``):

- ``"itd"``: reverse mode through the N steps, the exact gradient of :math:`x\\mapsto f(x,y_N(x))`. Written as
  the adjoint recursion :math:`\\lambda_N=\\nabla_yf(x,y_N)`,
  :math:`\\lambda_t=\\lambda_{t+1}-\\alpha\\nabla^2_yg(x,y_t)\\lambda_{t+1}`, with
  :math:`\\hat g=\\nabla_xf(x,y_N)-\\alpha\\sum_t\\nabla_x\\nabla_yg(x,y_t)\\lambda_{t+1}` (one VJP of
  :math:`(x,y)\\mapsto\\nabla_yg` per step). ITD-BiO (Ji, Yang, Liang 2021), reverse-mode (Grazzi et al. 2020).
- ``"itd-forward"``: the same number in forward mode: :math:`Z_0=0`,
  :math:`Z_{t+1}=Z_t-\\alpha(\\nabla^2_yg\\,Z_t+\\nabla_x\\nabla_yg)` at :math:`(x,y_t)` (one JVP per basis direction of
  x, vmapped), :math:`\\hat g=\\nabla_xf+Z_N^\\top\\nabla_yf`. Practical when dim(x) is small; ``extra["jacobian"]``
  is :math:`Z_N=\\partial y_N/\\partial x` as a (dim y, dim x) matrix.
- ``"aid-cg"``, ``"aid-neumann"``, ``"aid-fp"``: :math:`y_N` without a graph, then Q steps of CG / a Neumann series
  with terms 0..Q / the fixed-point iteration from 0 (step eta = ``solver_lr``, default alpha) on
  :math:`\\nabla^2_yg(x,y_N)v=\\nabla_yf(x,y_N)`, and :math:`\\hat g=\\nabla_xf(x,y_N)-\\nabla_x\\nabla_yg(x,y_N)v`
  as one VJP (Grazzi et al. 2020; AID-BiO, Ji et al. 2021). See :mod:`convtheory.hypergrad.linsolve`.
  On quadratic g, aid-fp with eta = alpha and Q = N equals itd, and aid-neumann with Q equals aid-fp with Q + 1
  (THEORY.md §14 item 19). ``extra["v"]`` is v; for aid-cg ``extra["residual_norms"]`` is the tensor
  :math:`(\\|r_0\\|,\\dots,\\|r_Q\\|)` of CG residuals.
- ``"esj"``: evolution-strategies Jacobian (Sow, Ji, Liang 2021; THEORY.md §11 and §1.3), Hessian-free: Q =
  ``directions`` directions :math:`u_j` drawn from a ``torch.Generator`` seeded by ``seed`` (standard Gaussian in
  the flattened x-space, or with ``sphere=True`` uniform on the unit sphere with the estimate scaled by p = dim x),
  :math:`d_j=(y_N(x+\\delta u_j)-y_N(x))/\\delta` (all runs from the same :math:`y_0`, vmapped over j),
  :math:`\\hat g=\\nabla_xf(x,y_N)+\\frac{s}{Q}\\sum_j\\langle d_j,\\nabla_yf(x,y_N)\\rangle u_j`, s = 1 (Gaussian) or p
  (sphere). On quadratic g it is unbiased for itd with MSE :math:`(p+1)\\|a\\|^2/Q` (Gaussian) or
  :math:`(p-1)\\|a\\|^2/Q` (sphere), :math:`a=J_N^\\top\\nabla_yf`. ``extra["directions"]`` is the (Q, p) matrix of
  the :math:`u_j` as drawn (unit vectors if ``sphere``), ``extra["scale"]`` is s.
- ``"exact"``: small problems only. :math:`y^*` by Newton's method with the dense Hessian of g in y from
  :math:`y_0` (step halved until :math:`\\|\\nabla_yg\\|` decreases; stops when it falls below 1e-13 times its
  initial value, stops decreasing, or after 100 iterations; one step on a quadratic), then the formula above with
  ``torch.linalg.solve``. Ignores N, Q, alpha (which are still validated). ``extra["newton_steps"]`` and
  ``extra["grad_norm"]`` (final :math:`\\|\\nabla_yg\\|`, a float) report the solve.

Oracle accounting (``EngineInfo.oracle``, exact call counts; p = dim x, n = dim y): a gradient of g, or of f with
respect to (x, y) jointly, is one ``grad``; :math:`\\nabla^2_yg\\,w` is one ``hvp``; a mixed product
:math:`\\nabla_x\\nabla_yg\\,w` (or its transpose) is one ``jvp``; one VJP or JVP of :math:`(x,y)\\mapsto\\nabla_yg`
with respect to both arguments counts one hvp and one jvp.

=============  ==========================  =================  ========
method         grad                        hvp                jvp
=============  ==========================  =================  ========
itd            N + 1                       N                  N
itd-forward    N + 1                       pN                 pN
aid-cg         N + 1                       Q                  1
aid-neumann    N + 1                       Q                  1
aid-fp         N + 1                       max(Q - 1, 0)      1
esj            (Q + 1) N + 1               0                  0
exact          k_g + 1                     n k_H              1
=============  ==========================  =================  ========

(the "+ 1" is the gradient of f; esj's Q is ``directions``; for exact, k_g gradients of g and k_H dense Hessians
were evaluated, k_H = newton_steps + 1, and each dense Hessian counts n hvp; on a quadratic k_g = k_H = 2 unless
:math:`y_0` is already optimal.) ``fn`` stays 0.

Step sizes may be tensors (passed through unchecked, so a new value does not recompile); N, Q and ``directions``
are static Python ints. itd, itd-forward and the AID methods have no ``.item()`` and no data-dependent branching:
``torch.func.vmap`` over x and ``torch.compile(fullgraph=True)`` capture them whole. esj draws its directions from
a CPU generator and exact branches on Newton's progress; both run eagerly. ``info.inner`` is the detached
iterate the estimate used (:math:`y_N`, or :math:`y^*` for exact). Return: ``(hg, info)`` with hg shaped like x.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import grad, hessian, jvp, vjp, vmap

from ..problems.base import make_generator
from ..tree import flatten, leaves, tree_add, tree_dot, tree_map, tree_sub, unflatten
from ..types import (
    EngineInfo,
    InvalidArgumentError,
    InvalidTypeError,
    OracleCount,
    Params,
    check_choice,
    check_int,
    check_positive,
)
from . import linsolve

METHODS = ("itd", "itd-forward", "aid-cg", "aid-neumann", "aid-fp", "esj", "exact")

Fn = Callable[[Params, Params], torch.Tensor]

__all__ = ["METHODS", "hypergradient"]

_NEWTON_MAX_ITER = 100
_NEWTON_MAX_HALVINGS = 40
_NEWTON_RTOL = 1e-13


# ------------------------------------------------------------------------------------------- small helpers
def _check_params(name: str, value) -> Params:
    ok = isinstance(value, torch.Tensor) or (
        isinstance(value, dict) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())
    )
    if not ok:
        raise InvalidTypeError(
            f"{name} must be a tensor or a non-empty dict of tensors, got {type(value).__name__}"
        )
    return value


def _check_lr(name: str, value):
    if isinstance(value, torch.Tensor):
        return value
    return check_positive(name, value)


def _detach(tree: Params) -> Params:
    return tree_map(torch.detach, tree)


def _numel(tree: Params) -> int:
    return sum(t.numel() for t in leaves(tree))


def _unflatten_rows(mat: torch.Tensor, like: Params) -> Params:
    """Rows of a (K, dim) matrix as a tree with a leading axis K, each row shaped like ``like``."""
    return vmap(lambda row: unflatten(row, like))(mat)


def _grad_y(g: Fn) -> Fn:
    """:math:`(x,y)\\mapsto\\nabla_yg(x,y)`."""
    return grad(g, argnums=1)


def _inner_gd(g: Fn, x: Params, y0: Params, N: int, alpha) -> Params:
    """N steps :math:`y_{t+1}=y_t-\\alpha\\nabla_yg(x,y_t)` from y0 (N gradients of g)."""
    G = _grad_y(g)
    y = y0
    for _ in range(N):
        y = tree_add(y, G(x, y), -alpha)
    return y


# ------------------------------------------------------------------------------------------------- methods
def _itd(f, g, x, y0, N, alpha):
    """Reverse mode through the N steps via the adjoint recursion; one VJP of grad_y g per step."""
    G = _grad_y(g)
    y, pullbacks = y0, []
    for _ in range(N):
        gy, pull = vjp(G, x, y)
        pullbacks.append(pull)
        y = tree_add(y, gy, -alpha)
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)
    hg, lam = gxf, gyf
    for pull in reversed(pullbacks):
        mixed, hess = pull(lam)
        hg = tree_add(hg, mixed, -alpha)
        lam = tree_add(lam, hess, -alpha)
    oracle = OracleCount(grad=N + 1, hvp=N, jvp=N)
    return hg, y, oracle, {}


def _itd_forward(f, g, x, y0, N, alpha):
    """Forward mode: Z_{t+1} = Z_t - alpha (H_yy Z_t + H_yx), one vmapped JVP over the basis of x per step."""
    G = _grad_y(g)
    p = _numel(x)
    flat_x = flatten(x)
    E = _unflatten_rows(torch.eye(p, dtype=flat_x.dtype, device=flat_x.device), x)
    Z = tree_map(lambda t: torch.zeros((p,) + tuple(t.shape), dtype=t.dtype, device=t.device), y0)
    y = y0
    for _ in range(N):
        gy = G(x, y)
        yt = y
        dZ = vmap(lambda e, z: jvp(G, (x, yt), (e, z))[1])(E, Z)
        Z = tree_add(Z, dZ, -alpha)
        y = tree_add(y, gy, -alpha)
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)
    coef = vmap(tree_dot, in_dims=(0, None))(Z, gyf)  # (p,): row i is <dy_N/dx_i, grad_y f>
    hg = unflatten(flatten(gxf) + coef, x)
    jac = vmap(flatten)(Z).T  # (dim y, p)
    oracle = OracleCount(grad=N + 1, hvp=p * N, jvp=p * N)
    return hg, y, oracle, {"jacobian": jac}


def _aid(f, g, x, y0, N, alpha, Q, eta, solver):
    """Implicit differentiation at y_N: solve H v = grad_y f with ``solver``, then one mixed VJP."""
    G = _grad_y(g)
    y = _detach(_inner_gd(g, x, y0, N, alpha))
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)

    # One reverse pass through grad_y g at y_N, reused by every product: the Hessian in y is symmetric, so its VJP
    # is the HVP (6.5x faster per product than forward-over-reverse, which re-evaluates grad_y g each time).
    _, pull_y = vjp(lambda yy: G(x, yy), y)

    def hvp(v):
        return pull_y(v)[0]

    extra = {}
    if solver == "cg":
        v, res = linsolve.cg(hvp, gyf, Q)
        extra["residual_norms"] = res
        n_hvp = Q
    elif solver == "neumann":
        v = linsolve.neumann(hvp, gyf, Q, eta)
        n_hvp = Q
    else:
        v = linsolve.fixed_point(hvp, gyf, Q, eta)
        n_hvp = max(Q - 1, 0)
    _, pull = vjp(lambda xx: G(xx, y), x)
    (mixed,) = pull(v)
    hg = tree_sub(gxf, mixed)
    extra["v"] = v
    return hg, y, OracleCount(grad=N + 1, hvp=n_hvp, jvp=1), extra


def _esj(f, g, x, y0, N, alpha, Q, delta, seed, sphere):
    """ES Jacobian: Q perturbed inner runs (vmapped), forward differences along random directions."""
    p = _numel(x)
    flat_x = flatten(x)
    gen = make_generator(seed)
    U = torch.randn(Q, p, generator=gen, dtype=flat_x.dtype).to(flat_x.device)
    if sphere:
        U = U / torch.linalg.vector_norm(U, dim=1, keepdim=True)
    scale = float(p) if sphere else 1.0
    y = _inner_gd(g, x, y0, N, alpha)
    X = _unflatten_rows(flat_x + delta * U, x)
    Y = vmap(lambda xx: _inner_gd(g, xx, y0, N, alpha))(X)
    D = tree_map(lambda a, b: (a - b) / delta, Y, y)
    y = _detach(y)
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)
    coef = vmap(tree_dot, in_dims=(0, None))(D, gyf)  # (Q,)
    jtv = (scale / Q) * (coef @ U)
    hg = unflatten(flatten(gxf) + jtv, x)
    oracle = OracleCount(grad=(Q + 1) * N + 1)
    return hg, y, oracle, {"directions": U, "scale": scale}


def _exact(f, g, x, y0):
    """Newton's method with the dense Hessian to y*, then the implicit-function formula with a dense solve."""
    n = _numel(y0)
    x_d = _detach(x)

    def g_flat(yv):
        return g(x_d, unflatten(yv, y0))

    grad_flat = grad(g_flat)
    hess_flat = hessian(g_flat)
    yv = flatten(_detach(y0))
    gv = grad_flat(yv)
    n_grad, n_hess, steps = 1, 0, 0
    gnorm = float(torch.linalg.vector_norm(gv))
    g0 = gnorm
    for _ in range(_NEWTON_MAX_ITER):
        if gnorm <= _NEWTON_RTOL * g0:
            break
        Hm = hess_flat(yv)
        n_hess += 1
        step = torch.linalg.solve(Hm, gv)
        t, accepted = 1.0, False
        for _ in range(_NEWTON_MAX_HALVINGS):
            y_new = yv - t * step
            g_new = grad_flat(y_new)
            n_grad += 1
            new_norm = float(torch.linalg.vector_norm(g_new))
            if new_norm < gnorm:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        yv, gv, gnorm, steps = y_new, g_new, new_norm, steps + 1
    Hm = hess_flat(yv)
    n_hess += 1
    y = unflatten(yv, y0)
    gxf, gyf = grad(f, argnums=(0, 1))(x, y)
    v = unflatten(torch.linalg.solve(Hm, flatten(gyf)), y0)
    _, pull = vjp(lambda xx: _grad_y(g)(xx, y), x)
    (mixed,) = pull(v)
    hg = tree_sub(gxf, mixed)
    oracle = OracleCount(grad=n_grad + 1, hvp=n * n_hess, jvp=1)
    return hg, y, oracle, {"v": v, "newton_steps": steps, "grad_norm": gnorm}


# ------------------------------------------------------------------------------------------------ public API
def hypergradient(
    f: Fn,
    g: Fn,
    x: Params,
    y0: Params,
    *,
    method: str = "itd",
    inner_steps: int,
    inner_lr,
    solver_steps: int = 10,
    solver_lr=None,
    directions: int | None = None,
    delta: float = 1e-3,
    seed: int | torch.Generator | None = None,
    sphere: bool = False,
) -> tuple[Params, EngineInfo]:
    """Hypergradient estimate of :math:`\\Phi(x)=f(x,y^*(x))` by ``method``; returns ``(hg, EngineInfo)``.

    ``inner_steps`` = N and ``inner_lr`` = alpha: the inner GD run from ``y0``; ``solver_steps`` = Q: linear-solver
    steps (AID); ``solver_lr`` = eta: Neumann / fixed-point step (default alpha); ``directions``: ES directions for
    esj (default ``solver_steps``); ``delta``: ES finite-difference step; ``seed``: int or ``torch.Generator``
    (required for esj); ``sphere``: unit-sphere ES directions scaled by dim x instead of Gaussian ones. Formulas,
    references and oracle accounting: the module docstring.

    >>> import torch
    >>> H = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> g = lambda x, y: 0.5 * y @ H @ y - y @ x
    >>> f = lambda x, y: 0.5 * (y ** 2).sum()
    >>> x = torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> hg, info = hypergradient(f, g, x, torch.zeros(2, dtype=torch.float64), method="exact",
    ...                          inner_steps=0, inner_lr=0.5)
    >>> hg.tolist()  # H^{-2} x
    [0.25, 1.0]
    """
    method = check_choice("method", method, METHODS)
    if not callable(f) or not callable(g):
        raise InvalidTypeError("f and g must be callables f(x, y) -> scalar and g(x, y) -> scalar")
    x = _check_params("x", x)
    y0 = _check_params("y0", y0)
    N = check_int("inner_steps", inner_steps, minimum=0)
    Q = check_int("solver_steps", solver_steps, minimum=0)
    alpha = _check_lr("inner_lr", inner_lr)
    eta = alpha if solver_lr is None else _check_lr("solver_lr", solver_lr)
    delta = check_positive("delta", delta)
    if not isinstance(sphere, bool):
        raise InvalidTypeError(f"sphere must be a bool, got {sphere!r}")

    if method == "itd":
        hg, y, oracle, extra = _itd(f, g, x, y0, N, alpha)
    elif method == "itd-forward":
        hg, y, oracle, extra = _itd_forward(f, g, x, y0, N, alpha)
    elif method.startswith("aid-"):
        hg, y, oracle, extra = _aid(f, g, x, y0, N, alpha, Q, eta, method[4:])
    elif method == "esj":
        n_dir = check_int("directions", Q if directions is None else directions, minimum=1)
        if seed is None:
            raise InvalidArgumentError(
                "seed = None is invalid for method 'esj'; pass an int or a torch.Generator"
            )
        hg, y, oracle, extra = _esj(f, g, x, y0, N, alpha, n_dir, delta, seed, sphere)
    else:
        hg, y, oracle, extra = _exact(f, g, x, y0)
    return hg, EngineInfo(oracle=oracle, inner=_detach(y), extra=extra)
