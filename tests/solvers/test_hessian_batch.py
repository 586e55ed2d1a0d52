"""The separate Hessian batch D_H (Fallah, Mokhtari, Ozdaglar 2020; THEORY.md §1.2, §14 item 8): validation, the
engine's estimator against its closed form, exact unbiasedness by enumeration, and the solvers' sampling path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from convtheory.hypergrad import meta_gradient
from convtheory.problems import LinearRegressionTasks, QuadraticTasks
from convtheory.problems.quadratic import exact_meta_gradient, least_squares_loss
from convtheory.solvers import FOMAML, HFMAML, IMAML, MAML, SOLVERS, Budget, MetaSource, MetaState, Reptile, Sampling, run
from convtheory.solvers.sources import HessianBatchTasks, split_hessian_batch, take_tasks
from convtheory.theory.maml import linreg_maml_gradient, linreg_shared_batch_bias
from convtheory.types import InvalidArgumentError

F64 = torch.float64


def _moments(X, y):
    """(A, c) = (X^T X / n, X^T y / n), batched over tasks."""
    n = X.shape[-2]
    return X.transpose(-1, -2) @ X / n, (X.transpose(-1, -2) @ y.unsqueeze(-1)).squeeze(-1) / n


def _closed_form(theta, alpha, N, sup, hes, qry):
    """prod_t (I - alpha H_h) (C w_N - e) with w_N from GD on the support moments, averaged over tasks."""
    A, c = _moments(*sup)
    H, _ = _moments(*hes)
    C, e = _moments(*qry)
    w = theta.expand(c.shape)
    for _ in range(N):
        w = w - alpha * ((A @ w.unsqueeze(-1)).squeeze(-1) - c)
    v = (C @ w.unsqueeze(-1)).squeeze(-1) - e
    P = torch.eye(theta.shape[0], dtype=F64) - alpha * H
    for _ in range(N):
        v = (P @ v.unsqueeze(-1)).squeeze(-1)
    return v.mean(0)


@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("method", ["maml", "hfmaml"])
def test_engine_uses_the_hessian_batch_for_the_jacobians(method, N):
    """Inner steps on S, Hessian factors on D_H, query gradient on D: equals the closed form (maml: 1e-13;
    hfmaml's central differences: 1e-10), and differs from the shared-batch estimator."""
    g = torch.Generator().manual_seed(0)
    B, d = 3, 3
    mk = lambda n: (torch.randn(B, n, d, generator=g, dtype=F64), torch.randn(B, n, generator=g, dtype=F64))  # noqa
    sup, hes, qry = mk(4), mk(5), mk(6)
    theta = torch.randn(d, generator=g, dtype=F64)
    mg, info = meta_gradient(least_squares_loss, theta, sup, qry, method=method, inner_steps=N, inner_lr=0.1,
                             hessian=hes, compile="never")
    ref = _closed_form(theta, 0.1, N, sup, hes, qry)
    assert torch.allclose(mg, ref, atol=1e-13 if method == "maml" else 1e-10, rtol=0)
    shared, _ = meta_gradient(least_squares_loss, theta, sup, qry, method=method, inner_steps=N, inner_lr=0.1,
                              compile="never")
    assert float((shared - ref).norm()) > 1e-3
    assert torch.allclose(shared, _closed_form(theta, 0.1, N, sup, sup, qry), atol=1e-10, rtol=0)
    assert info.oracle.grad == B * (N + 1) + (2 * B * N if method == "hfmaml" else 0)


def test_independent_batches_are_unbiased_by_exact_enumeration():
    """One task, S = D_H = 1 sample each drawn uniformly from K = 4 points: the mean over all K^2 (support,
    Hessian) pairs is the exact expectation. Independent: (I - alpha E[H]) (C E[w_1] - e) to 1e-13; shared
    (the K diagonal pairs): off by alpha^2 (E[x x^T C x x^T] - E[xx^T] C E[xx^T]) (theta - ...) != 0."""
    g = torch.Generator().manual_seed(3)
    K, d, alpha = 4, 2, 0.3
    Xp, yp = torch.randn(K, 1, d, generator=g, dtype=F64), torch.randn(K, 1, generator=g, dtype=F64)
    Xq, yq = torch.randn(1, 5, d, generator=g, dtype=F64), torch.randn(1, 5, generator=g, dtype=F64)
    theta = torch.randn(d, generator=g, dtype=F64)
    pairs = list(itertools.product(range(K), range(K)))
    si, hi = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    qry = (Xq.expand(len(pairs), 5, d), yq.expand(len(pairs), 5))
    mg, _ = meta_gradient(least_squares_loss, theta, (Xp[si], yp[si]), qry, inner_steps=1, inner_lr=alpha,
                          hessian=(Xp[hi], yp[hi]), compile="never")
    A, c = _moments(Xp, yp)
    Abar, cbar = A.mean(0), c.mean(0)
    C, e = _moments(Xq[0], yq[0])
    w1 = theta - alpha * (Abar @ theta - cbar)
    expect = (torch.eye(d, dtype=F64) - alpha * Abar) @ (C @ w1 - e)
    assert torch.allclose(mg, expect, atol=1e-13, rtol=0)
    shared, _ = meta_gradient(least_squares_loss, theta, (Xp, yp), (Xq.expand(K, 5, d), yq.expand(K, 5)),
                              inner_steps=1, inner_lr=alpha, compile="never")
    assert float((shared - expect).norm()) > 1e-3


def test_monte_carlo_mean_matches_the_closed_forms_through_the_solver():
    """MAML's direction on 20000 resampled linear-regression tasks via Sampling(D_H=...): within 5 standard errors
    of linreg_maml_gradient; the default (shared) within 5 s.e. of it plus linreg_shared_batch_bias."""
    fam = LinearRegressionTasks(d=3, S=3, D=3, mu=0.3, L=1.0, sigma2=0.1, task_spread=0.3)
    Sigma, m = fam.population_covariance()[0].numpy(), np.full(3, 1 / np.sqrt(3))
    theta = torch.tensor([1.5, -1.0, 0.5], dtype=F64)
    n, chunks = 20000, 20
    for D_H, extra in ((3, 0.0), (None, 1.0)):
        samp = Sampling(mode="resample", B=n, D_H=D_H)
        solver = MAML(alpha=0.6, N=1, sampling=samp)
        tasks = MetaSource(fam, samp, seed=1, eval_tasks=1).batch(torch.Generator().manual_seed(2))
        assert isinstance(tasks, HessianBatchTasks) == (D_H is not None)
        est = np.stack([solver.direction(MetaState(theta, 0.6, 1.0), take_tasks(tasks, slice(i, i + n // chunks)))[0]
                        .numpy() for i in range(0, n, n // chunks)])
        pred = linreg_maml_gradient(theta.numpy(), 0.6, Sigma, m) + extra * linreg_shared_batch_bias(
            theta.numpy(), 0.6, 3, Sigma, m)
        se = est.std(0, ddof=1) / np.sqrt(chunks)
        assert np.all(np.abs(est.mean(0) - pred) <= 5 * se), (est.mean(0), pred, se)
    assert np.linalg.norm(linreg_shared_batch_bias(theta.numpy(), 0.6, 3, Sigma, m)) > 20 * np.linalg.norm(se)


def test_split_keeps_exact_oracles_consistent_and_solvers_run():
    """The split support's exact (A, c) are its moments; the pool objective the Trace measures is exact; a MAML
    and an HF-MAML run with D_H record finite exact gradients; the hessian batch follows take_tasks."""
    fam = LinearRegressionTasks(d=3, S=4, D=5)
    tasks = split_hessian_batch(fam.sample(6, 0), 3)
    A, c = _moments(*tasks.support)
    assert torch.allclose(tasks.exact["A"], A, atol=1e-14) and torch.allclose(tasks.exact["c"], c, atol=1e-14)
    assert tasks.support[0].shape == (6, 3, 3) and tasks.hessian[0].shape == (6, 1, 3)
    sub = take_tasks(tasks, torch.tensor([4, 1]))
    assert torch.equal(sub.hessian[0], tasks.hessian[0][[4, 1]])
    g_exact = exact_meta_gradient(torch.ones(3, dtype=F64), tasks, 0.1, 2)
    g_engine, _ = meta_gradient(least_squares_loss, torch.ones(3, dtype=F64), tasks.support, tasks.query,
                                inner_steps=2, inner_lr=0.1, compile="never")
    assert torch.allclose(g_exact, g_engine, atol=1e-13)
    for cls in (MAML, HFMAML):
        tr = run(cls(alpha=0.1, beta=0.2, N=2, sampling=Sampling(B=4, num_tasks=8, S=3, D_H=2)), fam,
                 Budget(iterations=3), seed=0, eval_tasks=4)
        assert (tr["grad_norm_kind"] == "exact").all() and np.isfinite(tr["grad_norm"]).all()
        assert (tr["cfg_D_H"] == 2).all()


def test_default_behaviour_is_unchanged():
    """D_H None: the same Trace as a Sampling built without the field (same numbers, same seed)."""
    fam = LinearRegressionTasks(d=3, S=4, D=4)
    a = run(MAML(alpha=0.1, beta=0.2, sampling=Sampling(B=3)), fam, Budget(iterations=3), seed=5, eval_tasks=4)
    b = run(MAML(alpha=0.1, beta=0.2, sampling=Sampling(B=3, D_H=None)), fam, Budget(iterations=3), seed=5,
            eval_tasks=4)
    assert np.array_equal(a["grad_norm"].to_numpy(), b["grad_norm"].to_numpy())


def test_bad_D_H_values_are_refused():
    for bad in (0, -2):
        with pytest.raises(InvalidArgumentError, match="D_H"):
            Sampling(D_H=bad)
    with pytest.raises(Exception, match="D_H"):
        Sampling(D_H=1.5)
    with pytest.raises(InvalidArgumentError, match="D_H"):  # a population family has no samples to split
        MetaSource(QuadraticTasks(d=2), Sampling(B=2, D_H=2), seed=0)
    for cls in (FOMAML, Reptile, IMAML, SOLVERS["metasgd"], SOLVERS["alpha-maml"]):
        with pytest.raises(InvalidArgumentError, match="D_H"):
            cls(sampling=Sampling(D_H=2))
    X = torch.zeros(2, 3, 2, dtype=F64)
    data = (X, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(InvalidArgumentError, match="hessian"):
        meta_gradient(least_squares_loss, torch.zeros(2, dtype=F64), data, data, method="fomaml", hessian=data)
    with pytest.raises(InvalidArgumentError, match="hessian"):
        meta_gradient(least_squares_loss, torch.zeros(2, dtype=F64), data, data,
                      hessian=(X[:1], torch.zeros(1, 3, dtype=F64)))
