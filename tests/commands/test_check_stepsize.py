"""`convtheory check-stepsize` as a user runs it (subprocess), its numbers against convtheory.theory computed here,
and the exact iteration Jacobians it predicts rates from against the solvers' own directions."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from convtheory import theory
from convtheory.commands import check_stepsize as cs
from convtheory.problems import QuadraticTasks
from convtheory.solvers import SOLVERS, Sampling
from convtheory.solvers.meta import MetaState
from convtheory.solvers.sources import MetaSource, subseeds
from convtheory.types import InvalidArgumentError


def _command() -> list[str]:
    """`python -m convtheory.cli check-stepsize` once the CLI registers it, else the module's own entry point."""
    from convtheory.cli import build_parser

    try:
        build_parser().parse_args(["check-stepsize", "--method", "maml", "--L", "1"])
        return [sys.executable, "-m", "convtheory.cli", "check-stepsize"]
    except SystemExit:
        return [sys.executable, "-m", "convtheory.commands.check_stepsize"]


CMD = _command()


def run(*args, timeout=300):
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout)


def start(*args):
    return subprocess.Popen([*CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_json(stdout: str) -> dict:
    """stdout holds exactly one JSON object and nothing else (strict: no NaN / Infinity)."""
    def no_constant(name):
        raise AssertionError(f"non-standard JSON constant {name} in stdout")

    text = stdout.strip()
    assert text.startswith("{") and text.endswith("}") and "\n" not in text, stdout[:300]
    out = json.loads(text, parse_constant=no_constant)
    assert isinstance(out, dict)
    return out


def threshold(rep: dict, name: str, kind: str) -> float:
    values = [t["value"] for t in rep["theory"]["thresholds"] if t["name"] == name and t["kind"] == kind]
    assert len(values) == 1, rep["theory"]["thresholds"]
    return values[0]


def pool_as_run_draws_it(B: int, seed: int = 0):
    """The finite-sum pool convtheory.solvers.run draws for this seed (its first sub-seed feeds the source)."""
    return MetaSource(QuadraticTasks(), Sampling(B=B), subseeds(seed, 3)[0], 10).pool


# --------------------------------------------------------------------------------------------- runs
def test_admitted_maml_converges_at_the_exact_linear_rate():
    alpha, beta, N, B = 0.04, 1.0, 3, 8
    out = run("--method", "maml", "--family", "quadratic", "--alpha", str(alpha), "--beta", str(beta), "--N", str(N),
              "--B", str(B), "--iterations", "80", "--json")
    assert out.returncode == 0, out.stderr
    rep = one_json(out.stdout)
    # theory, recomputed here with convtheory.theory on the pool the run uses
    A = pool_as_run_draws_it(B).exact["A"].numpy()
    h = np.linalg.eigvalsh(theory.quadratic.meta_hessian(alpha, N, A))
    assert threshold(rep, "alpha", "guideline") == pytest.approx(theory.ji_safe_inner_step(N, 1.0), rel=1e-12)
    assert threshold(rep, "beta", "exact") == pytest.approx(theory.quadratic.beta_max(h[-1]), rel=1e-10)
    predicted = rep["theory"]["predicted_rate"]["value"]
    assert predicted == pytest.approx(theory.quadratic.spectral_contraction(beta, h), rel=1e-10)
    assert [s["admitted"] for s in rep["theory"]["steps"]] == [True, True]
    # the run: deterministic meta-GD on the exact quadratic objective is linear with exactly that factor
    r = rep["run"]
    assert r["converged"] and not r["diverged"] and r["ratio"] < 1e-6
    fit = r["fit"]
    assert fit["ci_low"] <= predicted <= fit["ci_high"] or abs(fit["rate"] - predicted) <= 1e-3, (fit, predicted)
    assert r["rate_check"]["holds"] and r["rate_check"]["agrees_two_sided"]
    assert rep["checks"] == {"step_sizes_admitted": True, "converged": True, "diverged": False, "rate": True}


def test_beta_above_two_over_L_meta_diverges_and_exits_1():
    out = run("--method", "maml", "--family", "quadratic", "--alpha", "0.04", "--beta", "4", "--N", "3", "--B", "8",
              "--json")
    assert out.returncode == 1, out.stderr
    rep = one_json(out.stdout)
    beta_max = threshold(rep, "beta", "exact")
    assert beta_max < 4.0
    beta_step = rep["theory"]["steps"][1]
    assert not beta_step["admitted"] and beta_step["crossed"]["value"] == beta_max
    assert beta_step["text"].startswith(f"outside: beta = 4 > beta_max = {beta_max:.6g}")
    assert rep["theory"]["predicted_rate"]["value"] > 1  # theory predicts divergence ...
    r = rep["run"]
    assert r["diverged"] is True and isinstance(r["diverged_at"], int) and 0 < r["diverged_at"] <= 200
    assert not r["converged"] and f"diverged at iteration {r['diverged_at']}" in r["text"]  # ... and it diverges


def test_aid_bio_on_quadratic_bilevel_converges_and_exits_0():
    """The guideline's L_Phi uses the joint smoothness max(L, ||B||) (Ji et al. assume grad f, grad g L-Lipschitz
    in (x, y)); here ||B|| = 2.63 > L = 1, and the inner-only L would give beta_max = 1/9 = 0.111, above the exact
    stability limit 2/L_Phi = 0.108."""
    out = run("--method", "aid-bio", "--family", "quadratic_bilevel", "--mu", "0.5", "--param", "gamma=1",
              "--beta", "0.009", "--iterations", "1000", "--json")
    assert out.returncode == 0, out.stderr
    rep = one_json(out.stdout)
    c = rep["constants"]
    guide = theory.recommend("aid-bio", {k: c[k] for k in ("L", "mu", "M", "tau", "rho", "Lxy")})
    assert threshold(rep, "beta", "guideline") == pytest.approx(guide.beta_max, rel=1e-12)
    L = max(c["L"], c["Lxy"])
    assert guide.beta_max == pytest.approx(1 / theory.hyperobjective_smoothness(L, c["mu"], c["M"], 0.0, 0.0))
    assert guide.beta_max < 2 / c["L_Phi"] < 1 / 9  # safe now; the inner-only guideline was not
    assert threshold(rep, "beta", "exact") == pytest.approx(2 / c["L_Phi"], rel=1e-10)
    p = rep["theory"]["predicted_rate"]
    expect = max(abs(1 - 0.009 * c["mu_Phi"]), abs(1 - 0.009 * c["L_Phi"]))
    assert p["value"] == pytest.approx(expect, rel=1e-10)
    r = rep["run"]
    assert r["converged"] and r["ratio"] < 1e-6 and r["rate_check"]["holds"]
    assert r["fit"]["rate"] <= p["value"] + 1e-3


# ------------------------------------------------------------------------------------------ theory only
def in_process(capsys, *args):
    """The command's own entry point in this process (same parser and handler; no interpreter start-up)."""
    try:
        code = cs.main(list(args))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_theory_only_constants_match_convtheory_theory_and_exit_status(capsys):
    admitted = start("--method", "maml", "--L", "2", "--mu", "0.1", "--N", "4", "--alpha", "0.01", "--theory-only",
                     "--json")
    text = start("--method", "maml", "--L", "2", "--N", "4", "--alpha", "0.05")  # no --family: theory only
    alpha_max = theory.ji_safe_inner_step(4, 2.0)
    assert alpha_max == 1 / 64
    code, stdout, _ = in_process(capsys, "--method", "maml", "--L", "2", "--mu", "0.1", "--N", "4", "--alpha", "0.05",
                                 "--json")
    results = {0.05: (stdout, code)}
    stdout, stderr = admitted.communicate(timeout=300)
    results[0.01] = (stdout, admitted.returncode)
    for a, (stdout, code) in results.items():
        assert code == (1 if a > alpha_max else 0), stdout
        rep = one_json(stdout)
        assert rep["theory_only"] and rep["run"] is None
        assert threshold(rep, "alpha", "guideline") == pytest.approx(alpha_max, rel=1e-14)
        beta = 1 / (theory.inner_growth_factor(a, 4, 2.0) * 2.0)  # Ji et al.: L_meta <= (1 + alpha L)^(2N) L
        assert threshold(rep, "beta", "guideline") == pytest.approx(beta, rel=1e-12)
        assert rep["settings"]["beta"] == pytest.approx(beta, rel=1e-12)  # the recommended beta at this alpha
        assert rep["theory"]["steps"][0]["admitted"] is (a <= alpha_max)
    stdout, stderr = text.communicate(timeout=300)
    assert text.returncode == 1, stderr
    assert "outside: alpha = 0.05 > alpha_max = 0.015625 (Ji, Yang, Liang: alpha <= 1/(c N L), c = 8)" in stdout
    assert "no --family given: theory only" in stdout and "run: none (theory only)" in stdout
    assert stdout.rstrip().endswith("verdict: FAIL (exit 1)")


def test_bilevel_constants_only_thresholds(capsys):
    code, stdout, err = in_process(capsys, "--method", "aid-bio", "--L", "1", "--mu", "0.1", "--M", "10", "--tau", "0",
                                   "--rho", "0", "--alpha", "1.5", "--beta", "0.005", "--json")
    assert code == 0, err
    rep = one_json(stdout)
    L_phi = theory.hyperobjective_smoothness(1.0, 0.1, 10.0, 0.0, 0.0)
    assert L_phi == pytest.approx(121.0)  # L (1 + kappa)^2 for quadratic g
    assert threshold(rep, "beta", "guideline") == pytest.approx(1 / L_phi, rel=1e-12)
    assert threshold(rep, "alpha", "guideline") == 2.0
    assert rep["theory"]["recommended"]["Q"] == theory.cg_steps(10.0, 1e-3)
    code, stdout, _ = in_process(capsys, "--method", "aid-bio", "--L", "1", "--mu", "0.1", "--M", "10", "--tau", "0",
                                 "--rho", "0", "--alpha", "1.5", "--beta", "0.01", "--json")
    assert code == 1 and not one_json(stdout)["theory"]["steps"][1]["admitted"]  # 0.01 > 1/121


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_exits_2_with_one_line_naming_the_value():
    procs = [(start("--method", "maml", "--L", "1", "--mu", "2", "--json"), "mu = 2 > L = 1"),
             (start("--method", "maml", "--L", "1", "--alpha", "nan", "--json"), "'nan'")]
    for p, named in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 2, (stdout, stderr)
        assert stdout == ""
        assert stderr.count("\n") == 1 and "error:" in stderr and named in stderr, stderr


@pytest.mark.parametrize("args, named", [
    (("--method", "maml", "--L", "1", "--alpha", "-0.1"), "alpha = -0.1"),
    (("--method", "maml", "--L", "1", "--N", "-1"), "N = -1"),
    (("--method", "foo", "--L", "1"), "'foo'"),
    (("--method", "maml", "--family", "nosuch"), "'nosuch'"),
    (("--method", "maml", "--family", "quadratic", "--param", "foo=1"), "--param foo"),
    (("--method", "maml", "--L", "inf"), "'inf'"),
    (("--method", "maml", "--L", "1", "--mu", "0.5", "--B", "0"), "B = 0"),
    (("--method", "aid-bio", "--family", "quadratic"), "family = 'quadratic'"),
    (("--method", "aid-bio", "--L", "1", "--mu", "0.1"), "needs M, tau, rho"),
    (("--method", "reptile", "--L", "1"), "--alpha is required for reptile"),
])
def test_bad_input_in_process_exits_2_naming_the_value(capsys, args, named):
    code, stdout, stderr = in_process(capsys, *args, "--json")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "error:" in stderr and named in stderr, stderr


# ------------------------------------------------------------------------------------------ pure parts
def test_exact_jacobians_match_the_solvers_directions():
    """FO-MAML's and Reptile's update directions are affine in theta on quadratic tasks; their Jacobians, read off
    the solvers column by column, have the eigenvalues exact_meta_quantities predicts rates from."""
    tasks = pool_as_run_draws_it(6)
    alpha, N, d = 0.1, 3, 5
    for method, scale in (("fomaml", 1.0), ("reptile", alpha)):
        solver = SOLVERS[method](alpha=alpha, beta=1.0, N=N)

        def G(theta):
            return solver.direction(MetaState(theta, alpha, 1.0), tasks)[0] * scale

        zero = torch.zeros(d, dtype=torch.float64)
        J = torch.stack([G(torch.eye(d, dtype=torch.float64)[j]) - G(zero) for j in range(d)], 1).numpy()
        ex = cs.exact_meta_quantities(method, tasks, alpha, N, 1.0, deterministic=True, estimate=False)
        assert np.sort(np.real(ex.eigs)) == pytest.approx(np.sort(np.linalg.eigvals(J).real), abs=1e-12)
        assert ex.beta_max == pytest.approx(2 / np.linalg.eigvals(J).real.max(), rel=1e-10)
    ex = cs.exact_meta_quantities("maml", tasks, alpha, N, 1.0, deterministic=True, estimate=False)
    H = theory.quadratic.meta_hessian(alpha, N, tasks.exact["A"].numpy())
    assert ex.eigs == pytest.approx(np.linalg.eigvalsh(H), abs=1e-14)


def test_rates_and_step_limits_from_eigenvalues():
    assert cs.linear_rate(1.0, np.array([0.4, 0.6])) == pytest.approx(0.6)
    assert cs.stable_step_max(np.array([0.5, 2.0])) == pytest.approx(1.0)
    lam = np.array([1 + 1j, 1 - 1j])  # |1 - beta lambda| < 1 iff beta < 2 Re(lambda)/|lambda|^2 = 1
    assert cs.stable_step_max(lam) == pytest.approx(1.0)
    assert cs.linear_rate(1.0, lam) == pytest.approx(1.0) and cs.linear_rate(0.5, lam) < 1
    assert cs.stable_step_max(np.array([-0.1, 1.0])) is None


def test_step_check_names_the_threshold_it_crossed():
    t = cs.Threshold("alpha", 0.025, "alpha <= 1/(c N L)", "Ji, Yang, Liang", "guideline", "shape only", True)
    info = cs.Threshold("alpha", 0.01, "for comparison", "exact", "info", "exact", False)
    out = cs.step_check("alpha", 0.5, [info, t])
    assert not out.admitted and out.crossed is t
    assert out.text == "outside: alpha = 0.5 > alpha_max = 0.025 (Ji, Yang, Liang: alpha <= 1/(c N L))"
    assert cs.step_check("alpha", 0.02, [info, t]).admitted  # informational thresholds do not decide
    assert cs.step_check("beta", 9.0, [t]).text.startswith("unchecked")


def test_config_overrides_coerce_and_reject():
    over = cs.config_overrides(QuadraticTasks, {"d": "3", "mu": "0.2", "shared_curvature": "true",
                                                "dtype": "float32"}, "--param")
    assert over == {"d": 3, "mu": 0.2, "shared_curvature": True, "dtype": torch.float32}
    for raw, msg in (({"d": "3.5"}, "--param d = '3.5'"), ({"mu": "inf"}, "--param mu = 'inf'"),
                     ({"zeta": "1"}, "--param zeta is unknown for QuadraticTasks")):
        with pytest.raises(InvalidArgumentError, match=msg.replace("(", r"\(")):
            cs.config_overrides(QuadraticTasks, raw, "--param")
    with pytest.raises(InvalidArgumentError, match="write --param KEY=VALUE"):
        cs.parse_assignments(["d3"], "--param")
    assert math.isinf(cs._ratio(1.0, 0.0)) and cs._ratio(0.0, 0.0) == 0.0
