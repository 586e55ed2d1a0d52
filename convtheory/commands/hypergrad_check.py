"""``convtheory hypergrad-check``: every hypergradient method against the exact answer, next to its theorem.

    convtheory hypergrad-check [--problem NAME | --problem FILE.py] [--methods M1,M2] [--N K1,K2] [--Q K1,K2]
                               [--alpha A] [--seed S] [--param KEY=VALUE ...] [--constant KEY=VALUE ...] [--json]

For a bilevel problem min_x f(x, y*(x)), y*(x) = argmin_y g(x, y), at its starting point x0, computes the
hypergradient with each method of :func:`convtheory.hypergrad.hypergradient` (ITD at each N, AID and ESJ at each
(N, Q), Q = ES directions for ESJ), measures the error against the exact hypergradient and puts it next to what
theory says (:mod:`convtheory.theory.bilevel`, :mod:`convtheory.theory.esj`):

- quadratic_bilevel (THEORY.md §1.3): ITD's error is predicted exactly (``itd_error_quadratic``); AID's is bounded
  with exact constants by ``aid_error_bound_quadratic`` with the CG / fixed-point (Neumann: Q + 1 steps) bound on
  the linear-system error; ESJ's root-mean-square error over directions is exact (``esj_total_mse``; one draw is
  not bounded by it, so it is reported, not checked).
- other families and problem files: the general ITD bound (``itd_error_bound``, Ji et al. 2021 via Huang et al.)
  and the AID bound L_y ||y_N - y*|| + Lxy ||v_Q - v*|| (Ghadimi & Wang 2018 Lemma 1 via Huang et al.; CG /
  fixed-point bounds with ||v*|| <= ||grad_y f(x, y_N)|| / mu); their constants come from a secondary source, so
  they are labelled "constants uncertain". A bound whose constants the problem does not give (rho, tau, M) is
  reported as None with the missing names; ``--constant rho=...`` supplies them.

``bound_kind``: "exact" (a closed-form prediction, checked to round-off), "upper bound (exact constants)",
"upper bound (constants uncertain)" (a violation still fails the check, and the output says so), "rms".
Exit status: 0 when every checked bound holds, 1 when one fails, 2 for unusable input (one line naming it).
``--bound-scale s`` multiplies every bound by s: a diagnostic, to see how tight the bounds are.

A problem file defines ``f(x, y)``, ``g(x, y)`` (scalars), ``x0``, ``y0`` (tensors or dicts of tensors) and
optionally ``constants`` (a dict with keys among L, mu, rho, tau, M, Lxy), ``exact_hypergradient(x)`` and
``y_star(x)``; without them the engine's "exact" method (dense Newton, then a dense solve) is the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.func import grad
from tqdm import tqdm

from ..hypergrad import hypergradient
from ..hypergrad.bilevel import METHODS, _inner_gd
from ..problems import BILEVEL_FAMILIES
from ..problems.bilevel_quadratic import esj_moments
from ..theory import bilevel as tb
from ..theory import esj as te
from ..tree import flatten
from ..types import ConvTheoryError, InvalidArgumentError, check_int, check_positive

COMMAND = "hypergrad-check"
DEFAULT_N = (5, 10, 20, 40)
DEFAULT_Q = (2, 5, 10, 20)
#: Constants a bound may use (THEORY.md §10 notation; Lxy bounds ||nabla_x nabla_y g||).
CONSTANT_KEYS = ("L", "mu", "rho", "tau", "M", "Lxy")
#: Above this dim x, ``itd-forward`` (one JVP per coordinate of x) is left out of the default methods.
FORWARD_MAX_DIM = 50

EXACT = "exact"
UPPER_EXACT = "upper bound (exact constants)"
UPPER_UNCERTAIN = "upper bound (constants uncertain)"
RMS = "rms"

_RTOL = 1e-9  # closed-form predictions and bounds are compared to this relative tolerance,
_ATOL = 1e-10  # plus this fraction of |exact hypergradient| for round-off in both computations.
_ATOL_EXACT_METHOD = 1e-8  # two exact solvers (Newton to 1e-12/1e-13) agree to about this fraction of |exact|.

_SRC_QUAD_ITD = "THEORY.md §1.3, §14 item 17 [derived]: exact ITD error (theory.bilevel.itd_error_quadratic)"
_SRC_QUAD_AID = ("THEORY.md §1.3 [derived]: AID error <= |B| |v_Q - v*| + |B|/mu |y_N - y*| "
                 "(theory.bilevel.aid_error_bound_quadratic); {solver}")
_SRC_GEN_AID = ("Ghadimi & Wang (2018) Lemma 1 via Huang et al.; THEORY.md §10 [secondary]: AID error <= "
                "L_y |y_N - y*| + Lxy |v_Q - v*| (theory.bilevel.lower_level_lipschitz); {solver}; "
                "|v*| <= |grad_y f(x, y_N)|/mu")
_SRC_SOLVER = {
    "aid-cg": "CG: |v_Q - v*| <= 2 sqrt(kappa) r^Q |v*| (theory.bilevel.cg_error_bound; THEORY.md §14 item 20)",
    "aid-fp": ("fixed point: |v_Q - v*| <= q^Q |v*|, q = max|1 - alpha spec(H)| "
               "(theory.bilevel.fixed_point_error_bound; THEORY.md §14 item 20)"),
    "aid-neumann": ("Neumann: fixed point with Q + 1 steps (theory.bilevel.fixed_point_error_bound; "
                    "THEORY.md §14 items 19-20)"),
}
_SRC_ESJ = ("THEORY.md §1.3, §14 item 25 [derived]: ESJ RMS error sqrt(|e_ITD|^2 + (p+1)|a|^2/Q) "
            "(theory.esj.esj_total_mse)")
_SRC_EXACT = ("implicit-function theorem (Ghadimi & Wang 2018; THEORY.md §10): dense Newton + solve vs the exact "
              "oracle")


# --------------------------------------------------------------------------------------------- the problem
@dataclass(frozen=True)
class CheckProblem:
    """A bilevel problem as the check sees it.

    ``name``: family name or file path; ``f``, ``g``, ``x0``, ``y0``: as in
    :class:`~convtheory.problems.base.BilevelProblem`; ``constants``: the values bounds may use (keys among
    :data:`CONSTANT_KEYS`); ``shown``: every constant to print (the family's extras too); ``hypergradient`` and
    ``y_star``: exact oracles or None; ``reference``: what the error is measured against, in words;
    ``quadratic``: the :class:`~convtheory.problems.QuadraticBilevel` problem whose exact answers apply, or None;
    ``config``: the family configuration (or the file's path).
    """

    name: str
    f: Callable
    g: Callable
    x0: Any
    y0: Any
    constants: dict
    shown: dict
    hypergradient: Callable | None = None
    y_star: Callable | None = None
    reference: str = "engine exact (dense Newton + solve)"
    quadratic: Any = None
    config: Any = None
    from_file: bool = False


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _family_fields(cls) -> dict[str, str]:
    """Configurable fields of a family dataclass and their annotation strings (dtype stays float64)."""
    return {f.name: str(f.type) for f in dataclasses.fields(cls) if f.name != "dtype"}


def _coerce(key: str, text: str, annotation: str):
    """A ``--param`` value as the field's type: int, float, str, or None where the field is optional."""
    if "None" in annotation and text.strip().lower() == "none":
        return None
    base = annotation.replace("| None", "").strip()
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
    except ValueError:
        kind = "an integer" if base == "int" else "a real number"
        raise InvalidArgumentError(f"--param {key}={text!r} is invalid; {key} must be {kind}") from None
    return text


def family_config(name: str, params: dict[str, str] | None = None):
    """The family ``name`` of ``BILEVEL_FAMILIES`` with ``params`` (field name -> text) overriding its defaults."""
    if name not in BILEVEL_FAMILIES:
        raise InvalidArgumentError(
            f"problem = {name!r} is unknown; valid: {', '.join(sorted(BILEVEL_FAMILIES))}, or a path to a .py file"
        )
    cls = BILEVEL_FAMILIES[name]
    fields = _family_fields(cls)
    kwargs = {}
    for key, text in (params or {}).items():
        if key not in fields:
            raise InvalidArgumentError(f"--param {key} is unknown for {name}; valid: {', '.join(fields)}")
        kwargs[key] = _coerce(key, text, fields[key])
    return cls(**kwargs)


def _merge_constants(base: dict, overrides: dict | None, where: str) -> dict:
    out = dict(base)
    for key, value in (overrides or {}).items():
        if key not in CONSTANT_KEYS:
            raise InvalidArgumentError(f"{where} {key} is unknown; valid: {', '.join(CONSTANT_KEYS)}")
        out[key] = check_positive(f"{where} {key}", value, allow_zero=key not in ("L", "mu"))
    if "L" in out and "mu" in out and out["mu"] > out["L"]:
        raise InvalidArgumentError(f"mu = {out['mu']:g} > L = {out['L']:g}; the constants need 0 < mu <= L")
    return out


def load_family(name: str, params: dict[str, str] | None = None, seed: int = 0,
                constants: dict | None = None) -> CheckProblem:
    """Build family ``name`` (with ``params``) from ``seed``; ``constants`` override or add values bounds use."""
    config = family_config(name, params)
    prob = config.build(seed)
    c = prob.constants
    base = {k: getattr(c, k) for k in ("L", "mu", "rho", "tau", "M") if getattr(c, k) is not None}
    if "Lxy" in c.extra:
        base["Lxy"] = float(c.extra["Lxy"])
    consts = _merge_constants(base, constants, "--constant")
    shown = {**c.as_dict(), **consts}
    return CheckProblem(
        name=name, f=prob.f, g=prob.g, x0=prob.x0, y0=prob.y0, constants=consts, shown=shown,
        hypergradient=prob.hypergradient, y_star=prob.y_star,
        reference=f"exact oracle of {type(config).__name__}",
        quadratic=prob if name == "quadratic_bilevel" else None, config=config,
    )


def _is_params(value) -> bool:
    return isinstance(value, torch.Tensor) or (
        isinstance(value, dict) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())
    )


def load_file(path: str, constants: dict | None = None) -> CheckProblem:
    """Import a problem file defining f, g, x0, y0 (optional: constants, exact_hypergradient, y_star)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"problem file {path!r} does not exist")
    mod_name = "_convtheory_problem_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise InvalidArgumentError(f"problem file {path!r} cannot be imported; it must be a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any failure is unusable input
        raise InvalidArgumentError(f"problem file {path!r} failed to load: {_one_line(exc)}") from None
    need = "it must define f(x, y), g(x, y), x0 and y0"
    missing = [n for n in ("f", "g", "x0", "y0") if not hasattr(module, n)]
    if missing:
        raise InvalidArgumentError(f"problem file {path!r} does not define {', '.join(missing)}; {need}")
    for n in ("f", "g"):
        if not callable(getattr(module, n)):
            raise InvalidArgumentError(f"problem file {path!r}: {n} is not callable; {need}")
    for n in ("x0", "y0"):
        if not _is_params(getattr(module, n)):
            raise InvalidArgumentError(f"problem file {path!r}: {n} must be a tensor or a dict of tensors")
    file_consts = getattr(module, "constants", {})
    if not isinstance(file_consts, dict):
        raise InvalidArgumentError(f"problem file {path!r}: constants must be a dict with keys among "
                                   f"{', '.join(CONSTANT_KEYS)}")
    consts = _merge_constants({}, file_consts, f"{path}: constants")
    consts = _merge_constants(consts, constants, "--constant")
    exact = getattr(module, "exact_hypergradient", None)
    y_star = getattr(module, "y_star", None)
    return CheckProblem(
        name=str(path), f=module.f, g=module.g, x0=module.x0, y0=module.y0, constants=consts, shown=dict(consts),
        hypergradient=exact if callable(exact) else None, y_star=y_star if callable(y_star) else None,
        reference=("exact_hypergradient() of the problem file" if callable(exact)
                   else "engine exact (dense Newton + solve)"),
        config=str(path), from_file=True,
    )


def load_problem(problem: str, params: dict[str, str] | None = None, seed: int = 0,
                 constants: dict | None = None) -> CheckProblem:
    """A family name of ``BILEVEL_FAMILIES`` or a path to a problem file (ends in .py or names a file)."""
    if problem in BILEVEL_FAMILIES:
        return load_family(problem, params, seed, constants)
    if problem.endswith(".py") or Path(problem).is_file():
        if params:
            raise InvalidArgumentError(f"--param {next(iter(params))} applies to a named family; a problem "
                                       f"file sets its own values")
        return load_file(problem, constants)
    return load_family(problem)  # raises: unknown name, listing the valid ones


def default_methods(cp: CheckProblem) -> tuple[str, ...]:
    """Every method, less ``itd-forward`` when dim x > :data:`FORWARD_MAX_DIM`."""
    p = int(flatten(cp.x0).numel())
    return tuple(m for m in METHODS if not (m == "itd-forward" and p > FORWARD_MAX_DIM))


def default_alpha(cp: CheckProblem) -> float:
    """alpha = 1/L; a problem without L needs ``--alpha``."""
    if "L" not in cp.constants:
        raise InvalidArgumentError("alpha is not given and the problem has no L; pass --alpha (or constants['L'])")
    return 1.0 / cp.constants["L"]


# ----------------------------------------------------------------------------------------------- the check
@dataclass(frozen=True)
class _Reference:
    """The exact hypergradient and inner solution at x0, flattened, and what the bounds need of them."""

    hg: torch.Tensor
    y_star: Any
    dist0: float  # ||y0 - y*(x0)||

    @property
    def scale(self) -> float:
        return float(torch.linalg.vector_norm(self.hg))


def _norm(tree) -> float:
    return float(torch.linalg.vector_norm(flatten(tree).detach().double()))


def _reference(cp: CheckProblem, alpha: float) -> _Reference:
    x = cp.x0
    hg = cp.hypergradient(x) if cp.hypergradient is not None else None
    ys = cp.y_star(x) if cp.y_star is not None else None
    if hg is None or ys is None:
        hg_e, info = hypergradient(cp.f, cp.g, x, cp.y0, method="exact", inner_steps=0, inner_lr=alpha)
        hg = hg_e if hg is None else hg
        ys = info.inner if ys is None else ys
    hg = flatten(hg).detach().double()
    return _Reference(hg=hg, y_star=ys, dist0=_norm(flatten(cp.y0) - flatten(ys)))


@dataclass(frozen=True)
class _Prediction:
    value: float | None
    kind: str | None
    source: str
    note: str = ""


def _missing(cp: CheckProblem, keys) -> list[str]:
    return [k for k in keys if k not in cp.constants]


def _no_bound(cp: CheckProblem, keys, what: str) -> _Prediction | None:
    miss = _missing(cp, keys)
    if not miss:
        return None
    pairs = ", ".join(f"{k}=..." for k in miss)
    return _Prediction(None, None, "", f"no {what} bound: the problem does not give {', '.join(miss)} "
                                       f"(pass --constant {pairs})")


def _itd_prediction(cp: CheckProblem, ref: _Reference, alpha: float, N: int) -> _Prediction:
    if cp.quadratic is not None:
        e = cp.quadratic.extra
        vec = tb.itd_error_quadratic(alpha, N, e["H"].numpy(), e["B"].numpy(), cp.y0.numpy(), cp.x0.numpy(),
                                     e["b"].numpy(), e["ybar"].numpy())
        return _Prediction(float(np.linalg.norm(vec)), EXACT, _SRC_QUAD_ITD)
    missing = _no_bound(cp, ("L", "mu", "M", "tau", "rho"), "ITD")
    if missing:
        return missing
    c = cp.constants
    try:
        b = tb.itd_error_bound(alpha, N, c["L"], c["mu"], c["M"], c["tau"], c["rho"], ref.dist0)
    except InvalidArgumentError as exc:  # e.g. alpha > 1/L: the theorem does not apply
        return _Prediction(None, None, "", f"no ITD bound: {exc}")
    return _Prediction(b.value, UPPER_EXACT if b.exact else UPPER_UNCERTAIN, b.source)


def _solver_bound(method: str, alpha: float, mu: float, L: float, Q: int, v_star: float) -> float:
    """Bound on ||v_Q - v*|| of the linear solver of ``method``."""
    if method == "aid-cg":
        return tb.cg_error_bound(L / mu, Q, v_star).value
    steps = Q + 1 if method == "aid-neumann" else Q
    return tb.fixed_point_error_bound(alpha, mu, L, steps, v_star).value


def _aid_prediction(cp: CheckProblem, ref: _Reference, alpha: float, method: str, Q: int, y_N) -> _Prediction:
    inner_err = _norm(flatten(y_N) - flatten(ref.y_star))
    if cp.quadratic is not None:
        e, c = cp.quadratic.extra, cp.constants
        U, lam = e["eigenvectors"], e["eigenvalues"]
        v_star = _norm(U @ ((U.T @ (y_N - e["ybar"])) / lam))  # H^{-1}(y_N - ybar), exact
        solver = _solver_bound(method, alpha, c["mu"], c["L"], Q, v_star)
        value = tb.aid_error_bound_quadratic(c["mu"], c["Lxy"], solver, inner_err)
        return _Prediction(value, UPPER_EXACT, _SRC_QUAD_AID.format(solver=_SRC_SOLVER[method]))
    missing = _no_bound(cp, ("L", "mu", "M", "tau", "rho"), "AID")
    if missing:
        return missing
    c = cp.constants
    gyf = grad(cp.f, argnums=1)(cp.x0, y_N)
    v_star = _norm(gyf) / c["mu"]
    solver = _solver_bound(method, alpha, c["mu"], c["L"], Q, v_star)
    L_y = tb.lower_level_lipschitz(c["L"], c["mu"], c["M"], c["tau"], c["rho"])
    Lxy = c.get("Lxy", c["L"])
    src = _SRC_GEN_AID.format(solver=_SRC_SOLVER[method])
    if "Lxy" not in c:
        src += "; Lxy = L (Ghadimi & Wang's assumption)"
    return _Prediction(L_y * inner_err + Lxy * solver, UPPER_UNCERTAIN, src)


def _esj_prediction(cp: CheckProblem, ref: _Reference, alpha: float, N: int, Q: int) -> _Prediction:
    if cp.quadratic is None:
        return _Prediction(None, None, "", "no ESJ prediction: the closed form needs quadratic g (THEORY.md §1.3)")
    itd = _itd_prediction(cp, ref, alpha, N).value
    a = esj_moments(cp.quadratic, cp.x0, cp.y0, alpha, N).a
    p = int(cp.x0.numel())
    rms = math.sqrt(te.esj_total_mse(itd, _norm(a), p, Q))
    return _Prediction(rms, RMS, _SRC_ESJ, "RMS over random directions: one draw, reported, not checked")


def _holds(error: float, bound: float | None, kind: str | None, atol: float) -> bool | None:
    if bound is None or kind == RMS:
        return None
    if kind == EXACT:
        return bool(abs(error - bound) <= _RTOL * bound + atol)
    return bool(error <= bound * (1 + _RTOL) + atol)


def _jobs(methods, Ns, Qs):
    for m in methods:
        if m in ("itd", "itd-forward"):
            yield from ((m, N, None) for N in Ns)
        elif m == "exact":
            yield (m, None, None)
        else:
            yield from ((m, N, Q) for N in Ns for Q in Qs)


def hypergrad_check(cp: CheckProblem, methods=None, Ns=DEFAULT_N, Qs=DEFAULT_Q, *, alpha: float | None = None,
                    seed: int = 0, bound_scale: float = 1.0, progress: bool = False) -> pd.DataFrame:
    """One row per (method, N, Q): the error against the exact hypergradient at x0 next to theory's bound.

    Columns: problem, method, N, Q (ESJ: directions), error = ||g_hat - grad Phi(x0)||, rel_error = error /
    ||grad Phi(x0)||, bound (times ``bound_scale``), rel_bound, ratio = error / bound (tightness), bound_kind,
    holds (None where no bound applies or the prediction is an RMS), note, source. ``alpha`` defaults to 1/L;
    AID's linear-solver step is alpha too; ESJ draws its directions from ``seed``. ``df.attrs["reference_norm"]``
    is ||grad Phi(x0)||. A bound holds when error <= bound (1 + 1e-9) + 1e-10 ||grad Phi(x0)||; an exact
    prediction when |error - prediction| <= 1e-9 prediction + 1e-10 ||grad Phi(x0)|| (the exact method against
    an exact oracle: error <= 1e-8 ||grad Phi(x0)||).
    """
    methods = tuple(default_methods(cp) if methods is None else methods)
    for m in methods:
        if m not in METHODS:
            raise InvalidArgumentError(f"method = {m!r} is unknown; valid: {', '.join(METHODS)}")
    Ns = tuple(check_int("N", N, minimum=0) for N in Ns)
    Qs = tuple(check_int("Q", Q, minimum=1) for Q in Qs)
    if not Ns or not Qs:
        raise InvalidArgumentError("N and Q must each hold at least one value")
    alpha = default_alpha(cp) if alpha is None else check_positive("alpha", alpha)
    bound_scale = check_positive("bound_scale", bound_scale)
    ref = _reference(cp, alpha)
    scale = ref.scale
    jobs = list(_jobs(methods, Ns, Qs))
    rows = []
    inner: dict[int, Any] = {}  # y_N by N, shared by the AID runs (AID from y_N with 0 steps = AID with N steps)
    for method, N, Q in tqdm(jobs, desc=COMMAND, file=sys.stderr, disable=not progress, leave=False):
        start, kw = cp.y0, {"inner_steps": 0 if N is None else N, "inner_lr": alpha}
        if method == "esj":
            kw.update(directions=Q, seed=seed)
        elif Q is not None:
            if N not in inner:
                inner[N] = _inner_gd(cp.g, cp.x0, cp.y0, N, alpha)
            start, kw = inner[N], {"inner_steps": 0, "inner_lr": alpha, "solver_steps": Q}
        hg, info = hypergradient(cp.f, cp.g, cp.x0, start, method=method, **kw)
        error = _norm(flatten(hg).detach().double() - ref.hg)
        atol = _ATOL * scale
        if method in ("itd", "itd-forward"):
            pred = _itd_prediction(cp, ref, alpha, N)
        elif method.startswith("aid-"):
            pred = _aid_prediction(cp, ref, alpha, method, Q, info.inner)
        elif method == "esj":
            pred = _esj_prediction(cp, ref, alpha, N, Q)
        elif cp.hypergradient is None:
            pred = _Prediction(None, None, "", "the reference itself")
        else:
            pred, atol = _Prediction(0.0, EXACT, _SRC_EXACT), _ATOL_EXACT_METHOD * scale
        bound = None if pred.value is None else pred.value * bound_scale
        rows.append({
            "problem": cp.name, "method": method, "N": N, "Q": Q, "error": error,
            "rel_error": error / scale if scale > 0 else math.nan,
            "bound": bound, "rel_bound": None if bound is None or scale == 0 else bound / scale,
            "ratio": None if not bound else error / bound,
            "bound_kind": pred.kind, "holds": _holds(error, bound, pred.kind, atol),
            "note": pred.note, "source": pred.source,
        })
    df = pd.DataFrame(rows)
    df = df.astype({"N": "Int64", "Q": "Int64", "bound": "float64", "rel_bound": "float64", "ratio": "float64"})
    df["holds"] = df["holds"].astype(object).where(df["holds"].notna(), None)
    df.attrs["reference_norm"] = scale
    return df


def summarize(df: pd.DataFrame) -> tuple[bool, str]:
    """(all checked bounds hold, the final line): "all K bounds held" or "J of K bounds violated: ..."."""
    checked = df[df["holds"].notna()]
    bad = checked[checked["holds"] == False]  # noqa: E712
    if checked.empty:
        return True, "no bound applied: nothing was checked"
    if bad.empty:
        return True, f"all {len(checked)} bounds held" if len(checked) > 1 else "the 1 bound held"
    parts = []
    for r in bad.itertuples():
        label = r.method + (f" N={r.N}" if not pd.isna(r.N) else "") + (f" Q={r.Q}" if not pd.isna(r.Q) else "")
        if r.bound_kind == UPPER_UNCERTAIN:
            label += " (constants uncertain)"
        parts.append(label)
    return False, f"{len(bad)} of {len(checked)} bounds violated: {', '.join(parts)}"


# ------------------------------------------------------------------------------------------ command line
def _int_list(name: str, minimum: int):
    def parse(text: str) -> tuple[int, ...]:
        out = []
        for item in text.split(","):
            try:
                k = int(item.strip())
            except ValueError:
                k = None
            if k is None or k < minimum:
                raise argparse.ArgumentTypeError(
                    f"{name} = {item.strip()!r} is invalid; give a comma-separated list of integers >= {minimum}")
            out.append(k)
        return tuple(dict.fromkeys(out))

    return parse


def _methods(text: str) -> tuple[str, ...]:
    out = []
    for item in text.split(","):
        m = item.strip()
        if m not in METHODS:
            raise argparse.ArgumentTypeError(f"method = {m!r} is unknown; valid: {', '.join(METHODS)}")
        out.append(m)
    return tuple(dict.fromkeys(out))


def _assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; give KEY=VALUE")
    return key.strip(), value.strip()


def _positive_float(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{name} = {text!r} is invalid; it must be a finite number > 0")
        return v

    return parse


def _constant_values(pairs) -> dict:
    out = {}
    for key, text in pairs or []:
        try:
            out[key] = float(text)
        except ValueError:
            raise InvalidArgumentError(f"--constant {key}={text!r} is invalid; it must be a real number") from None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    families = ", ".join(sorted(BILEVEL_FAMILIES))
    parser.add_argument("--problem", default="quadratic_bilevel",
                        help=f"a family ({families}; default quadratic_bilevel) or a .py file defining f, g, x0, y0")
    parser.add_argument("--methods", type=_methods, default=None,
                        help=f"comma-separated, among {', '.join(METHODS)} (default: all; itd-forward only when "
                             f"dim x <= {FORWARD_MAX_DIM})")
    parser.add_argument("--N", type=_int_list("N", 0), default=DEFAULT_N,
                        help=f"inner GD steps (default {','.join(map(str, DEFAULT_N))})")
    parser.add_argument("--Q", type=_int_list("Q", 1), default=DEFAULT_Q,
                        help=f"solver steps for AID, directions for ESJ (default {','.join(map(str, DEFAULT_Q))})")
    parser.add_argument("--alpha", type=_positive_float("alpha"), default=None,
                        help="inner step size, also the Neumann / fixed-point step (default 1/L)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the family and of ESJ's directions")
    parser.add_argument("--param", type=_assignment, action="append", metavar="KEY=VALUE",
                        help="override a field of the family's configuration (repeatable), e.g. --param mu=0.01")
    parser.add_argument("--constant", type=_assignment, action="append", metavar="KEY=VALUE",
                        help=f"give or override a constant the bounds use ({', '.join(CONSTANT_KEYS)}; repeatable)")
    parser.add_argument("--bound-scale", type=_positive_float("bound-scale"), default=1.0,
                        help="diagnostic: scale every bound by this factor, to see how tight they are")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``hypergrad-check`` subcommand to an argparse subparsers object; its handler is ``args.func``."""
    parser = subparsers.add_parser(COMMAND, help="every hypergradient method against the exact one and its bound",
                                   description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _json_value(v):
    if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _run_check(cp: CheckProblem, args) -> pd.DataFrame:
    methods = args.methods
    kwargs = dict(alpha=args.alpha, seed=args.seed, bound_scale=args.bound_scale, progress=not args.json)
    if not cp.from_file:
        return hypergrad_check(cp, methods, args.N, args.Q, **kwargs)
    try:
        return hypergrad_check(cp, methods, args.N, args.Q, **kwargs)
    except ConvTheoryError:
        raise
    except Exception as exc:  # the user's f or g failed: unusable input, in one line
        raise InvalidArgumentError(f"problem file {cp.name!r}: evaluating f or g failed: {_one_line(exc)}") from None


def handler(args: argparse.Namespace) -> int:
    """Run the check for parsed ``args``; print the table (or one JSON object); return 0, 1 or 2."""
    warnings.filterwarnings("ignore", module=r"torch(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning)
    params = dict(args.param or [])
    cp = load_problem(args.problem, params, args.seed, _constant_values(args.constant))
    alpha = default_alpha(cp) if args.alpha is None else args.alpha
    args.alpha = alpha
    df = _run_check(cp, args)
    ok, line = summarize(df)
    if args.json:
        rows = [{k: _json_value(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
        print(json.dumps({
            "problem": cp.name, "seed": args.seed, "config": str(cp.config), "reference": cp.reference,
            "reference_norm": df.attrs["reference_norm"],
            "constants": {k: _json_value(v) for k, v in cp.shown.items()}, "alpha": alpha,
            "bound_scale": args.bound_scale, "rows": rows, "checked": int(df["holds"].notna().sum()),
            "violated": int((df["holds"] == False).sum()), "all_hold": ok, "summary": line,  # noqa: E712
        }))
        return 0 if ok else 1
    alpha_note = " (1/L)" if "L" in cp.constants and math.isclose(alpha, 1 / cp.constants["L"]) else ""
    print(f"hypergrad-check: {cp.name} (seed {args.seed}): {cp.config}")
    print("constants: " + (", ".join(f"{k}={_fmt(v)}" for k, v in cp.shown.items()) or "none given"))
    print(f"alpha = {alpha:.4g}{alpha_note}; reference: {cp.reference}, |grad Phi(x0)| = "
          f"{df.attrs['reference_norm']:.4g}; error = |g_hat - grad Phi(x0)|"
          + (f"; bounds scaled by {args.bound_scale:g}" if args.bound_scale != 1.0 else ""))
    print()
    refs: dict[str, int] = {}
    labels = []
    for r in df.itertuples():
        text = r.source or r.note
        if r.source and r.note:
            text = f"{r.source}; {r.note}"
        labels.append(f"[{refs.setdefault(text, len(refs) + 1)}]" if text else "")
    show = df[["method", "N", "Q", "error", "rel_error", "bound", "ratio", "bound_kind", "holds"]].copy()
    show["ref"] = labels
    show["bound_kind"] = show["bound_kind"].fillna("-")
    show["holds"] = show["holds"].map(lambda h: "-" if h is None else str(h))
    with pd.option_context("display.width", 250, "display.max_rows", 1000, "display.max_colwidth", 40,
                           "display.float_format", "{:.3e}".format):
        print(show.to_string(index=False))
    print()
    for text, k in refs.items():
        print(f"[{k}] {text}")
    print(line)
    return 0 if ok else 1


def _standalone(argv: list[str] | None = None) -> int:
    from ..cli import run_alone

    return run_alone(register, [COMMAND, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(_standalone())
