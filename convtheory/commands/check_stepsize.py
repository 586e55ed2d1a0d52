"""``convtheory check-stepsize``: the step sizes theory allows for a method, and whether they hold on a problem.

    convtheory check-stepsize --method maml --family quadratic --alpha 0.04 --beta 1 --N 3 --B 8 [--json]
    convtheory check-stepsize --method maml --L 2 --mu 0.1 --N 4 --alpha 0.05          (constants only)

Theory side (:mod:`convtheory.theory`): the constants used (exact or certified bounds), the guideline of the
method (:func:`convtheory.theory.recommend`) with its admissible ``alpha_max`` / ``beta_max``, conditions and
source, the exact stability thresholds where the problem gives them (deterministic meta-GD on a quadratic-form
family: :math:`\\beta<2/L_{\\rm meta}`, the meta-Hessian of THEORY.md §1.2; GD on the hyper-objective of the
quadratic bilevel family: :math:`\\beta<2/L_\\Phi`, §1.3), a verdict on each step size (admitted, or outside with
the threshold it crossed), and the predicted linear rate :math:`\\max_j|1-\\beta h_j|` over the eigenvalues of the
iteration's Jacobian where theory gives one.

Run side (unless ``--theory-only``; implied without ``--family``): the solver of
:data:`convtheory.solvers.SOLVERS` on the family for ``--iterations`` steps; whether it converged (the measured
norm fell below ``--tol`` times its initial value), diverged (with the iteration), and its fitted rate
(:func:`convtheory.analysis.fit_geometric` on the asymptotic half of the points above the round-off floor)
against the predicted one (:func:`convtheory.analysis.check_rate`, ``side="upper"``: slower than predicted fails).

Exit status: 0 when every step size is admitted and (when run) the run converged and the rate check holds; 1 when
a step size is outside what theory admits, the run diverged or did not converge, or the rate check fails; 2 for
unusable input (one line on stderr naming the value). With ``--json`` stdout holds exactly one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..types import Constants, InvalidArgumentError, check_int, check_positive

COMMAND = "check-stepsize"
DESCRIPTION = "The step sizes theory allows for a method, and whether they hold on a problem."

#: Bilevel methods (the others are meta-learning methods).
BILEVEL_METHODS = ("aid-bio", "aid-bio-neumann", "itd-bio", "stocbio", "esj")
#: Method -> the convtheory.theory guideline that covers it (None: theory gives no step-size condition).
GUIDELINE_OF = {
    "maml": "maml", "fomaml": "fomaml", "hfmaml": "fomaml", "reptile": None, "anil": "anil",
    "imaml": "imaml", "metasgd": None, "alpha-maml": None, "aid-bio": "aid-bio", "aid-bio-neumann": "aid-bio",
    "itd-bio": "itd-bio", "stocbio": "stocbio", "esj": "esj",
}
#: Guideline -> (short source, alpha_max formula, beta_max formula) for the one-line verdicts.
_FORMULAS = {
    "maml": ("Ji, Yang, Liang", "alpha <= 1/(c N L)", "beta <= 1/L_meta <= 1/((1 + alpha L)^(2N) L)"),
    "fomaml": ("Fallah, Mokhtari, Ozdaglar", "alpha <= 1/(c_alpha L)",
               "beta <= 1/(c_beta (4 L + 2 rho alpha E||grad f_i||))"),
    "anil-strongly-convex": ("Ji, Lee, Liang, Poor", "alpha <= 1/L", "beta <= 2/L_meta"),
    "anil-nonconvex": ("Ji, Lee, Liang, Poor", "alpha <= 1/(c N L)", "beta <= 1/((1 + alpha L)^(2N) L)"),
    "imaml": ("Rajeswaran et al.; THEORY.md §8", "alpha <= 2/(lambda + h_max)", None),
    "aid-bio": ("Ji, Yang, Liang (ICML 2021)", "alpha <= 2/L", "beta <= 1/L_Phi (Ghadimi-Wang form)"),
    "itd-bio": ("Ji, Yang, Liang (ICML 2021)", "alpha <= 1/L", "beta <= 1/L_Phi (Ghadimi-Wang form)"),
    "stocbio": ("Ji, Yang, Liang (ICML 2021)", "alpha <= 2/L", "beta <= 1/L_Phi (Ghadimi-Wang form)"),
    "esj": ("Sow, Ji, Liang", "alpha <= 1/L", None),
}
#: Measured norm per method: the exact objective gradient, or the method's own direction where the method does
#: not descend the MAML objective (FO-MAML and Reptile converge to their own fixed points, THEORY.md §14 9-10).
_DIRECTION_MEASURED = ("fomaml", "reptile")
#: Flags that also name family fields (``--L 2`` sets the family's L when it has one).
_CONSTANT_FLAGS = ("L", "mu", "rho", "M", "tau")
#: A guideline Q above this is not used as the default (ESJ's direction count can reach 1e12).
MAX_DEFAULT_Q = 10_000
_RESERVED_SETTINGS = ("alpha", "beta", "N", "Q", "lam", "sampling")
_RESERVED_OPTIONS = ("N", "L_meta", "lam")


# ================================================================================================ data types
@dataclass(frozen=True)
class Threshold:
    """An upper bound on a step size. ``kind``: ``"guideline"`` (the theory's admissible bound), ``"exact"`` (an
    exact stability threshold of this problem) or ``"info"`` (shown for comparison, does not decide);
    ``constants``: "exact", "shape only" or "estimate"; ``governs``: whether a step above it is outside."""

    name: str
    value: float
    formula: str
    source: str
    kind: str
    constants: str
    governs: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StepCheck:
    """A step size against the thresholds that govern it: ``admitted``, the ``crossed`` one (if any), a sentence."""

    name: str
    value: float
    admitted: bool
    text: str
    crossed: Threshold | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "admitted": self.admitted, "text": self.text,
                "crossed": None if self.crossed is None else self.crossed.as_dict()}


@dataclass(frozen=True)
class Prediction:
    """A predicted linear rate per iteration (``value`` >= 1 predicts divergence), what it is for, the eigenvalues
    it is read from (``h_min``, ``h_max``), and the norm it applies to (``measure``)."""

    value: float
    formula: str
    kind: str
    h_min: float
    h_max: float
    measure: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExactQuantities:
    """What a family gives exactly: eigenvalues of the iteration's Jacobian (``eigs``, complex for a non-symmetric
    Jacobian), their name, the largest stable step and its formula, whether the run is deterministic."""

    eigs: np.ndarray
    symbol: str
    beta_max: float | None
    formula: str
    description: str
    deterministic: bool
    estimate: bool = False


@dataclass(frozen=True)
class TheoryReport:
    """Everything the theory side says: guideline, recommended values, thresholds, verdicts, prediction, notes."""

    guideline: str | None
    source: str
    guideline_exact: bool | None
    conditions: tuple[str, ...]
    recommended: Mapping[str, Any]
    thresholds: tuple[Threshold, ...]
    steps: tuple[StepCheck, ...]
    prediction: Prediction | None
    notes: tuple[str, ...]

    @property
    def admitted(self) -> bool:
        return all(s.admitted for s in self.steps)

    def as_dict(self) -> dict:
        return {"guideline": self.guideline, "source": self.source, "guideline_constants_exact": self.guideline_exact,
                "conditions": list(self.conditions), "recommended": dict(self.recommended),
                "thresholds": [t.as_dict() for t in self.thresholds], "steps": [s.as_dict() for s in self.steps],
                "admitted": self.admitted,
                "predicted_rate": None if self.prediction is None else self.prediction.as_dict(),
                "notes": list(self.notes)}


@dataclass(frozen=True)
class RunReport:
    """What the run showed: divergence, convergence of ``measure`` to ``tol``, the fitted rate and its check."""

    iterations: int
    measure: str
    diverged: bool
    diverged_at: int | None
    initial: float
    final: float
    tol: float
    converged: bool
    fit: Mapping[str, Any] | None
    rate_check: Mapping[str, Any] | None
    wall_time: float
    text: str

    @property
    def ok(self) -> bool:
        return self.converged and not self.diverged and (self.rate_check is None or bool(self.rate_check["holds"]))

    def as_dict(self) -> dict:
        return {"iterations": self.iterations, "measure": self.measure, "diverged": self.diverged,
                "diverged_at": self.diverged_at, "initial": self.initial, "final": self.final,
                "ratio": _ratio(self.final, self.initial), "tol": self.tol, "converged": self.converged,
                "fit": None if self.fit is None else dict(self.fit),
                "rate_check": None if self.rate_check is None else dict(self.rate_check),
                "wall_time": self.wall_time, "text": self.text}


# ================================================================================================ input parsing
def parse_assignments(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; a malformed or repeated item raises naming it."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgumentError(f"{flag} {item!r} is invalid; write {flag} KEY=VALUE")
        if key in out:
            raise InvalidArgumentError(f"{flag} {key} is given twice ({out[key]!r} and {value!r})")
        out[key] = value.strip()
    return out


def _finite_float(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InvalidArgumentError(f"{what} = {text!r} is invalid; it must be a finite real number") from None
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{what} = {text!r} is invalid; it must be a finite real number")
    return v


def coerce_value(text: str, annotation: str, what: str) -> Any:
    """A command-line string as the type a config field is annotated with (bool, int, float, dtype, str, None)."""
    import torch

    low = text.strip().lower()
    if low == "none" and "None" in annotation:
        return None
    if "bool" in annotation:
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise InvalidArgumentError(f"{what} = {text!r} is invalid; it must be true or false")
    if "dtype" in annotation:
        names = {"float64": torch.float64, "float32": torch.float32, "double": torch.float64, "float": torch.float32}
        key = low.removeprefix("torch.")
        if key not in names:
            raise InvalidArgumentError(f"{what} = {text!r} is invalid; valid: float64, float32")
        return names[key]
    if annotation.startswith("int"):
        try:
            return int(text)
        except ValueError:
            raise InvalidArgumentError(f"{what} = {text!r} is invalid; it must be an integer") from None
    if annotation.startswith("float"):
        return _finite_float(text, what)
    if annotation.startswith("str"):
        return text
    for cast in (int, float):  # Any: a number if it reads as one
        try:
            v = cast(text)
        except ValueError:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidArgumentError(f"{what} = {text!r} is invalid; it must be a finite real number")
        return v
    return text


def config_overrides(cls: type, raw: Mapping[str, str], flag: str, reserved: Sequence[str] = ()) -> dict[str, Any]:
    """Validate ``raw`` keys against the dataclass fields of ``cls`` and coerce the values to their types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for key, text in raw.items():
        if key in reserved:
            raise InvalidArgumentError(f"{flag} {key} is not allowed here; use the --{key} flag")
        if key not in fields:
            valid = ", ".join(sorted(k for k in fields if k not in reserved))
            raise InvalidArgumentError(f"{flag} {key} is unknown for {cls.__name__}; valid: {valid}")
        out[key] = coerce_value(text, str(fields[key].type), f"{flag} {key}")
    return out


def theory_options(raw: Mapping[str, str]) -> dict[str, Any]:
    """``--theory-opt`` values (numbers where they read as numbers); N, L_meta and lam have their own flags."""
    out = {}
    for key, text in raw.items():
        if key in _RESERVED_OPTIONS:
            raise InvalidArgumentError(f"--theory-opt {key} is not allowed here; use --{key.replace('_', '-')}")
        out[key] = coerce_value(text, "Any", f"--theory-opt {key}")
    return out


def constants_from_flags(values: Mapping[str, float | None]) -> Constants:
    """Constants given on the command line: L > 0, mu <= L (negative: a curvature lower bound), rho, M, tau >= 0."""
    if values.get("L") is None:
        raise InvalidArgumentError("--L is required without --family (the smoothness constant, L > 0)")
    L = check_positive("L", values["L"])
    mu = values.get("mu")
    if mu is not None:
        mu = float(mu)
        if not math.isfinite(mu):
            raise InvalidArgumentError(f"mu = {mu!r} is invalid; it must be finite")
        if mu > L:
            raise InvalidArgumentError(f"mu = {mu:g} > L = {L:g}; need mu <= L")
    extra = {k: check_positive(k, values[k], allow_zero=True) for k in ("rho", "M", "tau") if values.get(k) is not None}
    return Constants(L=L, mu=mu, **extra)


# ================================================================================================ theory
def guideline_name(method: str, constants: Constants, head: str | None = None) -> str | None:
    """The theory guideline covering ``method``; ANIL by its head (a family's ``head``, else the sign of mu)."""
    name = GUIDELINE_OF[method]
    if name != "anil":
        return name
    if head is not None:
        return "anil-strongly-convex" if head == "ridge" else "anil-nonconvex"
    return "anil-strongly-convex" if constants.mu is not None and constants.mu > 0 else "anil-nonconvex"


def _fmt(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (0.0 if a == 0 else math.inf)


def step_check(name: str, value: float, thresholds: Sequence[Threshold]) -> StepCheck:
    """Admitted iff ``value`` is at most every governing threshold of ``name`` (relative slack 1e-12)."""
    for t in thresholds:
        if t.name == name and t.governs and value > t.value * (1 + 1e-12):
            text = (f"outside: {name} = {_fmt(value)} > {name}_max = {_fmt(t.value)} "
                    f"({t.source}: {t.formula})")
            return StepCheck(name, value, False, text, t)
    gov = [t for t in thresholds if t.name == name and t.governs]
    if not gov:
        return StepCheck(name, value, True, f"unchecked: theory gives no condition on {name} here")
    t = min(gov, key=lambda t: t.value)
    return StepCheck(name, value, True, f"admitted: {name} = {_fmt(value)} <= {name}_max = {_fmt(t.value)} "
                                        f"({t.source}: {t.formula})")


def linear_rate(beta: float, eigs: np.ndarray) -> float:
    """Spectral radius of I - beta J from the eigenvalues of J: max_j |1 - beta lambda_j| (THEORY.md §1.1)."""
    from ..theory.quadratic import spectral_contraction

    eigs = np.asarray(eigs)
    if np.iscomplexobj(eigs):
        return float(np.max(np.abs(1.0 - beta * eigs)))
    return spectral_contraction(beta, eigs)


def stable_step_max(eigs: np.ndarray) -> float | None:
    """Largest beta with |1 - beta lambda_j| < 1 for all j: min_j 2 Re(lambda_j)/|lambda_j|^2 (2/lambda_max when real).

    None when some eigenvalue has Re <= 0 (no step converges along it)."""
    from ..theory.quadratic import beta_max

    eigs = np.asarray(eigs)
    if np.iscomplexobj(eigs):
        if np.any(eigs.real <= 0):
            return None
        return float(np.min(2.0 * eigs.real / np.abs(eigs) ** 2))
    if np.any(eigs <= 0):
        return None
    return beta_max(float(eigs.max()))


def _active(eigs: np.ndarray) -> np.ndarray:
    """Eigenvalues the measured norm sees: zero ones (a null space the gradient never enters) are dropped."""
    mag = np.abs(eigs)
    return eigs[mag > 1e-12 * max(float(mag.max(initial=0.0)), 1e-300)]


def exact_meta_quantities(method: str, tasks: Any, alpha: float, N: int, lam: float, *, deterministic: bool,
                          estimate: bool) -> ExactQuantities | None:
    """Exact Jacobian of the meta-iteration on a quadratic-form task batch (``tasks.exact`` has A, c, C, e, e0).

    The iteration theta <- theta - beta G(theta) has G affine on these families, with Jacobian J:

    - MAML / HF-MAML: :math:`J=\\frac1B\\sum_iP_i^NC_iP_i^N` (the meta-Hessian, THEORY.md §1.2);
    - FO-MAML: :math:`J=\\frac1B\\sum_iC_iP_i^N` (its direction, THEORY.md §14 item 9);
    - Reptile: :math:`J=\\frac1B\\sum_i(I-P_i^N)` (the update theta - beta(theta - mean w_N), §14 item 10);
    - iMAML: :math:`J=\\frac1B\\sum_i\\lambda^2(A_i+\\lambda I)^{-1}C_i(A_i+\\lambda I)^{-1}` (the exact iMAML
      objective's Hessian, §1.4; the run approximates its gradient with N inner and Q CG steps),

    with :math:`P_i=I-\\alpha A_i`. Deterministic meta-GD then converges iff beta < min_j 2 Re(h_j)/|h_j|^2 and its
    norm decays at the rate :math:`\\max_j|1-\\beta h_j|` (exact). None for methods without a closed form.
    """
    import torch

    from ..problems.quadratic import meta_hessian

    if not all(k in getattr(tasks, "exact", {}) for k in ("A", "c", "C", "e", "e0")):
        return None
    A, C = tasks.exact["A"].double(), tasks.exact["C"].double()
    eye = torch.eye(A.shape[-1], dtype=torch.float64)
    if method in ("maml", "hfmaml"):
        J = meta_hessian(tasks, alpha, N).double()
        symbol, desc = "L_meta", "meta-Hessian E[P^N C P^N] (THEORY.md §1.2)"
    elif method in ("fomaml", "reptile"):
        PN = torch.linalg.matrix_power(eye - alpha * A, N)
        if method == "fomaml":
            J, symbol, desc = (C @ PN).mean(0), "L_FO", "FO-MAML Jacobian E[C P^N] (THEORY.md §14 item 9)"
        else:
            J, symbol, desc = (eye - PN).mean(0), "L_Rep", "Reptile Jacobian E[I - P^N] (THEORY.md §14 item 10)"
    elif method == "imaml":
        Minv = torch.linalg.inv(A + lam * eye)
        J = (lam**2 * Minv @ C @ Minv).mean(0)
        symbol, desc = "L_iMAML", "exact iMAML Hessian E[lam^2 (A+lam I)^-1 C (A+lam I)^-1] (THEORY.md §1.4)"
    else:
        return None
    J = J.numpy()
    if np.allclose(J, J.T, rtol=1e-12, atol=1e-14 * max(1.0, float(np.abs(J).max()))):
        eigs = np.linalg.eigvalsh(0.5 * (J + J.T))
        formula = f"2/{symbol}"
    else:
        eigs = np.linalg.eigvals(J)
        if np.max(np.abs(eigs.imag)) <= 1e-12 * np.abs(eigs).max():
            eigs = np.sort(eigs.real)
        formula = "min_j 2 Re(h_j)/|h_j|^2" if np.iscomplexobj(eigs) else f"2/{symbol}"
    return ExactQuantities(eigs, symbol, stable_step_max(_active(eigs)), formula, desc, deterministic, estimate)


def exact_bilevel_quantities(problem: Any) -> ExactQuantities | None:
    """Exact Hessian of Phi on the quadratic bilevel family: gamma I + B^T H^-2 B, eigenvalues in [mu_Phi, L_Phi]
    (THEORY.md §1.3); gradient descent with the exact hypergradient converges iff beta < 2/L_Phi."""
    ex = getattr(problem, "extra", {})
    if not all(k in ex for k in ("H", "B", "gamma")):
        return None
    H = ex["H"].double().numpy()
    B = ex["B"].double().numpy()
    X = np.linalg.solve(H, B)
    A = float(ex["gamma"]) * np.eye(B.shape[1]) + X.T @ X
    eigs = np.linalg.eigvalsh(0.5 * (A + A.T))
    return ExactQuantities(eigs, "L_Phi", stable_step_max(_active(eigs)), "2/L_Phi",
                           "Hessian of Phi, gamma I + B^T H^-2 B (THEORY.md §1.3)", True)


def _guideline(gname: str, constants: Constants, options: Mapping[str, Any], from_family: bool):
    """(Guideline or None, note): recommend(), with a missing constant a note for a family and an error otherwise."""
    from .. import theory

    try:
        return theory.recommend(gname, constants, **options), None
    except InvalidArgumentError as exc:
        msg = str(exc)
        names = msg.split(" needs ")[1].split(";")[0] if " needs " in msg else ""
        if names and from_family:
            return None, (f"theory gives no step-size condition here: the {gname} guideline needs {names}, which "
                          "this family does not provide")
        if names:
            flags = ", ".join(f"--{n}" if n in _CONSTANT_FLAGS else f"--theory-opt {n}=..." for n in names.split(", "))
            raise InvalidArgumentError(f"the {gname} guideline needs {names}: pass {flags}") from None
        raise


def meta_smoothness_bound(gname: str | None, L: float, alpha: float, N: int, options: Mapping[str, Any]) -> float:
    """Certified bound on L_meta at (alpha, N): (1 + alpha L)^(2N) L (+ C_L E||grad|| for MAML, Ji, Yang, Liang).

    Exact for quadratic tasks (rho = 0) and for quadratic ANIL heads (THEORY.md §5, §7, §14 items 6, 14)."""
    from ..theory.maml import inner_growth_factor, ji_smoothness_estimate

    if gname == "maml":
        return ji_smoothness_estimate(alpha, N, L, float(options.get("grad_norm", 0.0)), float(options.get("C_L", 0.0)))
    return inner_growth_factor(alpha, N, L) * float(L)


def constants_label(gname: str | None, g: Any, constants: Constants, given: bool) -> str:
    """How exact a guideline's threshold is: "shape only" (recalled or unspecified constants in the theorem),
    "exact" (exact theorem, exact or user-given problem constants) or "exact form, certified bounds"."""
    import inspect

    from ..theory import GUIDELINES

    if g is None or not g.exact:
        return "shape only"
    if given:
        return "exact"
    alias = {"h_max": "L", "h_min": "mu"}  # iMAML reads the task-Hessian range from L and mu
    names = [alias.get(n, n) for n in inspect.signature(GUIDELINES[gname]).parameters]
    used = [n for n in names if getattr(constants, n, None) is not None]
    return "exact" if all(n in constants.exact for n in used) else "exact form, certified bounds"


def uses_exact_L_meta(gname: str | None, exact: ExactQuantities | None, L_meta_given: float | None) -> bool:
    """Whether the MAML guideline is fed the exact L_meta of the pool (not an estimate, not a user's value)."""
    return gname == "maml" and exact is not None and not exact.estimate and exact.beta_max is not None \
        and L_meta_given is None


def theory_report(method: str, gname: str | None, constants: Constants, *, alpha: float, beta: float, N: int,
                  options: Mapping[str, Any], exact: ExactQuantities | None, guideline: Any,
                  L_meta_given: float | None, notes: Sequence[str] = (), constants_given: bool = False
                  ) -> TheoryReport:
    """The theory side for the chosen (alpha, beta, N): thresholds, verdicts and the predicted rate."""
    from ..theory.quadratic import inner_step_max

    notes = list(notes)
    th: list[Threshold] = []
    g = guideline
    short = _FORMULAS.get(gname, ("", None, None))[0] if gname else ""
    shape = constants_label(gname, g, constants, constants_given)
    # MAML on a quadratic-form pool: the guideline was given the exact L_meta at (alpha, N), so beta_max = 2/L_meta
    exact_L_meta = uses_exact_L_meta(gname, exact, L_meta_given)
    C_L, gnorm = float(options.get("C_L", 0.0)), float(options.get("grad_norm", 0.0))
    conservative = None
    if gname in ("maml", "anil-nonconvex"):  # L_meta <= (1 + alpha L)^(2N) L: the certified form of beta <= 1/L_meta
        tail = f" + C_L E||grad|| (C_L = {C_L:g}, E||grad|| = {gnorm:g})" if C_L * gnorm > 0 else ""
        conservative = Threshold("beta", 1.0 / meta_smoothness_bound(gname, constants.L, alpha, N, options),
                                 f"beta <= 1/((1 + alpha L)^(2N) L{tail}) at alpha = {alpha:g}", short, "guideline",
                                 shape, True)
    if gname == "maml" and not exact_L_meta and (constants.rho or 0) > 0 and C_L * gnorm == 0:
        notes.append(f"rho = {constants.rho:g} > 0: Ji et al.'s L_meta bound adds C_L E||grad f_i|| (C_L unspecified), "
                     "omitted here; pass --theory-opt C_L=... --theory-opt grad_norm=...")
    if g is not None:
        if g.alpha_max is not None:
            formula = _FORMULAS[gname][1]
            if "c N L" in formula:
                formula += f", c = {options.get('c', 8.0):g}"
            th.append(Threshold("alpha", g.alpha_max, formula, short, "guideline", shape, True))
        if conservative is not None and not exact_L_meta and L_meta_given is None:
            th.append(conservative)
        elif exact_L_meta:
            th.append(Threshold("beta", g.beta_max, f"beta <= 2/L_meta at alpha = {alpha:g}, N = {N}",
                                "exact, THEORY.md §14 item 3", "exact", "exact", True))
            th.append(dataclasses.replace(conservative, formula=conservative.formula + " (constants only)",
                                          kind="info", governs=False))
        elif g.beta_max is not None:
            formula = _FORMULAS[gname][2] or "beta <= beta_max"
            if L_meta_given is not None:
                formula = "beta <= 2/L_meta (L_meta given)"
            th.append(Threshold("beta", g.beta_max, formula, short, "guideline", shape, True))
    if exact is not None and exact.beta_max is not None and not exact_L_meta:
        what = "deterministic meta-GD" if method not in BILEVEL_METHODS else "GD with the exact hypergradient"
        th.append(Threshold("beta", exact.beta_max, f"beta < {exact.formula} ({what}; {exact.description})",
                            "exact", "info" if exact.estimate else "exact",
                            "estimate" if exact.estimate else "exact", not exact.estimate))
    if exact is not None and exact.beta_max is None:
        notes.append(f"the {exact.description} has an eigenvalue with non-positive real part: no beta converges")
    where = "inner GD on g stable" if method in BILEVEL_METHODS else "inner GD stable on every task"
    th.append(Threshold("alpha", inner_step_max(constants.L), f"alpha < 2/L ({where})", "exact", "info",
                        "exact" if "L" in constants.exact else "bound", False))

    steps = (step_check("alpha", alpha, th), step_check("beta", beta, th))
    prediction = None
    if exact is not None and exact.deterministic and not exact.estimate:
        act = _active(exact.eigs)
        if act.size:
            rate = linear_rate(beta, act)
            mag = np.abs(act) if np.iscomplexobj(act) else act
            measure = "direction_norm" if method in _DIRECTION_MEASURED else "grad_norm"
            if method in BILEVEL_METHODS:
                kind = ("exact for gradient descent with the exact hypergradient; "
                        f"{method} uses an approximate one (N inner steps"
                        + (", Q solver steps" if method in ("aid-bio", "aid-bio-neumann", "stocbio", "esj") else "")
                        + "), so its rate may differ")
            elif method == "imaml":
                kind = "exact for the exact iMAML gradient; the run approximates it with N inner and Q CG steps"
            else:
                kind = "exact (deterministic meta-GD on a quadratic-form objective)"
            prediction = Prediction(rate, f"max_j |1 - beta h_j| over the eigenvalues h of the {exact.description}",
                                    kind, float(mag.min()), float(mag.max()), measure)
    elif exact is not None and not exact.deterministic:
        notes.append("sampled task batches (B < M or --resample): the deterministic rate does not apply; SGD "
                     "settles at a noise floor (THEORY.md §1.5)")
    recommended = {} if g is None else {k: getattr(g, k) for k in ("alpha", "beta", "N", "Q", "eta")
                                        if getattr(g, k) is not None}
    if gname is None and not any(n.startswith("theory gives no step-size condition") for n in notes):
        notes.insert(0, f"theory gives no step-size condition for {method}")
    return TheoryReport(gname, "" if g is None else g.source, None if g is None else bool(g.exact),
                        tuple(() if g is None else g.conditions), recommended, tuple(th), steps, prediction,
                        tuple(notes))


# ================================================================================================ run
def _fit_tail(iters: np.ndarray, values: np.ndarray) -> Any:
    """Geometric fit on the asymptotic half of the points above the round-off floor (fit_geometric, window auto
    to find the floor, then the later half of that window so that faster modes have died out)."""
    from ..analysis import fit_geometric

    first = fit_geometric(iters, values)
    kept = iters[(iters >= first.x_first) & (iters <= first.x_last)]
    lo = kept[len(kept) // 2] if len(kept) >= 6 else kept[0]
    return fit_geometric(iters, values, window=(float(lo), first.x_last))


def run_report(trace: Any, measure: str, tol: float, prediction: Prediction | None, rate_tol: float) -> RunReport:
    """Read a Trace: divergence, convergence (final/initial < tol), the fitted rate and its check against theory."""
    from ..analysis import check_rate
    from ..solvers import diverged_at

    at = diverged_at(trace)
    iters = trace["iteration"].to_numpy(np.float64)
    vals = trace[measure].to_numpy(np.float64)
    ok = np.isfinite(vals)
    x, y = iters[ok], vals[ok]
    initial = float(y[0]) if y.size else math.nan
    final = float(y[-1]) if y.size else math.nan
    diverged = at is not None
    converged = (not diverged) and y.size > 0 and _ratio(final, initial) < tol
    wall = float(trace["wall_time"].iloc[-1])
    fit = check = None
    if not diverged and y.size >= 3 and initial > 0:
        try:
            f = _fit_tail(x, y)
            fit = {"rate": f.rate, "ci_low": f.ci_low, "ci_high": f.ci_high, "r2": f.r2, "n": f.n,
                   "window": [int(f.x_first), int(f.x_last)]}
        except InvalidArgumentError:
            fit = None
        if fit is not None and prediction is not None and prediction.measure == measure:
            v = check_rate(f, prediction.value, tol=rate_tol, side="upper")
            two = check_rate(f, prediction.value, tol=rate_tol)
            check = {"holds": v.holds, "predicted": prediction.value, "difference": f.rate - prediction.value,
                     "agrees_two_sided": two.holds, "tol": rate_tol, "detail": v.detail}
    n_it = int(iters[-1])
    if diverged:
        text = f"diverged at iteration {at} ({measure} or the parameters exceeded 1e12 x their initial size)"
    elif converged:
        text = f"converged: {measure} {initial:.3g} -> {final:.3g} (ratio {_ratio(final, initial):.3g} < tol {tol:g})"
    else:
        text = (f"did not converge: {measure} {initial:.3g} -> {final:.3g} in {n_it} iterations "
                f"(ratio {_ratio(final, initial):.3g}, tol {tol:g})")
        if prediction is not None and 0 < prediction.value < 1:
            need = math.ceil(math.log(tol) / math.log(prediction.value))
            text += f"; at the predicted rate {prediction.value:.6g} it needs about {need} iterations"
    return RunReport(n_it, measure, diverged, at, initial, final, tol, bool(converged), fit, check, wall, text)


def _with_progress(solver: Any, bar: Any) -> Any:
    """The same solver config, as a subclass whose step also advances a tqdm bar (fields and name unchanged)."""
    base = type(solver)

    def step(self, state, source, gen):
        out = base.step(self, state, source, gen)
        bar.update(1)
        return out

    cls = type(base.__name__, (base,), {"step": step, "__module__": base.__module__, "__doc__": base.__doc__})
    return cls(**{f.name: getattr(solver, f.name) for f in dataclasses.fields(solver)})


# ================================================================================================ the command
def _add_arguments(p: argparse.ArgumentParser) -> None:
    from ..problems import BILEVEL_FAMILIES, FAMILIES
    from ..solvers import SOLVERS

    def finite(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a real number") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite real number")
        return v

    p.add_argument("--method", required=True, choices=sorted(SOLVERS), help="the method (a solver name)")
    p.add_argument("--family", choices=sorted({**FAMILIES, **BILEVEL_FAMILIES}),
                   help="a task family or bilevel family to read the constants from and run on")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="family config field (repeatable)")
    g = p.add_argument_group("constants (without --family; with one, --L/--mu/... set the family's fields)")
    for name, what in (("L", "smoothness"), ("mu", "strong convexity (negative: curvature lower bound)"),
                       ("rho", "Hessian-Lipschitz constant"), ("M", "bound on grad_y f (bilevel)"),
                       ("tau", "Lipschitz constant of the mixed derivative (bilevel)")):
        g.add_argument(f"--{name}", type=finite, help=what)
    g.add_argument("--L-meta", dest="L_meta", type=finite, help="a known meta smoothness (maml, anil)")
    s = p.add_argument_group("method settings")
    s.add_argument("--alpha", type=finite, help="inner step (default: the recommended one)")
    s.add_argument("--beta", type=finite, help="outer step (default: the recommended one)")
    s.add_argument("--N", type=int, help="inner steps (default: the guideline's, else 1 / the solver's)")
    s.add_argument("--B", type=int, help="tasks per meta-batch (meta methods; default 16)")
    s.add_argument("--num-tasks", dest="num_tasks", type=int, help="finite-sum pool size M >= B (default M = B)")
    s.add_argument("--resample", action="store_true", help="draw fresh tasks every step (default: finite-sum)")
    s.add_argument("--Q", type=int, help="linear-solver / CG steps or ES directions (default: the guideline's)")
    s.add_argument("--lam", type=finite, default=1.0, help="iMAML proximal weight lambda (default 1)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="other solver config field (repeatable)")
    s.add_argument("--theory-opt", dest="theory_opt", action="append", metavar="KEY=VALUE",
                   help="guideline option, e.g. c=8, eps=1e-3, tol=1e-2, p=5 (repeatable)")
    r = p.add_argument_group("run")
    r.add_argument("--theory-only", action="store_true", help="print what theory allows; do not run")
    r.add_argument("--iterations", type=int, default=200, help="outer iterations (default 200)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--tol", type=finite, default=1e-6, help="converged: final/initial norm below this (1e-6)")
    r.add_argument("--rate-tol", dest="rate_tol", type=finite, default=1e-3,
                   help="slack on the predicted rate (default 1e-3)")
    r.add_argument("--eval-tasks", dest="eval_tasks", type=int, default=200, help="held-out tasks (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``check-stepsize`` subcommand to an argparse subparsers object; its handler is ``args.func``."""
    parser = subparsers.add_parser(COMMAND, help="step sizes theory allows, checked on a problem",
                                   description=DESCRIPTION)
    _add_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def _validate_args(args: argparse.Namespace) -> None:
    for name in ("alpha", "beta", "L_meta", "lam"):
        if getattr(args, name) is not None:
            check_positive(name, getattr(args, name))
    if args.N is not None:
        check_int("N", args.N, minimum=0)
    for name in ("B", "num_tasks"):
        if getattr(args, name) is not None:
            check_int(name, getattr(args, name), minimum=1)
    if args.Q is not None:
        check_int("Q", args.Q, minimum=0)
    check_int("iterations", args.iterations, minimum=1)
    check_int("seed", args.seed, minimum=0)
    check_int("eval_tasks", args.eval_tasks, minimum=1)
    check_positive("tol", args.tol)
    check_positive("rate_tol", args.rate_tol, allow_zero=True)
    bilevel = args.method in BILEVEL_METHODS
    if bilevel and (args.B is not None or args.num_tasks is not None or args.resample):
        raise InvalidArgumentError(f"--B, --num-tasks and --resample are meta-learning settings; method = "
                                   f"{args.method!r} is a bilevel method")


def _build_family(args: argparse.Namespace):
    """The family config from --family, --param and the constant flags; its kind checked against the method."""
    from ..problems import BILEVEL_FAMILIES, FAMILIES

    bilevel = args.method in BILEVEL_METHODS
    table = BILEVEL_FAMILIES if bilevel else FAMILIES
    if args.family not in table:
        kind = "bilevel" if bilevel else "meta-learning"
        raise InvalidArgumentError(f"family = {args.family!r} does not fit {kind} method {args.method!r}; "
                                   f"valid: {', '.join(sorted(table))}")
    cls = table[args.family]
    raw = parse_assignments(args.param, "--param")
    names = {f.name for f in dataclasses.fields(cls)}
    for flag in _CONSTANT_FLAGS:
        value = getattr(args, flag)
        if value is None:
            continue
        if flag not in names:
            raise InvalidArgumentError(f"--{flag} does not apply to family {args.family!r}: its constants come from "
                                       f"its data; set its fields with --param ({', '.join(sorted(names))})")
        if flag in raw:
            raise InvalidArgumentError(f"{flag} is given twice (--{flag} and --param {flag}=...)")
        raw[flag] = repr(float(value))
    return cls(**config_overrides(cls, raw, "--param"))


def _build_solver(args: argparse.Namespace, alpha: float, beta: float, N: int, Q: int | None):
    from ..solvers import SOLVERS, Sampling

    cls = SOLVERS[args.method]
    fields = {f.name for f in dataclasses.fields(cls)}
    kw: dict[str, Any] = {"alpha": alpha, "beta": beta, "N": N}
    if "sampling" in fields:
        kw["sampling"] = Sampling(mode="resample" if args.resample else "finite-sum", B=args.B or 16,
                                  num_tasks=args.num_tasks)
    if Q is not None and "Q" in fields:
        kw["Q"] = Q
    if "lam" in fields:
        kw["lam"] = args.lam
    kw.update(config_overrides(cls, parse_assignments(args.set, "--set"), "--set", _RESERVED_SETTINGS))
    return cls(**kw)


def _source(args: argparse.Namespace, family: Any):
    """The data source ``convtheory.solvers.run`` will build for this seed (same derivation of sub-seeds), so that
    the theory reads the constants of the very pool / problem the run uses."""
    from ..solvers import Sampling
    from ..solvers.sources import BilevelSource, MetaSource, subseeds

    source_seed = subseeds(args.seed, 3)[0]
    if args.method in BILEVEL_METHODS:
        return BilevelSource(family, source_seed)
    sampling = Sampling(mode="resample" if args.resample else "finite-sum", B=args.B or 16, num_tasks=args.num_tasks)
    return MetaSource(family, sampling, source_seed, args.eval_tasks)


def check(args: argparse.Namespace) -> dict:
    """Do the whole check for parsed ``args``; return the report as a JSON-ready dict (with ``exit_status``)."""
    _validate_args(args)
    options = theory_options(parse_assignments(args.theory_opt, "--theory-opt"))
    notes: list[str] = []
    family = source = None
    head = None
    if args.family is None:
        constants = constants_from_flags({k: getattr(args, k) for k in _CONSTANT_FLAGS})
        if args.param:
            raise InvalidArgumentError("--param sets a family's fields; it needs --family")
        theory_only = True
        if not args.theory_only:
            notes.append("no --family given: theory only (nothing to run)")
        constants_from = "as given on the command line"
    else:
        family = _build_family(args)
        source = _source(args, family)
        theory_only = bool(args.theory_only)
        if args.method in BILEVEL_METHODS:
            problem = source.problem
            constants = problem.constants
            constants_from = f"of the {args.family} problem the run uses (seed {args.seed})"
        else:
            tasks = source.pool if source.finite_sum else source.test_tasks
            constants = tasks.constants
            constants_from = (
                f"of the pool of M = {source.sampling.pool_size} tasks the run uses (seed {args.seed})"
                if source.finite_sum else f"of {args.eval_tasks} fresh tasks (estimate of the population)")
        head = getattr(family, "head", None) if args.method == "anil" else None
    if args.method == "anil" and family is not None and args.family != "anil":
        raise InvalidArgumentError(f"method 'anil' adapts a head: use --family anil (got {args.family!r})")

    gname = guideline_name(args.method, constants, head)
    if gname in ("maml", "anil-nonconvex"):
        options.setdefault("N", args.N if args.N is not None else 1)
    if gname == "imaml":
        options.setdefault("lam", args.lam)
    if gname == "esj" and "p" not in options and source is not None:
        from ..solvers.sources import vec
        options["p"] = int(vec(source.problem.x0).numel())
    if args.L_meta is not None and gname in ("maml", "anil-strongly-convex"):
        options["L_meta"] = args.L_meta
    elif args.L_meta is not None:
        raise InvalidArgumentError(f"--L-meta applies to maml and anil (ridge head); method is {args.method!r}")
    guide, note = (None, None) if gname is None else _guideline(gname, constants, options, family is not None)
    why = ""
    if note:
        notes.append(note)
        why = f" ({note.split(': ', 1)[1]})"
        gname = None

    from ..solvers import SOLVERS

    defaults = {f.name: f.default for f in dataclasses.fields(SOLVERS[args.method])}
    N = args.N if args.N is not None else (guide.N if guide is not None and guide.N is not None else
                                           (1 if args.method not in BILEVEL_METHODS else defaults["N"]))
    Q = args.Q if args.Q is not None else (guide.Q if guide is not None and guide.Q is not None else None)
    if args.Q is None and Q is not None and Q > MAX_DEFAULT_Q:
        notes.append(f"the guideline's Q = {Q} is too large to run; using the solver's default (pass --Q)")
        Q = None
    alpha = args.alpha if args.alpha is not None else (guide.alpha if guide is not None else None)
    if alpha is None:
        raise InvalidArgumentError(f"--alpha is required for {args.method}: theory gives no step size for it here{why}")

    exact = None
    if source is not None and args.method in BILEVEL_METHODS:
        exact = exact_bilevel_quantities(source.problem)
    elif source is not None:
        det = source.finite_sum and source.sampling.B == source.sampling.pool_size
        exact = exact_meta_quantities(args.method, tasks, alpha, N, args.lam, deterministic=det,
                                      estimate=not source.finite_sum)
    if exact is not None and exact.estimate:
        notes.append(f"--resample: exact quantities are estimated on {args.eval_tasks} fresh tasks (informational)")
    if uses_exact_L_meta(gname, exact, args.L_meta):
        options["L_meta"] = 2.0 / exact.beta_max  # the exact L_meta at the chosen alpha and N
        guide = _guideline(gname, constants, options, True)[0]
    beta = args.beta
    if beta is None:
        if gname in ("maml", "anil-nonconvex") and "L_meta" not in options:
            beta = 1.0 / meta_smoothness_bound(gname, constants.L, alpha, N, options)
        elif guide is not None and guide.beta is not None:
            beta = guide.beta
        elif exact is not None and exact.beta_max is not None:
            beta = exact.beta_max / 2.0
        else:
            hint = " (or pass --L-meta for beta = 1/L_meta)" if gname == "anil-strongly-convex" else why
            raise InvalidArgumentError(f"--beta is required for {args.method}: theory gives no beta for it here{hint}")
    if gname not in ("maml", "anil-nonconvex") and args.N is not None and guide is not None and guide.N is not None:
        if args.N < guide.N:
            notes.append(f"N = {args.N} is below the guideline's N = {guide.N} (informational)")
    if gname == "fomaml" and N != 1:
        notes.append(f"the Fallah et al. guideline is for one inner step; N = {N} here")

    report = theory_report(args.method, gname, constants, alpha=alpha, beta=beta, N=N, options=options, exact=exact,
                           guideline=guide, L_meta_given=args.L_meta, notes=notes, constants_given=family is None)
    run = None
    if not theory_only:
        run = _run(args, family, alpha, beta, N, Q, report.prediction)
    checks = {"step_sizes_admitted": report.admitted, "converged": None if run is None else run.converged,
              "diverged": None if run is None else run.diverged,
              "rate": None if run is None or run.rate_check is None else bool(run.rate_check["holds"])}
    ok = report.admitted and (run is None or run.ok)
    settings = {"alpha": alpha, "beta": beta, "N": N, "alpha_given": args.alpha is not None,
                "beta_given": args.beta is not None}
    if args.method not in BILEVEL_METHODS and family is not None:
        settings.update(B=args.B or 16, num_tasks=args.num_tasks, mode="resample" if args.resample else "finite-sum")
    if Q is not None:
        settings["Q"] = Q
    if args.method == "imaml":
        settings["lam"] = args.lam
    if not theory_only:
        settings.update(iterations=args.iterations, seed=args.seed)
    return {
        "method": args.method, "family": args.family,
        "family_config": None if family is None else {f.name: _jsonable(getattr(family, f.name))
                                                      for f in dataclasses.fields(family)},
        "theory_only": theory_only, "settings": settings,
        "constants": {**constants.as_dict(), "exact": sorted(constants.exact), "from": constants_from},
        "exact": None if exact is None else {
            "symbol": exact.symbol, "description": exact.description, "beta_max": exact.beta_max,
            "eigenvalues": [_jsonable(v) for v in exact.eigs], "deterministic": exact.deterministic,
            "estimate": exact.estimate},
        "theory": report.as_dict(), "run": None if run is None else run.as_dict(), "checks": checks,
        "ok": bool(ok), "exit_status": 0 if ok else 1,
    }


def _run(args, family, alpha, beta, N, Q, prediction) -> RunReport:
    from tqdm import tqdm

    from ..solvers import Budget, run

    solver = _build_solver(args, alpha, beta, N, Q)
    measure = "direction_norm" if args.method in _DIRECTION_MEASURED else "grad_norm"
    with tqdm(total=args.iterations, desc=f"{args.method} on {args.family}", file=sys.stderr, disable=args.json,
              leave=False) as bar:
        trace = run(_with_progress(solver, bar), family, Budget(iterations=args.iterations), seed=args.seed,
                    eval_tasks=args.eval_tasks)
    return run_report(trace, measure, args.tol, prediction, args.rate_tol)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (complex, np.complexfloating)):
        return [_jsonable(v.real), _jsonable(v.imag)]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


# ================================================================================================ output
def format_text(rep: Mapping[str, Any]) -> str:
    """The report as readable text."""
    out = []
    fam = rep["family"] or "constants only"
    st = rep["settings"]
    head = f"check-stepsize: {rep['method']} on {fam}"
    if rep["family_config"]:
        head += " (" + ", ".join(f"{k}={v}" for k, v in rep["family_config"].items() if k != "dtype") + ")"
    out.append(head)
    c = rep["constants"]
    cs = ", ".join(f"{k} = {_fmt(float(v))}" + (" (exact)" if k in c["exact"] else " (bound)" if rep["family"]
                                                 else "") for k, v in c.items()
                   if k in ("L", "mu", "rho", "M", "tau", "sigma2"))
    out.append(f"constants {c['from']}: {cs}")
    extra = {k: v for k, v in c.items() if k in ("L_Phi", "mu_Phi")}
    if extra:
        out.append("  exact: " + ", ".join(f"{k} = {_fmt(float(v))}" for k, v in extra.items()))
    t = rep["theory"]
    if t["guideline"]:
        out.append(f"theory: {t['guideline']} guideline ({t['source']}); guideline constants: "
                   f"{'exact' if t['guideline_constants_exact'] else 'shape only'}")
        out.append("  conditions: " + "; ".join(t["conditions"]))
        if t["recommended"]:
            out.append("  recommended: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in t["recommended"].items()))
    ex = rep["exact"]
    if ex is not None:
        eig = np.asarray([complex(*e) if isinstance(e, list) else e for e in ex["eigenvalues"]])
        mag = np.abs(eig)
        out.append(f"  exact: {ex['description']}: eigenvalues in [{mag.min():.6g}, {mag.max():.6g}]"
                   + (" (estimate)" if ex["estimate"] else ""))
    out.append("  thresholds:")
    for th in t["thresholds"]:
        label = {"guideline": "guideline", "exact": "exact", "info": "for comparison"}[th["kind"]]
        out.append(f"    {th['name']}_max = {th['value']:<12.6g} {label} [{th['constants']}]: {th['formula']}"
                   + (f" ({th['source']})" if th["source"] not in ("exact", "") else ""))
    for s in t["steps"]:
        given = st[f"{s['name']}_given"]
        out.append(f"  {s['name']} = {_fmt(s['value'])}{'' if given else ' (recommended)'}: {s['text']}")
    p = t["predicted_rate"]
    if p is not None:
        verdict = "converges" if p["value"] < 1 else "diverges"
        out.append(f"  predicted rate: {p['value']:.6g} per iteration on {p['measure']} (theory: {verdict}); "
                   f"{p['formula']}, eigenvalues in [{p['h_min']:.6g}, {p['h_max']:.6g}]; {p['kind']}")
    else:
        out.append("  predicted rate: theory gives none here")
    for n in t["notes"]:
        out.append(f"  note: {n}")
    r = rep["run"]
    if r is not None:
        where = f"{st['iterations']} iterations, seed {st['seed']}"
        settings = ", ".join(f"{k} = {_fmt(st[k])}" for k in ("alpha", "beta", "N", "B", "Q", "lam") if k in st)
        out.append(f"run ({settings}; {where}, {r['wall_time']:.2f} s of steps):")
        out.append(f"  {r['text']}")
        f = r["fit"]
        if f is not None:
            line = (f"  measured rate: {f['rate']:.6g} (95% CI [{f['ci_low']:.6g}, {f['ci_high']:.6g}], "
                    f"iterations {f['window'][0]}-{f['window'][1]}, r2 {f['r2']:.4f})")
            rc = r["rate_check"]
            if rc is not None:
                how = "agrees" if rc["agrees_two_sided"] else "faster than predicted"
                line += (f" vs predicted {rc['predicted']:.6g}: "
                         + (f"holds ({how})" if rc["holds"] else "FAILS: slower than predicted"))
            out.append(line)
    else:
        out.append("run: none (theory only)")
    out.append(f"verdict: {'OK' if rep['ok'] else 'FAIL'} (exit {rep['exit_status']})")
    return "\n".join(out)


def handler(args: argparse.Namespace) -> int:
    """Run the check for parsed ``args``; print text or one JSON object; return the exit status (0 or 1).

    Unusable input raises :class:`~convtheory.types.ConvTheoryError` (the command line turns it into exit 2)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = check(args)
    if args.json:
        print(json.dumps(_jsonable(rep), allow_nan=False))
    else:
        print(format_text(rep))
    return int(rep["exit_status"])


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m convtheory.commands.check_stepsize``), as the ``convtheory`` CLI runs it."""
    from ..cli import run_alone

    return run_alone(register, [COMMAND, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
