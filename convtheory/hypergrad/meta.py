"""Meta-gradients of optimization-based meta-learning, vectorized over tasks and compiled once per configuration.

For B tasks with support data :math:`S_i` and query data :math:`D_i`, N inner gradient steps with step alpha
from the shared initialisation theta,

.. math::  w^i_0=\\theta,\\quad w^i_{t+1}=w^i_t-\\alpha\\nabla\\ell(w^i_t;S_i),\\qquad
           \\mathcal L(\\theta)=\\frac1B\\sum_i \\ell^{q}(w^i_N(\\theta);D_i).

Methods (all return the average over tasks, in the shape of ``params``):

- ``"maml"``: exact :math:`\\nabla\\mathcal L`, second order through all N steps (Finn et al. 2017; Ji, Yang,
  Liang 2022): :math:`\\prod_{t=0}^{N-1}(I-\\alpha\\nabla^2\\ell(w^i_t;S_i))\\,\\nabla\\ell^q(w^i_N;D_i)`.
- ``"fomaml"``: first-order MAML, :math:`\\nabla\\ell^q(w^i_N;D_i)` (the product of Jacobians dropped).
- ``"hfmaml"``: Hessian-free MAML (Fallah, Mokhtari, Ozdaglar 2020, extended to N steps): the backward
  recursion :math:`v\\leftarrow v-\\alpha\\,[\\nabla\\ell(w_t+\\delta v)-\\nabla\\ell(w_t-\\delta v)]/(2\\delta)`.
  Exact on quadratic tasks for every delta; on smooth losses the error is :math:`O(\\delta^2)`.
- ``"reptile"``: Nichol et al. 2018's direction :math:`(\\theta-\\bar w_N)/\\alpha`, with :math:`\\bar w_N` the mean of
  the adapted points on the support data (the query data are unused). For N = 1 it is the joint-training
  gradient; the update :math:`\\theta\\leftarrow\\theta-\\varepsilon\\alpha g` is Reptile's interpolation.
- ``"imaml"``: implicit MAML (Rajeswaran et al. 2019): N GD steps on the proximal inner problem
  :math:`\\ell(\\phi;S_i)+\\frac\\lambda2\\|\\phi-\\theta\\|^2` from :math:`\\phi=\\theta`, then ``cg_steps`` = Q steps of
  conjugate gradients on :math:`(I+\\nabla^2\\ell(\\phi;S_i)/\\lambda)g_i=\\nabla\\ell^q(\\phi;D_i)` (THEORY.md §1.4).
- ``"anil"``: MAML where only the parameters named in ``inner_params`` adapt (Raghu et al. 2020); exact second
  order through the head's steps. With every name adapting it equals ``"maml"``.

Separate Hessian batch (``hessian=``, Fallah, Mokhtari, Ozdaglar 2020's :math:`D^i_h`; THEORY.md §1.2, §4): for
``"maml"``, ``"anil"`` and ``"hfmaml"`` the Hessian(-vector) products of every inner step's Jacobian use per-task data
``hessian`` (task axis first) instead of the support data, while the inner steps themselves still use the support
data: :math:`\\prod_t(I-\\alpha\\nabla^2\\ell(w^i_t;D^i_h))\\nabla\\ell^q(w^i_N;D_i)`. For maml/anil this is exact
autodiff of the step :math:`w-\\alpha[\\nabla\\ell(w;D_h)+\\mathrm{sg}(\\nabla\\ell(w;S)-\\nabla\\ell(w;D_h))]` (sg: stop
gradient), whose value is the support step and whose Jacobian is :math:`I-\\alpha\\nabla^2\\ell(w;D_h)`. With S, D_h
and D independent the one-step estimator is unbiased on quadratic families (THEORY.md §14 item 8); one batch
serves all N factors (as one support batch serves all N steps).

Oracle accounting, per task and summed over the B tasks (``EngineInfo.oracle``): an inner step is one gradient;
the query gradient is one gradient; back-propagating through an inner step is one Hessian-vector product.
So maml and anil: grad = B(N+1), hvp = BN; fomaml: grad = B(N+1); hfmaml: grad = B(N+1) + 2BN (finite
differences replace the BN Hessian-vector products); reptile: grad = BN; imaml: grad = B(N+1), hvp = BQ.

Compilation: the whole meta-gradient (vmap over tasks, the inner loop, the outer gradient) is one function;
under the default policy ``"auto"`` the first call with a configuration runs eagerly and the second compiles it
with ``torch.compile`` and caches it per (loss, method, N, options, shapes, dtypes). iMAML stays eager under
``"auto"`` (its CG loop of nested reverse passes compiles for over a minute); ``"always"`` compiles it too. The step size alpha is a
tensor input, so a new alpha, new parameter values or new data reuse the compiled function.
"""

from __future__ import annotations

import functools
import os
import types
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch.func import grad, vmap

from ..tree import leaves, tree_dot, tree_map, tree_zeros_like
from ..types import (
    EngineInfo,
    InvalidArgumentError,
    InvalidTypeError,
    LossFn,
    OracleCount,
    check_choice,
    check_int,
    check_positive,
)

METHODS = ("maml", "fomaml", "hfmaml", "reptile", "imaml", "anil")
COMPILE_POLICIES = ("auto", "always", "never")
#: Methods whose Hessian-vector products can use a separate per-task batch (``meta_gradient(hessian=...)``).
HESSIAN_BATCH_METHODS = ("maml", "anil", "hfmaml")


# ------------------------------------------------------------------------------------------ per-task maths
def _sgd(params, g, alpha, names=None):
    """One GD step, on every leaf or (ANIL) only on the named leaves of a dict."""
    if isinstance(params, dict):
        return {k: (v - alpha * g[k]) if names is None or k in names else v for k, v in params.items()}
    return params - alpha * g


def _restrict(params, names):
    """ANIL: the inner loss as a function of the adapted leaves only."""
    return {k: params[k] for k in names}


def _split_step_grad(g, support, hessian):
    """The inner-step gradient whose value is g(w; support) and whose derivative is the Hessian on ``hessian``:
    :math:`\\nabla\\ell(w;D_h)+\\mathrm{sg}(\\nabla\\ell(w;S)-\\nabla\\ell(w;D_h))` (``hessian`` None: g(w; support))."""
    if hessian is None:
        return lambda w: g(w, support)

    def step(w):
        gh = g(w, hessian)
        return tree_map(lambda h, s_: h + (s_ - h).detach(), gh, g(w, support))
    return step


def _adapt(loss, params, support, alpha, N, names=None, hessian=None):
    """N inner GD steps on ``loss(., support)``; differentiable (graph kept) when called under a transform.
    With ``hessian`` data the steps' values are unchanged and their Jacobians use the Hessian on ``hessian``."""
    if names is None:
        step_grad = _split_step_grad(grad(loss), support, hessian)
        for _ in range(N):
            params = _sgd(params, step_grad(params), alpha)
        return params
    fixed = {k: v for k, v in params.items() if k not in names}
    head_loss = lambda head, data: loss({**fixed, **head}, data)  # noqa: E731
    head = _restrict(params, names)
    step_grad = _split_step_grad(grad(head_loss), support, hessian)
    for _ in range(N):
        head = _sgd(head, step_grad(head), alpha)
    return {**params, **head}


def _tree_axpy(a, x, y):
    """a * x + y over tensors or dicts."""
    return tree_map(lambda u, v: a * u + v, x, y)


def _task_fn(method: str, loss: LossFn, qloss: LossFn, N: int, names, opts: dict) -> Callable:
    """The per-task function (params, support, query, alpha) -> (direction, adapted params) of a method.

    For ``maml``/``anil`` the direction is the task's meta-loss; the caller differentiates the task mean. With
    ``opts["hessian"]`` the support argument is the pair (support data, Hessian-batch data).
    """
    split = bool(opts.get("hessian", False))
    if method in ("maml", "anil"):
        def task(params, support, query, alpha):
            sup, hes = support if split else (support, None)
            adapted = _adapt(loss, params, sup, alpha, N, names, hes)
            return qloss(adapted, query), adapted
        return task

    if method == "fomaml":
        def task(params, support, query, alpha):
            adapted = _adapt(loss, params, support, alpha, N)
            return grad(qloss)(adapted, query), adapted
        return task

    if method == "reptile":
        def task(params, support, query, alpha):
            adapted = _adapt(loss, params, support, alpha, N)
            return tree_map(lambda p, w: (p - w) / alpha, params, adapted), adapted
        return task

    if method == "hfmaml":
        delta = opts["delta"]

        def task(params, support, query, alpha):
            support, hes = support if split else (support, support)
            g = grad(loss)
            iterates = [params]
            for _ in range(N):
                iterates.append(_sgd(iterates[-1], g(iterates[-1], support), alpha))
            v = grad(qloss)(iterates[-1], query)
            for w in reversed(iterates[:-1]):
                plus = g(_tree_axpy(delta, v, w), hes)
                minus = g(_tree_axpy(-delta, v, w), hes)
                v = _tree_axpy(-alpha / (2 * delta), _tree_axpy(-1.0, minus, plus), v)
            return v, iterates[-1]
        return task

    if method == "imaml":
        lam, Q = opts["lam"], opts["cg_steps"]

        def prox(phi, data, theta):
            diff = _tree_axpy(-1.0, theta, phi)
            return loss(phi, data) + 0.5 * lam * tree_dot(diff, diff)

        def task(params, support, query, alpha):
            theta = params
            phi = params
            gp = grad(prox)
            for _ in range(N):
                phi = _sgd(phi, gp(phi, support, theta), alpha)
            rhs = grad(qloss)(phi, query)
            gl = grad(loss)

            def matvec(v):  # (I + H/lam) v; reverse-over-reverse HVP (jvp under vmap breaks torch.compile)
                hv = grad(lambda q: tree_dot(gl(q, support), v))(phi)
                return _tree_axpy(1.0 / lam, hv, v)

            x = tree_zeros_like(rhs)
            r = rhs
            p = r
            rs = tree_dot(r, r)
            for _ in range(Q):
                Ap = matvec(p)
                denom = tree_dot(p, Ap)
                a = rs / torch.where(denom == 0, torch.ones_like(denom), denom)
                x = _tree_axpy(a, p, x)
                r = _tree_axpy(-a, Ap, r)
                rs_new = tree_dot(r, r)
                p = _tree_axpy(rs_new / torch.where(rs == 0, torch.ones_like(rs), rs), p, r)
                rs = rs_new
            return x, phi
        return task

    raise AssertionError(method)




def _build(method: str, loss: LossFn, qloss: LossFn, N: int, names, opts: dict) -> tuple[Callable, Callable]:
    """The whole meta-gradient as (eager, pure) functions (params, support, query, alpha) -> (mg, adapted).

    ``pure`` is what ``torch.compile`` captures (torch.func.grad outside). ``eager`` differs only for maml/anil: the
    outer gradient comes from ``torch.autograd.grad``, about 1.3x faster than an outer ``torch.func.grad`` in eager
    mode (../bench/README.md: func-vmap+ag vs func-nested).
    """
    task = _task_fn(method, loss, qloss, N, names, opts)
    batched = vmap(task, in_dims=(None, 0, 0, None))

    if method in ("maml", "anil"):
        def meta_loss(params, support, query, alpha):
            values, adapted = batched(params, support, query, alpha)
            return values.mean(), adapted

        if opts.get("alpha_grad"):  # d(meta-loss)/d(alpha) from the same backward pass, no extra oracle call
            pure = grad(meta_loss, argnums=(0, 3), has_aux=True)
        else:
            pure = grad(meta_loss, has_aux=True)

        def eager(params, support, query, alpha):
            p = tree_map(lambda t: t.detach().requires_grad_(True), params)
            a = alpha.detach().requires_grad_(True) if opts.get("alpha_grad") else alpha
            with torch.enable_grad():
                value, adapted = meta_loss(p, support, query, a)
                wrt = leaves(p) + ([a] if opts.get("alpha_grad") else [])
                grads = torch.autograd.grad(value, wrt)
            n = len(leaves(p))
            mg = dict(zip(p, grads[:n])) if isinstance(p, dict) else grads[0]
            if opts.get("alpha_grad"):
                mg = (mg, grads[n])
            return mg, tree_map(torch.Tensor.detach, adapted)

        return eager, pure

    def full(params, support, query, alpha):
        directions, adapted = batched(params, support, query, alpha)
        return tree_map(lambda d: d.mean(0), directions), adapted
    return full, full


# ------------------------------------------------------------------------------------------------- caching
_CACHE: "OrderedDict[tuple, list]" = OrderedDict()
_CACHE_SIZE = 64
_policy = os.environ.get("CONVTHEORY_COMPILE", "auto")


def set_compile_policy(policy: str) -> str:
    """Set when meta-gradients are compiled: ``"auto"`` (from the second call of a configuration on),
    ``"always"`` (from the first) or ``"never"`` (eager only). Returns the previous policy.
    The environment variable ``CONVTHEORY_COMPILE`` sets the initial value."""
    global _policy
    check_choice("policy", policy, COMPILE_POLICIES)
    old, _policy = _policy, policy
    return old


def clear_cache() -> None:
    """Forget every cached (compiled or eager) meta-gradient function."""
    _CACHE.clear()


def cache_info() -> dict[str, int]:
    """Number of cached configurations and how many of them are compiled."""
    return {"entries": len(_CACHE), "compiled": sum(1 for v in _CACHE.values() if v[3] is not None)}


def _describe(data, what: str, out: list) -> tuple:
    """Structure signature of ``data`` (nesting, shapes, dtypes, devices) for the cache key; appends the tensor
    leaves to ``out``. One pass, because it runs on every call."""
    if isinstance(data, torch.Tensor):
        out.append(data)
        return (data.shape, data.dtype, data.device)
    if isinstance(data, dict):
        return ("d",) + tuple((k, _describe(v, what, out)) for k, v in data.items())
    if isinstance(data, (tuple, list)):
        return ("t",) + tuple(_describe(v, what, out) for v in data)
    raise InvalidTypeError(f"{what} must be a tensor, or a tuple or dict of tensors; got {type(data).__name__}")


_ALPHAS: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()


def _alpha_tensor(inner_lr, dtype, device) -> torch.Tensor:
    """alpha as a 0-d tensor input of the compiled function; float values reuse a cached tensor (a fresh
    tensor per call costs more than the rest of the call's Python work)."""
    if isinstance(inner_lr, torch.Tensor):
        return inner_lr.detach().to(dtype=dtype, device=device).reshape(())
    key = (float(inner_lr), dtype, device)
    t = _ALPHAS.get(key)
    if t is None:
        t = _ALPHAS[key] = torch.tensor(float(inner_lr), dtype=dtype, device=device)
        if len(_ALPHAS) > 256:
            _ALPHAS.popitem(last=False)
    return t


_COMPILED: list = []


def _own_code(fn: Callable, tag: int) -> Callable:
    """``fn`` behind a wrapper with a code object of its own. Dynamo caches compiled graphs per code object and
    falls back to eager past ``recompile_limit`` (8) entries; without this every configuration would share the
    code object of torch.func.grad's wrapper (and share it with the user's own compiled grad functions), so the
    ninth configuration in a process silently ran eager (seen in the benchmark harness: workload B at eager speed).
    """
    def entry(params, support, query, alpha):
        return fn(params, support, query, alpha)

    code = entry.__code__.replace(co_name=f"convtheory_meta_gradient_{tag}")
    return types.FunctionType(code, entry.__globals__, code.co_name, None, entry.__closure__)


def _get_fn(key: tuple, builder: Callable, compile_mode: str):
    entry = _CACHE.get(key)
    if entry is None:
        entry = [*builder(), 0, None]  # eager fn, pure fn, calls, compiled fn
        _CACHE[key] = entry
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    entry[2] += 1
    # iMAML's CG loop of nested reverse passes takes inductor minutes to compile: eager unless "always".
    want = compile_mode == "always" or (compile_mode == "auto" and entry[2] >= 2 and key[2] != "imaml")
    if want and entry[3] is None:
        entry[3] = torch.compile(_own_code(entry[1], len(_COMPILED)), dynamic=False)
        _COMPILED.append(key[2:4])
    return entry[3] if want else entry[0]


# ------------------------------------------------------------------------------------------------- checks
def _num_tasks(leaves_: list, what: str) -> int:
    if not leaves_:
        raise InvalidTypeError(f"{what} must hold at least one tensor (task axis first); got an empty container")
    counts = set()
    for t in leaves_:
        if t.dim() == 0:
            raise InvalidArgumentError(f"{what} needs a leading task axis; got a 0-d tensor")
        counts.add(t.shape[0])
    if len(counts) != 1:
        raise InvalidArgumentError(f"{what} tensors disagree on the task axis (axis 0): sizes {sorted(counts)}")
    return int(counts.pop())


def _first_task(data):
    if isinstance(data, torch.Tensor):
        return data[0]
    if isinstance(data, dict):
        return {k: _first_task(v) for k, v in data.items()}
    return type(data)(_first_task(v) for v in data)


def _probe(loss, params, data, what: str) -> None:
    """Evaluate the loss on the first task, so a shape mismatch is reported here, naming the shapes."""
    try:
        value = loss(params, _first_task(data))
    except (RuntimeError, IndexError, ValueError) as exc:
        shapes = {k: tuple(v.shape) for k, v in params.items()} if isinstance(params, dict) else tuple(params.shape)
        raise InvalidArgumentError(
            f"loss(params, one task of {what}) failed: {str(exc).splitlines()[0]}; params have shape {shapes}, "
            f"{what} (task axis first) has shapes {_shapes(data)}") from None
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise InvalidTypeError(f"loss must return a scalar tensor; got {type(value).__name__}"
                               + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))


def _shapes(data):
    if isinstance(data, torch.Tensor):
        return tuple(data.shape)
    if isinstance(data, dict):
        return {k: _shapes(v) for k, v in data.items()}
    return [_shapes(v) for v in data]


def _check_params(params):
    if isinstance(params, torch.Tensor):
        return params.detach() if params.requires_grad else params
    if isinstance(params, dict) and params and all(isinstance(v, torch.Tensor) for v in params.values()):
        if any(v.requires_grad for v in params.values()):
            return {k: v.detach() for k, v in params.items()}
        return params
    raise InvalidTypeError(f"params must be a tensor or a non-empty dict of tensors; got {type(params).__name__}")


# -------------------------------------------------------------------------------------------------- public
def meta_gradient(
    loss: LossFn,
    params,
    support,
    query,
    *,
    method: str = "maml",
    inner_steps: int = 1,
    inner_lr: float | torch.Tensor = 0.01,
    query_loss: LossFn | None = None,
    inner_params: tuple[str, ...] | None = None,
    lam: float | None = None,
    cg_steps: int | None = None,
    delta: float = 1e-4,
    compile: str | None = None,
    hessian=None,
    alpha_grad: bool = False,
):
    """Meta-gradient of N-step meta-learning averaged over B tasks, and an :class:`EngineInfo`.

    ``loss(params, data) -> scalar`` is one task's loss; ``support`` and ``query`` stack B tasks on axis 0 (a
    tensor, or a tuple or dict of tensors). ``method`` is one of ``METHODS`` (see the module docstring);
    ``inner_steps`` is N >= 0, ``inner_lr`` is alpha > 0; ``query_loss`` defaults to ``loss``; ``inner_params``
    names the adapted leaves for ``"anil"``; ``lam`` and ``cg_steps`` (Q) are iMAML's regulariser and CG steps;
    ``delta`` is HF-MAML's finite-difference radius; ``compile`` overrides the compile policy for this call;
    ``hessian`` (maml, anil, hfmaml only; None: the support data) holds each task's separate Hessian batch
    :math:`D_h` (task axis first, B tasks), used for the Hessian-vector products (module docstring).
    ``alpha_grad`` (maml, anil): also return :math:`\\partial\\mathcal L/\\partial\\alpha` of the task-averaged
    meta-loss in ``info.extra["alpha_grad"]``, a by-product of the same backward pass (no extra oracle call; what
    hypergradient descent on alpha needs, Alpha-MAML). Returns ``(mg, info)``: ``mg`` in the shape of ``params``;
    ``info.inner`` the adapted parameters (task axis first); ``info.oracle`` the oracle calls (module docstring).

    >>> import torch
    >>> A = torch.eye(2, dtype=torch.float64).expand(3, 2, 2)  # 3 tasks, loss 0.5 w^T A w
    >>> loss = lambda w, A: 0.5 * w @ A @ w
    >>> mg, info = meta_gradient(loss, torch.ones(2, dtype=torch.float64), A, A, inner_steps=2, inner_lr=0.5)
    >>> mg  # (1 - 0.5)^4 * w
    tensor([0.0625, 0.0625], dtype=torch.float64)
    """
    if not callable(loss):
        raise InvalidTypeError(f"loss must be callable loss(params, data) -> scalar; got {type(loss).__name__}")
    method = check_choice("method", method, METHODS)
    N = check_int("inner_steps", inner_steps, minimum=0)
    if isinstance(inner_lr, torch.Tensor):
        if inner_lr.numel() != 1:
            raise InvalidArgumentError(f"inner_lr must be a scalar; got a tensor of shape {tuple(inner_lr.shape)}")
        check_positive("inner_lr", inner_lr.item())
    else:
        check_positive("inner_lr", inner_lr)
    params = _check_params(params)
    sup_leaves: list = []
    qry_leaves: list = []
    sig_s = _describe(support, "support", sup_leaves)
    sig_q = _describe(query, "query", qry_leaves)
    B = _num_tasks(sup_leaves, "support")
    Bq = _num_tasks(qry_leaves, "query")
    if B != Bq:
        raise InvalidArgumentError(f"support has {B} tasks but query has {Bq}; they must match (axis 0)")
    if hessian is not None:
        if method not in HESSIAN_BATCH_METHODS:
            raise InvalidArgumentError(f"hessian batches are used by methods {HESSIAN_BATCH_METHODS}; "
                                       f"method={method!r} takes hessian=None")
        hes_leaves: list = []
        sig_h = _describe(hessian, "hessian", hes_leaves)
        Bh = _num_tasks(hes_leaves, "hessian")
        if Bh != B:
            raise InvalidArgumentError(f"support has {B} tasks but hessian has {Bh}; they must match (axis 0)")
    qloss = query_loss if query_loss is not None else loss
    if query_loss is not None and not callable(query_loss):
        raise InvalidTypeError(f"query_loss must be callable; got {type(query_loss).__name__}")

    opts: dict[str, Any] = {}
    names = None
    if method == "anil":
        if not isinstance(params, dict):
            raise InvalidTypeError("method='anil' needs params as a dict of named tensors")
        if not inner_params:
            raise InvalidArgumentError(f"method='anil' needs inner_params, a non-empty subset of {sorted(params)}")
        unknown = [n for n in inner_params if n not in params]
        if unknown:
            raise InvalidArgumentError(f"inner_params {unknown} are not parameter names; valid: {sorted(params)}")
        names = tuple(n for n in params if n in set(inner_params))
    if method == "imaml":
        opts["lam"] = check_positive("lam", 1.0 if lam is None else lam)
        opts["cg_steps"] = check_int("cg_steps", 10 if cg_steps is None else cg_steps, minimum=0)
    if method == "hfmaml":
        opts["delta"] = check_positive("delta", delta)
    if alpha_grad:
        if method not in ("maml", "anil"):
            raise InvalidArgumentError(f"alpha_grad is available for methods ('maml', 'anil'); method={method!r} "
                                       "takes alpha_grad=False")
        opts["alpha_grad"] = True
    if hessian is not None:
        opts["hessian"] = True
        sig_s = ("hessian-split", sig_s, sig_h)
    policy = _policy if compile is None else check_choice("compile", compile, COMPILE_POLICIES)

    ref = leaves(params)[0]
    alpha = _alpha_tensor(inner_lr, ref.dtype, ref.device)
    key = (loss, qloss, method, N, names, tuple(sorted(opts.items())),
           _describe(params, "params", []), sig_s, sig_q)
    if key not in _CACHE:  # a new configuration: check once that the loss accepts these shapes
        _probe(loss, params, support, "support")
        _probe(qloss, params, query, "query")
        if hessian is not None:
            _probe(loss, params, hessian, "hessian")
    fn = _get_fn(key, functools.partial(_build, method, loss, qloss, N, names, opts), policy)
    mg, adapted = fn(params, support if hessian is None else (support, hessian), query, alpha)
    extra = {"num_tasks": B, "method": method}
    if alpha_grad:
        mg, extra["alpha_grad"] = mg

    if method in ("maml", "anil"):
        oracle = OracleCount(grad=B * (N + 1), hvp=B * N)
    elif method == "fomaml":
        oracle = OracleCount(grad=B * (N + 1))
    elif method == "hfmaml":
        oracle = OracleCount(grad=B * (N + 1) + 2 * B * N)
    elif method == "reptile":
        oracle = OracleCount(grad=B * N)
    else:  # imaml
        oracle = OracleCount(grad=B * (N + 1), hvp=B * opts["cg_steps"])
    return mg, EngineInfo(oracle=oracle, inner=adapted, extra=extra)
