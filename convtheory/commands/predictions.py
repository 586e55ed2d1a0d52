"""convtheory predictions: every checkable prediction of THEORY.md §14 measured, with a verdict.

Prints one row per prediction: number, statement, measured, predicted, verdict (holds / fails / inconclusive) and
tightness (measured / predicted, worst / median). Runs go through the sweep store shared with ``convtheory
figures`` (``--results``), so cached runs are not recomputed. Writes the paper's table (``--tables``) and a CSV
(``--out``) unless ``--no-write``. Exit status: 1 when a prediction with exact constants fails, 0 otherwise, 2 on
unusable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from ..types import InvalidArgumentError

COMMAND = "predictions"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("numbers", nargs="*", type=int, metavar="NUMBER", help="prediction numbers (default: all)")
    p.add_argument("--profile", choices=["test", "quick", "full"], default="quick",
                   help="test: smallest size (seconds each); quick: the README's; full: the paper's")
    p.add_argument("--executor", choices=["serial", "local", "dask"], default="local")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: 2)")
    p.add_argument("--address", default=None, help="Dask scheduler address (with --executor dask)")
    p.add_argument("--results", default="results", help="results store folder, shared with `convtheory figures`")
    p.add_argument("--out", default="figures", help="where predictions.csv goes")
    p.add_argument("--tables", default="paper/tables", help="where the paper's predictions.tex goes")
    p.add_argument("--no-write", action="store_true", help="print only; write no CSV or LaTeX table")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bars)")


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(COMMAND, help="every checkable prediction of the theory, with a verdict",
                                   description=__doc__.split("\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=handler)
    return parser


def _latex(text: str) -> str:
    """Plain text -> LaTeX text (<, > and | in math mode: the paper's OT1 text fonts lack them)."""
    out = []
    for ch in text:
        out.append({"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&",
                    "#": r"\#", "$": r"\$", "^": r"\^{}", "~": r"\~{}", "<": r"$<$", ">": r"$>$",
                    "|": r"$|$"}.get(ch, ch))
    return "".join(out)


def latex_table(rows: pd.DataFrame) -> str:
    """The paper's predictions section body, generated from the evaluated rows: what the verdicts mean, the table
    (a longtable), and for every prediction that does not hold, where it fails or why it is inconclusive."""
    from ..theory.predictions import outcome_table

    t = outcome_table(rows)
    counts = rows["verdict"].value_counts()
    profile = rows["profile"].iloc[0] if "profile" in rows and len(rows) else "?"
    lines = [
        f"Measured at the \\texttt{{{profile}}} profile: {counts.get('holds', 0)} of {len(rows)} predictions hold, "
        f"{counts.get('fails', 0)} fail and {counts.get('inconclusive', 0)} are inconclusive. "
        "\\emph{Holds} means every compared point agrees with the closed form to the stated tolerance (exact "
        "constants) or lies on the right side of the bound (upper or lower bounds), or that the fitted shape is "
        "within its tolerance; \\emph{fails} means a point contradicts it (the details below say where), and for a "
        "prediction with exact constants this is a defect of the code or of the theory; \\emph{inconclusive} means "
        "the measurement at this size cannot decide, typically because a constant is only fitted. Tightness is "
        "measured over predicted, worst and median over the compared points (for identities: deviation over "
        "tolerance).",
        "",
        r"\begin{longtable}{@{}r >{\raggedright\arraybackslash}p{0.30\linewidth} "
        r">{\raggedright\arraybackslash}p{0.22\linewidth} >{\raggedright\arraybackslash}p{0.22\linewidth} l l@{}}",
        r"\toprule \# & prediction & measured & predicted & verdict & tightness \\ \midrule \endhead"]
    for _, r in t.iterrows():
        verdict = {"holds": r"\textbf{holds}", "fails": r"\textbf{FAILS}"}.get(r["verdict"], r["verdict"])
        lines.append(" & ".join([str(r["number"]), _latex(r["statement"]), _latex(r["measured"]),
                                 _latex(r["predicted"]), verdict, _latex(r["tightness"])]) + r" \\")
    lines.append(r"\bottomrule \end{longtable}")
    other = rows[rows["verdict"] != "holds"]
    if len(other):
        lines += ["", r"\begin{itemize}"]
        lines += [f"\\item \\textbf{{{int(r['number'])} ({r['verdict']}, constants {r['constants']}):}} "
                  f"{_latex(str(r['detail']))}" for _, r in other.iterrows()]
        lines.append(r"\end{itemize}")
    return "\n".join(lines) + "\n"


def text_table(rows: pd.DataFrame, width: int = 118) -> str:
    """One block per prediction: number, verdict, tightness and the statement, then what was measured and what
    theory predicted, wrapped to ``width`` columns."""
    import textwrap

    from ..theory.predictions import outcome_table

    t = outcome_table(rows)
    out = [f"{'#':>3} {'verdict':<13} {'tightness':<19} statement", "-" * width]
    for _, r in t.iterrows():
        head = f"{r['number']:>3} {r['verdict']:<13} {r['tightness'] or '-':<19} "
        out += textwrap.wrap(r["statement"], width, initial_indent=head, subsequent_indent=" " * len(head))
        for label in ("measured", "predicted"):
            out += textwrap.wrap(str(r[label]), width, initial_indent=f"{'':>17}{label + ':':<11}",
                                 subsequent_indent=" " * 28)
    return "\n".join(out)


def _json_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _json_value(v.item())
    return v


def handler(args: argparse.Namespace) -> int:
    from ..theory.predictions import evaluate_all

    if args.workers is not None and args.workers < 1:
        raise InvalidArgumentError(f"--workers = {args.workers}; valid: an integer >= 1")
    try:
        import experiments.predictions  # noqa: F401
    except ImportError as exc:
        print(f"convtheory: error: the experiments package is not importable ({exc}); run from the repository",
              file=sys.stderr)
        return 2
    rows = evaluate_all(args.numbers, args.profile, args.results, executor=args.executor, workers=args.workers,
                        address=args.address, progress=not args.json)
    if not args.no_write:
        out, tables = Path(args.out), Path(args.tables)
        out.mkdir(parents=True, exist_ok=True)
        tables.mkdir(parents=True, exist_ok=True)
        rows.to_csv(out / "predictions.csv", index=False)
        (tables / "predictions.tex").write_text(latex_table(rows))
    failed_exact = rows[(rows["verdict"] == "fails") & (rows["constants"] == "exact")]["number"].tolist()
    if args.json:
        print(json.dumps({"profile": args.profile, "failed_exact": failed_exact,
                          "predictions": [{k: _json_value(v) for k, v in r.items()}
                                          for r in rows.to_dict(orient="records")]}))
    else:
        print(text_table(rows))
        counts = rows["verdict"].value_counts()
        print(f"\n{counts.get('holds', 0)} hold, {counts.get('fails', 0)} fail, "
              f"{counts.get('inconclusive', 0)} inconclusive"
              + (f"; exact-constant failures: {failed_exact}" if failed_exact else ""))
    return 1 if failed_exact else 0


def _standalone(argv: list[str] | None = None) -> int:
    from ..cli import run_alone

    return run_alone(register, [COMMAND, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(_standalone())
