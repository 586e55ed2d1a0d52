"""The paper's experiments, one module per figure or table, and the driver that regenerates them.

``EXPERIMENTS`` maps a name to its :class:`experiments.base.Experiment`. :func:`make_figures` runs what the
results store lacks (resuming, on the chosen executor), then writes ``figures/<name>.png`` and ``.pdf``,
``figures/<name>.csv`` (the summary) and ``paper/tables/<name>.tex``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from convtheory.types import InvalidArgumentError

from .base import PROFILES, Experiment

def registry() -> dict[str, Experiment]:
    """Every module of this package that defines ``EXPERIMENT``, in figure order (``EXPERIMENT.order``)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        exp = getattr(importlib.import_module(f"experiments.{info.name}"), "EXPERIMENT", None)
        if isinstance(exp, Experiment):
            found.append(exp)
    return {e.name: e for e in sorted(found, key=lambda e: (e.order, e.name))}


def make_figures(names=None, *, profile: str = "quick", results: str | Path = "results", figures: str | Path = "figures",
                 tables: str | Path = "paper/tables", executor: str = "local", workers: int | None = None,
                 address: str | None = None, progress: bool = True) -> list[dict]:
    """Run and draw the named experiments (all when ``names`` is empty); return one summary dict per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convtheory.sweep import run_sweep

    if profile not in PROFILES:
        raise InvalidArgumentError(f"profile = {profile!r} is unknown; valid: {', '.join(PROFILES)}")
    reg = registry()
    names = list(names or reg)
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise InvalidArgumentError(f"unknown experiment(s) {unknown}; valid: {', '.join(reg)}")
    figures, tables = Path(figures), Path(tables)
    figures.mkdir(parents=True, exist_ok=True)
    tables.mkdir(parents=True, exist_ok=True)
    report = []
    for name in names:
        exp = reg[name]
        t0 = time.perf_counter()
        if progress:
            print(f"[{name}] {exp.claim}", file=sys.stderr)
        res = run_sweep(exp.specs(profile), Path(results) / profile, executor=executor, workers=workers,
                        address=address, progress=progress)
        if res.failed:
            first = next(iter(res.failed.values())).strip().splitlines()[-1]
            raise RuntimeError(f"{name}: {len(res.failed)} run(s) failed; first: {first}")
        fig = exp.plot(res.table, profile)
        for ext in ("png", "pdf"):
            fig.savefig(figures / f"{name}.{ext}", dpi=130, bbox_inches="tight")
        plt.close(fig)
        entry = {"experiment": name, "profile": profile, "runs_ran": len(res.ran), "runs_cached": len(res.cached),
                 "runs_diverged": len(res.diverged), "seconds": round(time.perf_counter() - t0, 1), "holds": None}
        if exp.summarize is not None:
            summary = exp.summarize(res.table)
            summary.to_csv(figures / f"{name}.csv", index=False)
            (tables / f"{name}.tex").write_text(summary.to_latex(index=False, float_format="%.3g", escape=True))
            if "holds" in summary:
                entry["holds"] = bool(summary["holds"].dropna().astype(bool).all())
        report.append(entry)
        if progress:
            print(f"[{name}] {res.summary()}; {entry['seconds']} s; holds: {entry['holds']}", file=sys.stderr)
    write_sections(figures, tables, tables.parent / "sections.tex")
    return report


def _latex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("^", r"\^{}"), ("~", r"\~{}")):
        text = text.replace(a, b)
    return text


def write_sections(figures: Path, tables: Path, out: Path) -> Path:
    """The paper's generated part: per experiment with a figure on disk, its claim, figure, table and verdict
    (hypergrad_error is written by hand in paper.tex)."""
    import pandas as pd

    parts = []
    for name, exp in registry().items():
        if name == "hypergrad_error" or not (figures / f"{name}.pdf").exists():
            continue
        parts.append(f"\\subsection*{{Figure {exp.order}: {_latex(name)}}}\n{_latex(exp.claim)}.\n")
        csv = figures / f"{name}.csv"
        if csv.exists():
            summary = pd.read_csv(csv)
            if "holds" in summary:
                ok = summary["holds"].dropna().astype(bool)
                verdict = (f"\\textbf{{Verdict:}} the prediction held on all {len(ok)} rows of the table."
                           if ok.all() else
                           f"\\textbf{{Verdict:}} the prediction failed on {int((~ok).sum())} of {len(ok)} rows.")
                parts.append(verdict + "\n")
        parts.append(f"\\begin{{figure}}[h]\\centering\\genfigure{{{name}}}{{{_latex(exp.claim)}.}}\\end{{figure}}\n")
        if (tables / f"{name}.tex").exists():
            parts.append(f"\\begin{{table}}[h]\\centering\\small\\resizebox{{\\linewidth}}{{!}}{{\\gentable{{{name}}}}}"
                         f"\\end{{table}}\n")
    out.write_text("\\section{Further experiments}\n" + "\n".join(parts) if parts else "")
    return out
