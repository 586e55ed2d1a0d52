"""MRBO, VRBO (Yang, Ji, Liang 2021) and ESJ-S (Sow, Ji, Liang 2021) on the quadratic bilevel family (THEORY.md
§1.3, §10-11): noise-free reductions to exact deterministic recursions, unbiasedness of the recursive estimates
against the exact Neumann mean, convergence, exact oracle and sample accounting, config checks, reproducibility."""

import math

import numpy as np
import pytest
import torch

from convtheory.problems.bilevel_quadratic import QuadraticBilevel, inner_iterate_exact, neumann_exact
from convtheory.solvers import (
    ESJ,
    MRBO,
    SOLVERS,
    VRBO,
    BilevelSource,
    Budget,
    StocBiO,
    StochasticBilevel,
    StochasticESJ,
    quadratic_noise,
    run,
    samples_per_step,
)
from convtheory.theory.stochastic_bilevel import mrbo_eta, mrbo_momentum, sample_complexity_exponent
from convtheory.types import InvalidArgumentError, InvalidTypeError, OracleCount

PROB = QuadraticBilevel(p=3, q=5, mu=0.5, L=1.0, gamma=1.0).build(0)
C = PROB.constants.extra
EX = PROB.extra


def _grad_g(x, y):
    return EX["H"] @ y - EX["B"] @ x - EX["b"]


def _steps(cfg, problem, n, seed=0):
    """The states after 0..n steps (and the StepInfos) of ``cfg`` driven by hand."""
    src = BilevelSource(problem, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    states, infos = [cfg.init(src, seed)], []
    for _ in range(n):
        s, info = cfg.step(states[-1], src, gen)
        states.append(s)
        infos.append(info)
    return states, infos


# ---------------------------------------------------------------------------- noise-free exact recursions
def test_mrbo_without_noise_is_simultaneous_gradient_descent():
    """Noise-free draws: v_k = Neumann hypergradient at (x_k, y_k), u_k = grad_y g(x_k, y_k), so
    x_{k+1} = x_k - beta eta_k h(x_k, y_k), y_{k+1} = y_k - alpha eta_k grad_y g(x_k, y_k) (dense algebra)."""
    cfg = MRBO(alpha=0.8, beta=0.3, Q=4, eta=0.9, t=1.5, m=4.0, c1=0.7, c2=0.9)
    states, infos = _steps(cfg, PROB, 4)
    x, y = PROB.x0, PROB.y0
    for k in range(4):
        h = neumann_exact(PROB, x, y, 0.9, 4)
        torch.testing.assert_close(infos[k].direction, h, rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(states[k + 1].u, _grad_g(x, y), rtol=1e-11, atol=1e-12)
        e = 1.5 / (4.0 + k) ** (1 / 3)
        x, y = x - 0.3 * e * h, y - 0.8 * e * _grad_g(x, y)
        torch.testing.assert_close(states[k + 1].x, x, rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(states[k + 1].y, y, rtol=1e-11, atol=1e-12)
    assert cfg.step_sizes(states[2]) == pytest.approx((0.8 * 1.5 / 6 ** (1 / 3), 0.3 * 1.5 / 6 ** (1 / 3)))


def test_vrbo_without_noise_is_warm_started_gd_with_n_inner_steps():
    """Noise-free draws: x_{k+1} = x_k - beta h(x_k, y_k) and y_{k+1} = N GD steps on g(x_{k+1}, .) from y_k,
    through both the refresh (k mod q = 0) and the carried-estimate steps; v, u track (x, y) exactly."""
    cfg = VRBO(alpha=0.7, beta=0.2, N=3, Q=4, eta=0.9, q=2, S1=5, S2=2)
    states, infos = _steps(cfg, PROB, 5)
    x, y = PROB.x0, PROB.y0
    for k in range(5):
        h = neumann_exact(PROB, x, y, 0.9, 4)
        torch.testing.assert_close(infos[k].direction, h, rtol=1e-10, atol=1e-11)
        x = x - 0.2 * h
        y = inner_iterate_exact(PROB, x, y, 0.7, 3)
        s = states[k + 1]
        torch.testing.assert_close(s.x, x, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(s.y, y, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(s.v, neumann_exact(PROB, x, y, 0.9, 4), rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(s.u, _grad_g(x, y), rtol=1e-10, atol=1e-11)


def test_esjs_without_noise_is_esj():
    """With noise-free samples ESJ-S draws the same directions as ESJ and gives the same trace."""
    kw = dict(alpha=1.0, beta=0.05, N=4, Q=2, delta=1e-2)
    a = run(ESJ(**kw), PROB, Budget(iterations=6), seed=3)
    b = run(StochasticESJ(**kw, S=7, D=9), PROB, Budget(iterations=6), seed=3)
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-11)
    assert (b["oracle_grad"] == a["oracle_grad"]).all()
    assert b["grad_norm"].iloc[-1] < 0.5 * b["grad_norm"].iloc[0]


# ---------------------------------------------------------------------------------------- unbiasedness
NOISY = quadratic_noise(PROB, sigma_H=0.4, sigma_g=0.5, sigma_J=0.3, sigma_f=0.5)


@pytest.mark.parametrize("cfg,k", [
    (MRBO(alpha=0.5, beta=0.05, Q=2, eta=0.8, S=1, D=1, D_H=1, c1=0.5, c2=0.5, m=2.0), 2),
    (VRBO(alpha=0.5, beta=0.05, N=1, Q=2, eta=0.8, q=5, S1=2, S2=1), 1),
], ids=["mrbo", "vrbo"])
def test_recursive_estimate_is_unbiased_for_the_neumann_mean_at_its_point(cfg, k):
    """E[v_k - h(x_k, y_k)] = 0 with h the exact Neumann mean (stocBiO's mean, THEORY.md §1.3): the recursive
    corrections evaluate the same batches at two points, so every correction is unbiased for the change of h
    (Monte Carlo, 5 standard errors). The same mean is biased against the true grad Phi(x_k) (detected)."""
    n = 120
    err, bias = [], []
    mrbo = cfg.name == "mrbo"
    for r in range(n):
        states, infos = _steps(cfg, NOISY, k + 1 if mrbo else k, seed=r)
        s = states[k]  # MRBO: the direction of step k is v_k; VRBO: the state carries v at (x_k, y_k)
        v = infos[k].direction if mrbo else s.v
        err.append(v - neumann_exact(PROB, s.x, s.y, 0.8, 2))
        bias.append(v - PROB.hypergradient(s.x))
    err, bias = torch.stack(err), torch.stack(bias)
    se = err.std(0) / math.sqrt(n)
    assert float((err.mean(0).abs() / se).max()) < 5.0
    assert float((bias.mean(0).abs() / (bias.std(0) / math.sqrt(n))).max()) > 6.0


# ------------------------------------------------------------------------------------------ convergence
P0 = QuadraticBilevel(p=3, q=5, mu=0.5, L=1.0, gamma=0.0).build(0)  # gamma = 0: ES noise vanishes at x*


@pytest.mark.parametrize("cfg,iters,problem", [
    (MRBO(alpha=1.0, beta=1 / C["L_Phi"], Q=8, S=16, D=16, D_H=16, t=1.0, m=2.0), 80, PROB),
    (VRBO(alpha=1.0, beta=1 / C["L_Phi"], N=2, Q=8, q=8, S1=256, S2=8), 30, PROB),
    (StochasticESJ(alpha=1.0, beta=0.5 / P0.constants.extra["L_Phi"], N=4, Q=3, S=64, D=64), 80, P0),
], ids=["mrbo", "vrbo", "esj-s"])
def test_stochastic_solvers_converge_on_noisy_quadratic_bilevel(cfg, iters, problem):
    """Small Gaussian sample noise: the exact ||grad Phi|| falls by two orders of magnitude within the budget
    (Neumann bias (1 - eta mu)^(Q + 1) ~ 2e-3 relative with eta = 1/L, Q = 8)."""
    noisy = quadratic_noise(problem, sigma_H=0.05, sigma_g=0.05, sigma_J=0.0, sigma_f=0.05)
    tr = run(cfg, noisy, Budget(iterations=iters), seed=0, eval_every=iters)
    assert (tr["grad_norm_kind"] == "exact").all() and not tr["diverged"].any()
    assert tr["grad_norm"].iloc[-1] < 1e-2 * tr["grad_norm"].iloc[0]


# ---------------------------------------------------------------------------------- oracle and samples
class Counting:
    """Sample oracles that count per-sample evaluations: a closure of n samples adds n each time it is called
    (torch.func's grad / jvp / vjp call it once per transform)."""

    def __init__(self, base: StochasticBilevel):
        self.base, self.samples, self.drawn = base, 0, 0

    def wrap(self, fn, n):
        def counted(x, y):
            self.samples += n
            return fn(x, y)
        return counted

    def stochastic(self) -> StochasticBilevel:
        def sf(n, gen):
            self.drawn += n
            return self.wrap(self.base.sample_f(n, gen), n)

        def sg(n, gen):
            self.drawn += n
            return self.wrap(self.base.sample_g(n, gen), n)
        return StochasticBilevel(self.base.problem, sf, sg)


@pytest.mark.parametrize("cfg", [
    StocBiO(alpha=1.0, beta=0.2, N=3, Q=4, S=5, D=6, D_H=7),
    MRBO(alpha=1.0, beta=0.2, Q=4, S=5, D=6, D_H=7),
    VRBO(alpha=1.0, beta=0.2, N=2, Q=4, q=3, S1=11, S2=3),
], ids=lambda c: c.method)
def test_samples_and_oracle_calls_per_step_equal_the_formulas(cfg):
    K = 5
    counter = Counting(NOISY)
    tr = run(cfg, counter.stochastic(), Budget(iterations=K), seed=0)
    assert counter.samples == sum(samples_per_step(cfg, k) for k in range(K))
    Q, N = cfg.Q, getattr(cfg, "N", 0)
    if cfg.method == "stocbio":
        per = [OracleCount(grad=N + 1, hvp=Q, jvp=1)] * K
    elif cfg.method == "mrbo":
        per = [OracleCount(grad=2, hvp=Q, jvp=1)] + [OracleCount(grad=4, hvp=2 * Q, jvp=2)] * (K - 1)
    else:
        r = [int(k % cfg.q == 0) for k in range(K)]
        per = [OracleCount(grad=4 * (N + 1) + 2 * ri, hvp=Q * (2 * (N + 1) + ri), jvp=2 * (N + 1) + ri) for ri in r]
    cum = np.cumsum([[o.grad, o.hvp, o.jvp] for o in per], axis=0)
    np.testing.assert_array_equal(tr[["oracle_grad", "oracle_hvp", "oracle_jvp"]].to_numpy()[1:], cum)
    assert (tr["oracle_fn"] == 0).all()


def test_esjs_counts_and_draws():
    cfg = StochasticESJ(alpha=1.0, beta=0.05, N=3, Q=2, S=5, D=4)
    counter = Counting(NOISY)
    tr = run(cfg, counter.stochastic(), Budget(iterations=4), seed=0)
    assert counter.drawn == 4 * (3 * 5 + 4)  # N batches of S and one of D per step
    assert samples_per_step(cfg, 0) == (2 + 1) * 3 * 5 + 4  # each inner batch used by 1 + Q runs
    assert tr["oracle_grad"].iloc[-1] == 4 * ((2 + 1) * 3 + 1)
    assert (tr["oracle_hvp"] == 0).all() and (tr["oracle_jvp"] == 0).all()


def test_mrbo_schedule_and_complexity_orders():
    assert mrbo_eta(6, 2.0, 2.0) == pytest.approx(1.0, rel=1e-14)
    assert mrbo_momentum(3, 0.5, 2.0, 6.0) == pytest.approx(0.5 * 4.0 / 8.0 ** (2 / 3), rel=1e-14)
    assert sample_complexity_exponent("mrbo") < sample_complexity_exponent("stocbio")
    with pytest.raises(InvalidArgumentError, match="momentum weight"):
        mrbo_momentum(1, 2.0, 1.0, 1.0)
    with pytest.raises(InvalidTypeError, match="samples_per_step"):
        samples_per_step(ESJ(), 0)


# ------------------------------------------------------------------------------ config checks, registry
@pytest.mark.parametrize("make,match", [
    (lambda: MRBO(c1=3.0, t=1.0, m=1.0), "momentum weight c1"),
    (lambda: MRBO(c2=-1.0), "c2"),
    (lambda: MRBO(t=-1.0), "t"),
    (lambda: MRBO(m=0.0), "m"),
    (lambda: MRBO(S=0), "S"),
    (lambda: MRBO(D_H=0), "D_H"),
    (lambda: MRBO(beta=-0.1), "beta"),
    (lambda: VRBO(q=0), "q"),
    (lambda: VRBO(S1=0), "S1"),
    (lambda: VRBO(N=-1), "N"),
    (lambda: VRBO(Q=-2), "Q"),
    (lambda: StochasticESJ(S=0), "S"),
    (lambda: StochasticESJ(D=0), "D"),
])
def test_bad_settings_raise_and_name_the_value(make, match):
    with pytest.raises(InvalidArgumentError, match=match):
        make()


def test_registry_and_reproducibility():
    assert SOLVERS["mrbo"] is MRBO and SOLVERS["vrbo"] is VRBO and SOLVERS["esj-s"] is StochasticESJ
    for cfg in (MRBO(alpha=1.0, beta=0.2, Q=3, S=4, D=4, D_H=4), VRBO(alpha=1.0, beta=0.2, N=1, Q=3, q=2, S1=8,
                                                                       S2=2),
                StochasticESJ(alpha=1.0, beta=0.05, N=2, Q=2, S=4, D=4)):
        a, b = (run(cfg, NOISY, Budget(iterations=4), seed=5) for _ in range(2))
        c = run(cfg, NOISY, Budget(iterations=4), seed=6)
        cols = [col for col in a.columns if col != "wall_time"]
        assert a[cols].equals(b[cols])
        assert not np.allclose(a["grad_norm"].iloc[1:], c["grad_norm"].iloc[1:])
        assert (a["method"] == cfg.method).all() and f"cfg_{'q' if cfg.method == 'vrbo' else 'S'}" in a.columns
