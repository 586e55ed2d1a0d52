"""Learned optimiser: the coordinatewise LSTM of Andrychowicz et al. (2016), meta-trained on random quadratics.

The optimiser :math:`m(\\cdot;\\phi)` is a two-layer LSTM applied to every coordinate of the optimizee on its own:
the weights :math:`\\phi` are shared by all coordinates, the hidden state is per coordinate. Coordinates (and the
B optimizee problems) are the LSTM's batch axis. One step is

.. math:: [g_t; h_{t+1}] = m(\\mathrm{LogAndSign}_k(\\nabla_t), h_t; \\phi),\\qquad \\theta_{t+1}=\\theta_t+g_t,

with :math:`g_t` = ``output_scale`` times a linear read-out of the top LSTM layer. Meta-training minimises
:math:`\\mathcal L(\\phi)=\\mathbb E_f\\big[\\sum_{t=1}^{T}w_t f(\\theta_t)\\big]`, :math:`w_t=1`, by truncated
back-propagation through time (``unroll`` steps per Adam update, problems resampled every ``horizon`` steps);
the optimizee gradient :math:`\\nabla_t` is detached (second derivatives dropped) as in the paper.

The optimizee family is :math:`f(\\theta)=\\|W\\theta-y\\|^2` with 10 x 10 W and 10-vector y of i.i.d. N(0, 1)
entries (the paper's text; the authors' code draws U[0, 1) entries instead, ``distribution="uniform"``) and
:math:`\\theta_0\\sim N(0, 0.01^2 I)` (the authors' code). Baselines (SGD, momentum, RMSprop, Adam) are pure update
rules whose learning rate is tuned on a grid on training problems, as the paper tuned them.

Reference: Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford, de Freitas, "Learning to learn by
gradient descent by gradient descent", NeurIPS 2016; THEORY.md §13. No convergence theorem: this module
reproduces learning curves only. Defaults follow the authors' code (google-deepmind/learning-to-learn) except the
preprocessing parameter k, which is the paper's 10 (the code uses 5).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch.func import grad, vmap

from ..problems.base import make_generator
from ..types import InvalidArgumentError, InvalidTypeError, Tensor, check_choice, check_int, check_positive

#: Names :func:`run_optimizer` accepts.
OPTIMIZERS = ("lstm", "sgd", "momentum", "rmsprop", "adam")
#: Hand-designed baselines, and the learning-rate grid they are tuned on by default.
BASELINES = ("sgd", "momentum", "rmsprop", "adam")
DEFAULT_LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)

State = tuple[Tensor, Tensor]  # (h, c), each (num_layers, n_coordinates, hidden_size)


# ------------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class L2OConfig:
    """Settings of the coordinatewise LSTM optimiser and of its meta-training on quadratics.

    ``hidden_size``/``num_layers``: LSTM width and depth (paper: 2 layers of 20). ``preprocess_k``: k of
    LogAndSign (paper 10; authors' code 5). ``output_scale``: factor on the LSTM's read-out (code 0.01).
    ``dim``: optimizee dimension d (10). ``num_problems``: problems B per meta-batch (code 128).
    ``distribution``: law of the entries of W and y, ``"gaussian"`` (paper) or ``"uniform"`` U[0, 1) (code).
    ``init_std``: std of theta_0 (code 0.01). ``unroll``: BPTT truncation (20). ``horizon``: optimizee steps
    before the problems are resampled (100; a multiple of ``unroll``). ``meta_lr``: Adam step on phi (1e-3).
    ``meta_iterations``: number of Adam updates, one per unroll. ``second_derivatives``: keep the optimizee
    gradient in the graph (False: detached, as in the paper). ``dtype``: float32 (few-shot precision suffices).
    """

    hidden_size: int = 20
    num_layers: int = 2
    preprocess_k: float = 10.0
    output_scale: float = 0.01
    dim: int = 10
    num_problems: int = 128
    distribution: str = "gaussian"
    init_std: float = 0.01
    unroll: int = 20
    horizon: int = 100
    meta_lr: float = 1e-3
    meta_iterations: int = 1000
    second_derivatives: bool = False
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        check_int("hidden_size", self.hidden_size, minimum=1)
        check_int("num_layers", self.num_layers, minimum=1)
        check_positive("preprocess_k", self.preprocess_k)
        check_positive("output_scale", self.output_scale)
        check_int("dim", self.dim, minimum=1)
        check_int("num_problems", self.num_problems, minimum=1)
        check_choice("distribution", self.distribution, ("gaussian", "uniform"))
        check_positive("init_std", self.init_std, allow_zero=True)
        check_int("unroll", self.unroll, minimum=1)
        check_int("horizon", self.horizon, minimum=1)
        if self.horizon % self.unroll:
            raise InvalidArgumentError(
                f"horizon = {self.horizon} is invalid; it must be a multiple of unroll = {self.unroll}"
            )
        check_positive("meta_lr", self.meta_lr)
        check_int("meta_iterations", self.meta_iterations, minimum=0)
        if not isinstance(self.second_derivatives, bool):
            raise InvalidTypeError(f"second_derivatives must be a bool, got {self.second_derivatives!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise InvalidArgumentError(f"dtype = {self.dtype!r} is unsupported; valid: torch.float32, torch.float64")


def _seeds(seed: int, n: int) -> list[int]:
    """n independent integer seeds derived from one (numpy SeedSequence), so streams never overlap."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidTypeError(f"seed must be an int, got {seed!r}")
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


# ---------------------------------------------------------------------------------------------- optimizee
@dataclass(frozen=True)
class Quadratics:
    """B quadratic optimizees f_i(theta) = ||W_i theta - y_i||^2: ``W`` (B, d, d), ``y`` (B, d), ``theta0`` (B, d)."""

    W: Tensor
    y: Tensor
    theta0: Tensor

    @property
    def num_problems(self) -> int:
        return int(self.W.shape[0])


def quadratic_loss(theta: Tensor, W: Tensor, y: Tensor) -> Tensor:
    """One problem's loss f(theta) = ||W theta - y||^2 (W (d, d), y and theta (d,))."""
    r = W @ theta - y
    return (r * r).sum()


def quadratic_losses(problems: Quadratics, theta: Tensor) -> Tensor:
    """Per-problem losses (B,) at theta (B, d)."""
    return vmap(quadratic_loss)(theta, problems.W, problems.y)


def quadratic_grads(problems: Quadratics, theta: Tensor) -> Tensor:
    """Per-problem gradients (B, d) at theta (B, d), by torch.func.grad (2 W^T (W theta - y))."""
    return vmap(grad(quadratic_loss))(theta, problems.W, problems.y)


def sample_quadratics(
    num_problems: int, seed: int | torch.Generator, config: L2OConfig | None = None
) -> Quadratics:
    """B fresh problems f_i(theta) = ||W_i theta - y_i||^2 with theta_0 ~ N(0, init_std^2 I), drawn from ``seed``.

    Entries of W (d x d) and y (d) are i.i.d. N(0, 1) (``distribution="gaussian"``, Andrychowicz et al. 2016,
    Sec. 3.1) or U[0, 1) (``"uniform"``, the authors' code); d, init_std and dtype come from ``config``.
    """
    config = config or L2OConfig()
    B = check_int("num_problems", num_problems, minimum=1)
    gen = make_generator(seed)
    d, dt = config.dim, config.dtype
    draw = torch.randn if config.distribution == "gaussian" else torch.rand
    W = draw(B, d, d, generator=gen, dtype=dt)
    y = draw(B, d, generator=gen, dtype=dt)
    theta0 = config.init_std * torch.randn(B, d, generator=gen, dtype=dt)
    return Quadratics(W=W, y=y, theta0=theta0)


# ------------------------------------------------------------------------------------------ the LSTM itself
def log_and_sign(g: Tensor, k: float) -> Tensor:
    """LogAndSign preprocessing of each gradient coordinate into two features, shape g.shape + (2,).

    .. math:: \\nabla\\mapsto\\begin{cases}(\\log|\\nabla|/k,\\ \\mathrm{sign}\\,\\nabla) & |\\nabla|\\ge e^{-k}\\\\
              (-1,\\ e^{k}\\nabla) & \\text{otherwise}\\end{cases}

    written as :math:`(\\log\\max(|\\nabla|, e^{-k})/k,\\ \\mathrm{clip}(e^k\\nabla, -1, 1))` (no data-dependent
    branch; equal to the authors' code up to their machine-epsilon shift inside the log).
    Reference: Andrychowicz et al. 2016, Appendix A.
    """
    k = float(k)
    log_part = torch.log(torch.clamp(g.abs(), min=math.exp(-k))) / k
    sign_part = torch.clamp(g * math.exp(k), -1.0, 1.0)
    return torch.stack([log_part, sign_part], dim=-1)


def init_lstm_optimizer(config: L2OConfig, seed: int | torch.Generator) -> dict[str, Tensor]:
    """Initial LSTM-optimiser weights phi as a flat dict of tensors (same seed -> same tensors).

    Per layer l: ``layer{l}.w_ih`` (4H, in), ``layer{l}.w_hh`` (4H, H), ``layer{l}.b`` (4H,), gates ordered
    (input, forget, cell, output), with in = 2 (LogAndSign features) for l = 0 and H above; ``out.w`` (1, H),
    ``out.b`` (1,). Weights ~ U(-1/sqrt(H), 1/sqrt(H)) (torch.nn.LSTM's law), forget-gate bias 1, other biases 0.
    """
    gen = make_generator(seed)
    H, dt = config.hidden_size, config.dtype
    bound = 1.0 / math.sqrt(H)

    def uniform(*shape):
        return (2 * torch.rand(*shape, generator=gen, dtype=dt) - 1) * bound

    params: dict[str, Tensor] = {}
    for l in range(config.num_layers):
        n_in = 2 if l == 0 else H
        b = torch.zeros(4 * H, dtype=dt)
        b[H : 2 * H] = 1.0
        params[f"layer{l}.w_ih"] = uniform(4 * H, n_in)
        params[f"layer{l}.w_hh"] = uniform(4 * H, H)
        params[f"layer{l}.b"] = b
    params["out.w"] = uniform(1, H)
    params["out.b"] = torch.zeros(1, dtype=dt)
    return params


def init_lstm_state(config: L2OConfig, num_coordinates: int) -> State:
    """Zero hidden and cell states (h, c), each (num_layers, num_coordinates, hidden_size)."""
    n = check_int("num_coordinates", num_coordinates, minimum=1)
    shape = (config.num_layers, n, config.hidden_size)
    return torch.zeros(shape, dtype=config.dtype), torch.zeros(shape, dtype=config.dtype)


def _num_layers(params: Mapping[str, Tensor]) -> int:
    return sum(1 for k in params if k.endswith(".w_ih"))


def lstm_step(
    params: Mapping[str, Tensor], state: State, grad: Tensor, config: L2OConfig | None = None
) -> tuple[Tensor, State]:
    """One coordinatewise step of the LSTM optimiser: (update g_t shaped like ``grad``, next state).

    Every entry of ``grad`` (any shape, e.g. (B, d) for B problems) is one LSTM batch row; with
    :math:`x=\\mathrm{LogAndSign}_k(\\nabla)` and per layer
    :math:`(i,f,\\tilde c,o)=W_{ih}x+W_{hh}h+b`, :math:`c'=\\sigma(f)c+\\sigma(i)\\tanh\\tilde c`,
    :math:`h'=\\sigma(o)\\tanh c'` (input of the next layer), the update is
    :math:`g_t=s\\,(w_{out}^\\top h'_{top}+b_{out})` with s = ``output_scale``. Pure: no state is mutated.
    ``config`` supplies k and s (default :class:`L2OConfig`); it must match the one ``params`` were trained with.
    Reference: Andrychowicz et al. 2016, Sec. 2.1 and Fig. 3.
    """
    config = config or L2OConfig()
    h, c = state
    n = grad.numel()
    if h.shape[1] != n:
        raise InvalidArgumentError(
            f"state holds {h.shape[1]} coordinates but grad has {n}; use init_lstm_state(config, {n})"
        )
    x = log_and_sign(grad.reshape(n), config.preprocess_k)
    hs, cs = [], []
    for l in range(_num_layers(params)):
        gates = x @ params[f"layer{l}.w_ih"].T + h[l] @ params[f"layer{l}.w_hh"].T + params[f"layer{l}.b"]
        i, f, g, o = gates.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c[l] + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        hs.append(h_new)
        cs.append(c_new)
        x = h_new
    out = x @ params["out.w"].T + params["out.b"]
    update = config.output_scale * out.reshape(grad.shape)
    return update, (torch.stack(hs), torch.stack(cs))


# ------------------------------------------------------------------------------------------- meta-training
def unroll_meta_loss(params, state, theta, problems: Quadratics, config: L2OConfig):
    """One truncated unroll: ``config.unroll`` LSTM steps from (theta, state); return (meta-loss, theta_T, state_T).

    Meta-loss :math:`\\frac1B\\sum_{i=1}^B\\sum_{t=1}^{T} f_i(\\theta_t)` (weights w_t = 1), T = ``unroll``,
    differentiable in ``params``; the gradient fed to the LSTM is taken at ``theta.detach()`` unless
    ``config.second_derivatives`` (Andrychowicz et al. 2016, Sec. 2, Eq. 3 and the note on dropping
    second derivatives).
    """
    meta_loss = torch.zeros((), dtype=config.dtype)
    for _ in range(config.unroll):
        x = theta if config.second_derivatives else theta.detach()
        g = quadratic_grads(problems, x)
        update, state = lstm_step(params, state, g, config)
        theta = theta + update
        meta_loss = meta_loss + quadratic_losses(problems, theta).mean()
    return meta_loss, theta, state


def meta_train(
    config: L2OConfig, seed: int, progress: bool = False
) -> tuple[dict[str, Tensor], pd.DataFrame]:
    """Meta-train the LSTM optimiser on random quadratics by truncated BPTT with Adam; return (phi, history).

    Every ``horizon/unroll`` iterations a fresh batch of ``num_problems`` quadratics (and zero LSTM state) is
    drawn; each iteration unrolls ``unroll`` optimizee steps from where the last one stopped, takes
    :math:`\\mathcal L=\\frac1B\\sum_i\\sum_{t=1}^{\\text{unroll}} f_i(\\theta_t)` and makes one Adam step (lr
    ``meta_lr``) on phi; theta and the LSTM state are detached between unrolls (truncation).
    ``history`` has one row per iteration: ``iteration``, ``epoch``, ``step`` (optimizee steps into the epoch
    after the unroll), ``meta_loss`` (sum over the unroll, mean over problems), ``final_loss`` (mean f at the
    unroll's end) and ``wall_time`` (s since start). Same seed -> same phi and history (up to wall_time).
    Reference: Andrychowicz et al. 2016, Sec. 2 and 3.1; THEORY.md §13.
    """
    init_seed, problem_seed = _seeds(seed, 2)
    params = {k: v.requires_grad_(True) for k, v in init_lstm_optimizer(config, init_seed).items()}
    gen = make_generator(problem_seed)
    opt = torch.optim.Adam(list(params.values()), lr=config.meta_lr)
    per_epoch = config.horizon // config.unroll
    n = config.num_problems * config.dim
    rows = []
    iterator = range(config.meta_iterations)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="meta-train L2O")
    start = time.perf_counter()
    for it in iterator:
        if it % per_epoch == 0:
            problems = sample_quadratics(config.num_problems, gen, config)
            theta, state = problems.theta0, init_lstm_state(config, n)
        meta_loss, theta, state = unroll_meta_loss(params, state, theta, problems, config)
        opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        opt.step()
        theta, state = theta.detach(), (state[0].detach(), state[1].detach())
        with torch.no_grad():
            final = quadratic_losses(problems, theta).mean()
        rows.append(
            dict(
                iteration=it,
                epoch=it // per_epoch,
                step=(it % per_epoch + 1) * config.unroll,
                meta_loss=float(meta_loss.detach()),
                final_loss=float(final),
                wall_time=time.perf_counter() - start,
            )
        )
    history = pd.DataFrame(
        rows, columns=["iteration", "epoch", "step", "meta_loss", "final_loss", "wall_time"]
    )
    return {k: v.detach() for k, v in params.items()}, history


# --------------------------------------------------------------------------------------------- baselines
def _baseline_init(theta: Tensor) -> tuple[Tensor, Tensor]:
    """Zero first and second moments (m, v) shaped like theta."""
    return torch.zeros_like(theta), torch.zeros_like(theta)


def baseline_step(name: str, lr: float, state, grad: Tensor, t: int):
    """One step of a hand-designed optimiser: (update, next state), pure; ``t`` counts from 1.

    sgd: :math:`-\\eta\\nabla`. momentum (heavy ball, 0.9): :math:`v\\leftarrow0.9v+\\nabla`, :math:`-\\eta v`.
    rmsprop (decay 0.99, eps 1e-8, torch's defaults): :math:`s\\leftarrow0.99s+0.01\\nabla^2`,
    :math:`-\\eta\\nabla/(\\sqrt s+\\epsilon)`. adam (0.9, 0.999, 1e-8; Kingma & Ba 2015):
    :math:`-\\eta\\hat m/(\\sqrt{\\hat v}+\\epsilon)` with bias-corrected moments. ``state`` = (m, v).
    """
    m, v = state
    if name == "sgd":
        return -lr * grad, state
    if name == "momentum":
        m = 0.9 * m + grad
        return -lr * m, (m, v)
    if name == "rmsprop":
        v = 0.99 * v + 0.01 * grad * grad
        return -lr * grad / (v.sqrt() + 1e-8), (m, v)
    if name == "adam":
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        return -lr * m_hat / (v_hat.sqrt() + 1e-8), (m, v)
    raise InvalidArgumentError(f"baseline = {name!r} is unknown; valid: {', '.join(BASELINES)}")


def _trajectory(name, problems: Quadratics, steps: int, params, lr, config: L2OConfig) -> Tensor:
    """Losses (steps + 1, B) of optimiser ``name`` run from theta_0 on each problem (no graph kept)."""
    with torch.no_grad():
        theta = problems.theta0
        if name == "lstm":
            state = init_lstm_state(config, theta.numel())
        else:
            state = _baseline_init(theta)
        losses = [quadratic_losses(problems, theta)]
        for t in range(1, steps + 1):
            g = quadratic_grads(problems, theta)
            if name == "lstm":
                update, state = lstm_step(params, state, g, config)
            else:
                update, state = baseline_step(name, lr, state, g, t)
            theta = theta + update
            losses.append(quadratic_losses(problems, theta))
        return torch.stack(losses)


def run_optimizer(
    name: str,
    problems: Quadratics,
    steps: int,
    *,
    params: Mapping[str, Tensor] | None = None,
    lr: float | None = None,
    config: L2OConfig | None = None,
) -> pd.DataFrame:
    """Run one optimiser on a batch of quadratics for ``steps`` steps; tidy losses (step, optimizer, problem, loss).

    ``name`` is ``"lstm"`` (needs ``params`` from :func:`meta_train` and the ``config`` they were trained with)
    or a baseline in :data:`BASELINES` (needs ``lr``; tune it with :func:`tune_learning_rate`). Rows cover
    steps 0..steps (step 0 = theta_0) for every problem. A diverging run is recorded (inf/nan losses), not raised.
    """
    check_choice("name", name, OPTIMIZERS)
    steps = check_int("steps", steps, minimum=0)
    config = config or L2OConfig()
    if name == "lstm":
        if params is None:
            raise InvalidArgumentError("params = None is invalid for name='lstm'; pass meta_train's params")
    else:
        if lr is None:
            raise InvalidArgumentError(f"lr = None is invalid for name={name!r}; pass a learning rate in (0, inf)")
        lr = check_positive("lr", lr)
    losses = _trajectory(name, problems, steps, params, lr, config)
    T, B = losses.shape
    return pd.DataFrame(
        {
            "step": np.repeat(np.arange(T), B),
            "optimizer": name,
            "problem": np.tile(np.arange(B), T),
            "loss": losses.reshape(-1).double().numpy(),
        }
    )


def tune_learning_rate(
    name: str, problems: Quadratics, steps: int, grid=DEFAULT_LR_GRID
) -> tuple[float, pd.DataFrame]:
    """Best learning rate of a baseline on ``grid``: the one with the smallest mean final loss on ``problems``.

    Returns (best lr, table with one row per lr: ``lr``, ``final_loss``). Diverged runs (non-finite mean) count
    as +inf; ties go to the smaller lr. Pass training problems, never the held-out ones.
    """
    check_choice("name", name, BASELINES)
    steps = check_int("steps", steps, minimum=1)
    grid = [check_positive("lr", lr) for lr in grid]
    if not grid:
        raise InvalidArgumentError("grid is empty; give at least one learning rate")
    finals = []
    for lr in grid:
        f = _trajectory(name, problems, steps, None, lr, None)[-1].mean()
        finals.append(float(f) if torch.isfinite(f) else math.inf)
    table = pd.DataFrame({"lr": grid, "final_loss": finals})
    return grid[int(np.argmin(finals))], table


def compare_optimizers(
    params: Mapping[str, Tensor],
    config: L2OConfig,
    seed: int,
    *,
    num_problems: int = 64,
    steps: int = 100,
    names=OPTIMIZERS,
    grid=DEFAULT_LR_GRID,
) -> pd.DataFrame:
    """Learning curves of the trained LSTM and the tuned baselines on the same held-out quadratics.

    From ``seed`` two independent problem sets of ``num_problems`` are drawn: training problems on which each
    baseline's lr is tuned over ``grid`` (Andrychowicz et al. tuned baselines likewise), and held-out problems on
    which every optimiser in ``names`` runs ``steps`` steps. Returns the tidy (step, optimizer, problem, loss)
    table of :func:`run_optimizer` with an ``lr`` column (NaN for the LSTM).
    """
    tune_seed, test_seed = _seeds(seed, 2)
    train = sample_quadratics(num_problems, tune_seed, config)
    test = sample_quadratics(num_problems, test_seed, config)
    frames = []
    for name in names:
        check_choice("name", name, OPTIMIZERS)
        if name == "lstm":
            df = run_optimizer("lstm", test, steps, params=params, config=config)
            df["lr"] = math.nan
        else:
            lr, _ = tune_learning_rate(name, train, steps, grid)
            df = run_optimizer(name, test, steps, lr=lr, config=config)
            df["lr"] = lr
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
