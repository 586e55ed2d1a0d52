"""The command line under random bad input (hypothesis): every invalid value gives exit status 2 and exactly one
line on stderr that names the value, never a traceback, never a run. Also ``--config FILE`` (TOML or JSON): unknown
keys, malformed files and missing files are refused the same way, and the command line overrides the file."""

import contextlib
import io
import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convtheory.cli import main

FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def call(argv):
    """Run ``convtheory argv`` in this process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def assert_refused(argv, named=None):
    rc, out, err = call(argv)
    assert rc == 2, (argv, rc, out[-500:], err[-500:])
    assert err.count("\n") == 1 and err.startswith("convtheory"), err
    assert "Traceback" not in err
    if named is not None:
        assert named in err, (named, err)


def _text(v) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else (f"{v:g}" if isinstance(v, float) else str(v))


BAD_STEP = st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False), st.just(math.nan),
                     st.just(math.inf), st.just(-math.inf))
NOT_A_NUMBER = st.text(alphabet="abcxyz_-", min_size=1, max_size=5).filter(lambda s: not s.startswith("-"))
STEPSIZE = ["check-stepsize", "--method", "maml", "--family", "quadratic", "--theory-only"]


@FUZZ
@given(flag=st.sampled_from(["--alpha", "--beta", "--tol"]), value=BAD_STEP)
def test_check_stepsize_bad_steps(flag, value):
    rc, out, err = call(STEPSIZE + [flag, repr(value) if math.isfinite(value) else str(value)])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err


@FUZZ
@given(flag=st.sampled_from(["--N", "--B", "--iterations", "--eval-tasks"]), value=st.integers(max_value=0))
def test_check_stepsize_bad_counts(flag, value):
    assert_refused(STEPSIZE + [flag, value], named=str(value))


@FUZZ
@given(flag=st.sampled_from(["--alpha", "--N", "--B", "--L", "--mu", "--seed"]), value=NOT_A_NUMBER)
def test_check_stepsize_not_a_number(flag, value):
    assert_refused(["check-stepsize", "--method", "maml", "--L", "1", "--mu", "0.1", flag, value], named=value)


@FUZZ
@given(mu=st.floats(1.01, 100.0), L=st.floats(0.01, 1.0))
def test_check_stepsize_mu_above_L(mu, L):
    assert_refused(["check-stepsize", "--method", "maml", "--L", repr(L), "--mu", repr(mu), "--theory-only"],
                   named="mu")


@FUZZ
@given(name=st.text(alphabet="abcdefghij-", min_size=1, max_size=8).filter(lambda s: not s.startswith("-")))
def test_unknown_method_family_experiment_names(name):
    assert_refused(["check-stepsize", "--method", name], named=name)
    assert_refused(["check-stepsize", "--method", "maml", "--family", name], named=name)
    assert_refused(["figures", name, "--profile", "test"], named=name)


@FUZZ
@given(flag=st.sampled_from(["--N", "--Q"]), value=st.integers(max_value=-1))
def test_hypergrad_check_bad_counts(flag, value):
    assert_refused(["hypergrad-check", flag, value], named=str(value))


@FUZZ
@given(value=BAD_STEP)
def test_hypergrad_check_bad_alpha(value):
    rc, _, err = call(["hypergrad-check", "--alpha", repr(value) if math.isfinite(value) else str(value)])
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err


@FUZZ
@given(number=st.one_of(st.integers(max_value=0), st.integers(min_value=29, max_value=10**6)))
def test_predictions_unknown_numbers(number, tmp_path_factory):
    assert_refused(["predictions", number, "--profile", "test", "--no-write",
                    "--results", tmp_path_factory.mktemp("r")], named=str(number))


FEWSHOT_BAD = st.one_of(
    st.tuples(st.just("--ways"), st.integers(max_value=1)),
    st.tuples(st.sampled_from(["--shots", "--queries", "--meta-batch", "--hidden", "--eval-batch"]),
              st.integers(max_value=0)),
    st.tuples(st.just("--inner-steps"), st.integers(max_value=-1)),
    st.tuples(st.sampled_from(["--inner-lr", "--outer-lr", "--lam"]),
              st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("--device"), st.sampled_from(["tpu", "gpu", "cuda:x", "mps0"])),
)


@FUZZ
@given(bad=FEWSHOT_BAD)
def test_fewshot_bad_settings(bad):
    flag, value = bad
    assert_refused(["fewshot", "--root", "data/omniglot", "--iterations", "1", flag, value], named=_text(value))


def test_fewshot_and_omniglot_runs_missing_data(tmp_path):
    assert_refused(["fewshot", "--root", tmp_path / "nowhere"], named="nowhere")
    assert_refused(["omniglot-runs", "--root", tmp_path / "nowhere"], named="nowhere")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "readme.txt").write_text("not omniglot")
    assert_refused(["omniglot-runs", "--root", tmp_path / "wrong"], named="wrong")


# ----------------------------------------------------------------------------------------------- config files
def test_config_file_sets_options_and_command_line_overrides(tmp_path):
    cfg = tmp_path / "maml.toml"
    cfg.write_text('method = "maml"\nfamily = "quadratic"\nalpha = 0.04\nbeta = 1\nN = 3\nB = 8\n'
                   'theory-only = true\njson = true\n[param]\nd = 4\n')
    rc, out, err = call(["check-stepsize", "--config", cfg])
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["settings"]["alpha"] == 0.04 and obj["settings"]["N"] == 3 and obj["family_config"]["d"] == 4
    rc, out, _ = call(["check-stepsize", "--config", cfg, "--alpha", "0.02"])
    assert rc == 0 and json.loads(out)["settings"]["alpha"] == 0.02
    js = tmp_path / "maml.json"
    js.write_text(json.dumps({"method": "maml", "family": "quadratic", "theory_only": True, "json": True,
                              "alpha": 0.04, "N": 3}))
    rc, out, _ = call(["check-stepsize", f"--config={js}"])
    assert rc == 0 and json.loads(out)["settings"]["N"] == 3


@FUZZ
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda k: k not in {"alpha", "beta", "method", "family", "param", "set", "mu", "rho", "tau", "tol", "seed", "json",
                        "lam", "resample", "iterations", "theory_only", "theory_opt", "rate_tol", "eval_tasks",
                        "num_tasks", "b", "n", "q", "l", "m", "l_meta"}))
def test_config_file_unknown_key(key, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("c") / "bad.toml"
    cfg.write_text(f'method = "maml"\n{key} = 1\n')
    assert_refused(["check-stepsize", "--config", cfg], named=repr(key))


def test_config_file_malformed_missing_or_not_a_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("alpha = [\n")
    assert_refused(["check-stepsize", "--config", bad], named="not valid TOML")
    assert_refused(["check-stepsize", "--config", tmp_path / "none.toml"], named="does not exist")
    arr = tmp_path / "list.json"
    arr.write_text("[1, 2]")
    assert_refused(["check-stepsize", "--config", arr], named="table")
    assert_refused(["check-stepsize", "--config"], named="--config")
    cfg = tmp_path / "bad_value.toml"
    cfg.write_text('method = "maml"\nfamily = "quadratic"\nalpha = -0.5\ntheory-only = true\n')
    assert_refused(["check-stepsize", "--config", cfg], named="-0.5")
