"""``convtheory hypergrad-check`` as a user runs it: errors next to theory, exit codes 0 / 1 / 2, JSON."""

import json
import math
import subprocess
import sys

import pytest
import torch

from convtheory.hypergrad.bilevel import METHODS
from convtheory.problems import QuadraticBilevel
from convtheory.problems.bilevel_quadratic import inner_iterate_exact, itd_error_exact

CMD = [sys.executable, "-m", "convtheory.cli", "hypergrad-check"]


def run(*args, cwd=None):
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def rows_of(out, method):
    return [r for r in json.loads(out.stdout)["rows"] if r["method"] == method]


# A bilevel problem with a strongly convex, non-quadratic inner objective: g = 1/2 y^T A y - y^T C x + sum softplus(y),
# spec(A) in [1/2, 2]. Constants: mu = 1/2, L = 2 + 1/4 (softplus'' <= 1/4), rho = max|softplus'''| = 1/(6 sqrt 3),
# tau = 0 (the mixed derivative -C is constant), Lxy = ||C||, M bounds ||y - ybar|| on a ball holding y0, y* and
# every GD iterate (||y*|| <= (||C x0|| + sqrt(q)) / mu since softplus' lies in (0, 1)).
SOFTPLUS_PROBLEM = '''
import math
import torch

gen = torch.Generator().manual_seed(0)
p, q = 4, 6
U, _ = torch.linalg.qr(torch.randn(q, q, generator=gen, dtype=torch.float64))
A = (U * torch.linspace(0.5, 2.0, q, dtype=torch.float64)) @ U.T
C = 0.5 * torch.randn(q, p, generator=gen, dtype=torch.float64) / math.sqrt(p)
ybar = torch.randn(q, generator=gen, dtype=torch.float64)
x0 = torch.randn(p, generator=gen, dtype=torch.float64)
y0 = torch.zeros(q, dtype=torch.float64)


def g(x, y):
    return 0.5 * y @ A @ y - y @ (C @ x) + torch.nn.functional.softplus(y).sum()


def f(x, y):
    return 0.5 * ((y - ybar) ** 2).sum() + 0.05 * (x ** 2).sum()


R = max(float(y0.norm()), (float((C @ x0).norm()) + math.sqrt(q)) / 0.5)
constants = {"L": 2.25, "mu": 0.5, "rho": 1 / (6 * math.sqrt(3)), "tau": 0.0, "M": float(ybar.norm()) + 3 * R,
             "Lxy": float(torch.linalg.matrix_norm(C, 2))}
'''


def _softplus_reference_gradient(path):
    """grad Phi(x0) by central differences of Phi(x) = f(x, y*(x)), y* by Newton (independent of the engines)."""
    ns = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    f, g, x0, y0 = ns["f"], ns["g"], ns["x0"], ns["y0"]

    def phi(x):
        y = y0.clone()
        for _ in range(50):
            gy = torch.func.grad(g, argnums=1)(x, y)
            y = y - torch.linalg.solve(torch.func.hessian(g, argnums=1)(x, y), gy)
        return float(f(x, y))

    h = 1e-5
    eye = torch.eye(x0.numel(), dtype=torch.float64)
    return torch.tensor([(phi(x0 + h * e) - phi(x0 - h * e)) / (2 * h) for e in eye], dtype=torch.float64)


def test_quadratic_defaults_every_method_itd_exact_and_aid_bounds_hold():
    out = run("--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # the whole of stdout is one JSON object
    assert result["all_hold"] is True and result["violated"] == 0
    assert result["alpha"] == 1.0 and result["constants"]["mu"] == 0.1
    rows = result["rows"]
    assert {r["method"] for r in rows} == set(METHODS)
    assert len(rows) == 2 * 4 + 3 * 16 + 16 + 1  # ITD at each N, AID and ESJ at each (N, Q), exact once

    prob = QuadraticBilevel().build(0)
    scale = float(prob.hypergradient(prob.x0).norm())
    assert result["reference_norm"] == pytest.approx(scale, rel=1e-12)
    for r in rows_of(out, "itd") + rows_of(out, "itd-forward"):
        # measured error = closed-form prediction, and both = the eigendecomposition formula computed here
        independent = float(itd_error_exact(prob, prob.x0, prob.y0, 1.0, r["N"]).norm())
        assert r["bound_kind"] == "exact" and r["holds"] is True
        assert abs(r["error"] - r["bound"]) <= 1e-9 * r["bound"]
        assert abs(r["error"] - independent) <= 1e-9 * independent
    aid = [r for r in rows if r["method"].startswith("aid-")]
    assert all(r["holds"] is True and r["bound_kind"] == "upper bound (exact constants)" for r in aid)
    assert all(0.01 < r["ratio"] <= 1.0 for r in aid)  # real bounds, not vacuous ones

    # AID fixed point at N = 40, Q = 10, recomputed here: |B| (1 - alpha mu)^Q |v*| + |B|/mu |y_N - y*|
    e = prob.extra
    yN = inner_iterate_exact(prob, prob.x0, prob.y0, 1.0, 40)
    v_star = float(torch.linalg.solve(e["H"], yN - e["ybar"]).norm())
    B = float(torch.linalg.matrix_norm(e["B"], 2))
    expected = B * 0.9**10 * v_star + B / 0.1 * float((yN - prob.y_star(prob.x0)).norm())
    (fp,) = [r for r in rows if r["method"] == "aid-fp" and r["N"] == 40 and r["Q"] == 10]
    assert fp["bound"] == pytest.approx(expected, rel=1e-9)

    esj = rows_of(out, "esj")
    assert {(r["N"], r["Q"]) for r in esj} == {(n, q) for n in (5, 10, 20, 40) for q in (2, 5, 10, 20)}
    assert all(r["bound_kind"] == "rms" and r["holds"] is None for r in esj)
    (exact,) = rows_of(out, "exact")
    assert exact["rel_error"] < 1e-12 and exact["holds"] is True


def test_table_names_problem_constants_alpha_and_counts_bounds():
    out = run("--methods", "itd,aid-cg", "--N", "5,20", "--Q", "3", "--param", "mu=0.05", "--seed", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("hypergrad-check: quadratic_bilevel (seed 1)") and "mu=0.05" in lines[0]
    assert "mu=0.05" in lines[1] and "kappa=20" in lines[1]
    assert lines[2].startswith("alpha = 1 (1/L)")
    assert lines[-1] == "all 4 bounds held"
    assert sum(line.split()[:1] in (["itd"], ["aid-cg"]) for line in lines) == 4


def test_scaled_bounds_fail_with_exit_1_and_name_the_violations():
    out = run("--methods", "itd,aid-cg,esj", "--N", "5", "--Q", "5", "--bound-scale", "1e-6")
    assert out.returncode == 1, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "2 of 2 bounds violated: itd N=5, aid-cg N=5 Q=5"
    out = run("--methods", "aid-fp", "--N", "10", "--Q", "10", "--bound-scale", "1e-6", "--json")
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["all_hold"] is False and result["violated"] == result["checked"] == 1


def test_file_problem_uses_the_engine_exact_reference_and_general_bounds(tmp_path):
    path = tmp_path / "softplus_problem.py"
    path.write_text(SOFTPLUS_PROBLEM)
    out = run("--problem", str(path), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["reference"] == "engine exact (dense Newton + solve)"
    assert result["alpha"] == pytest.approx(1 / 2.25, rel=1e-15)
    fd = _softplus_reference_gradient(path)
    assert result["reference_norm"] == pytest.approx(float(fd.norm()), rel=1e-7)
    rows = result["rows"]
    assert {r["method"] for r in rows} == set(METHODS)
    checked = [r for r in rows if r["method"] in ("itd", "itd-forward") or r["method"].startswith("aid-")]
    assert all(r["bound_kind"] == "upper bound (constants uncertain)" and r["holds"] is True for r in checked)
    itd = {r["N"]: r["error"] for r in rows_of(out, "itd")}
    assert itd[40] < 1e-5 * itd[5]  # linear convergence of ITD on a strongly convex g
    (exact,) = rows_of(out, "exact")
    assert exact["error"] == 0.0 and exact["holds"] is None and exact["note"] == "the reference itself"
    assert all(r["bound"] is None and r["holds"] is None for r in rows_of(out, "esj"))


def test_file_exact_oracle_is_checked_against_the_engine(tmp_path):
    # a file's exact_hypergradient is the reference; a wrong one (1% off) is caught by the engine's exact method
    path = tmp_path / "wrong_oracle.py"
    path.write_text(SOFTPLUS_PROBLEM + '''

def _true(x):
    from convtheory.hypergrad import hypergradient
    return hypergradient(f, g, x, y0, method="exact", inner_steps=0, inner_lr=0.1)[0]


def exact_hypergradient(x):
    return SCALE * _true(x)

SCALE = 1.0
''')
    out = run("--problem", str(path), "--methods", "exact", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["reference"] == "exact_hypergradient() of the problem file"
    assert result["rows"][0]["holds"] is True and result["rows"][0]["error"] < 1e-12
    path.write_text(path.read_text().replace("SCALE = 1.0", "SCALE = 1.01"))
    out = run("--problem", str(path), "--methods", "exact", "--json")
    assert out.returncode == 1
    assert json.loads(out.stdout)["rows"][0]["rel_error"] == pytest.approx(0.01 / 1.01, rel=1e-6)


@pytest.mark.parametrize("args, named", [
    (["--problem", "nope"], "problem = 'nope' is unknown; valid: hypercleaning, hyperrep, quadratic_bilevel"),
    (["--methods", "itd,foo"], "method = 'foo' is unknown; valid: itd, itd-forward"),
    (["--N", "-1"], "N = '-1' is invalid"),
    (["--Q", "abc"], "Q = 'abc' is invalid"),
    (["--param", "bogus=1"], "--param bogus is unknown for quadratic_bilevel; valid: p, q, mu, L, gamma"),
    (["--problem", "FILE"], "does not define f; it must define f(x, y), g(x, y), x0 and y0"),
])
def test_bad_input_exits_2_with_one_line_naming_the_value(tmp_path, args, named):
    if "FILE" in args:
        path = tmp_path / "no_f.py"
        path.write_text("import torch\ng = lambda x, y: (y ** 2).sum()\nx0 = torch.zeros(2)\ny0 = torch.zeros(2)\n")
        args = [str(path) if a == "FILE" else a for a in args]
    out = run(*args, "--json")
    assert out.returncode == 2
    assert named in out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == ""


def test_hypercleaning_runs_small_and_reports_missing_constants():
    out = run("--problem", "hypercleaning", "--param", "n_train=100", "--N", "5,40", "--Q", "2,20", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["reference"] == "exact oracle of HyperCleaning"
    rows = result["rows"]
    assert {r["method"] for r in rows} == set(METHODS) - {"itd-forward"}  # dim x = 100 > 50
    itd = rows_of(out, "itd")
    assert all(r["bound"] is None and "rho" in r["note"] and "tau" in r["note"] for r in itd)
    assert itd[-1]["error"] < itd[0]["error"]
    (exact,) = rows_of(out, "exact")
    assert exact["holds"] is True and exact["rel_error"] < 1e-8
    assert result["checked"] == 1 and math.isclose(result["constants"]["mu"], 0.01)
