"""The ``convtheory`` command. Exit status: 0 all checks hold, 1 a check failed, 2 unusable input."""

from __future__ import annotations

import argparse
import json
import sys

from .types import ConvTheoryError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2 (its default), never with a traceback."""

    def error(self, message):  # noqa: D401
        self.exit(2, f"convtheory: error: {message}\n")


def _demo(args) -> int:
    import pandas as pd

    from . import demo

    tables = demo.run(seed=args.seed)
    if args.json:
        print(json.dumps({k: v.to_dict(orient="records") for k, v in tables.items()}, default=str))
    else:
        with pd.option_context("display.width", 200, "display.max_rows", 200, "display.float_format", "{:.3e}".format):
            print("Hypergradient methods on a quadratic bilevel problem (p=5, q=10, mu=0.1, L=1, alpha=1/L):")
            print("error relative to the exact hypergradient, next to the exact prediction or the upper bound.\n")
            print(tables["bilevel"].to_string(index=False))
            print("\nMeta-gradient methods on quadratic tasks (d=8, B=16, alpha=1/(N L)):")
            print("distance to the exact N-step MAML gradient (closed form, THEORY.md §1.2).\n")
            print(tables["meta"].to_string(index=False))
    bounds = tables["bilevel"]["holds"].dropna()
    return 0 if bool(bounds.all()) else 1


def _figures(args) -> int:
    try:
        from experiments import make_figures
    except ImportError as exc:  # installed without the repository's experiments/ folder
        print(f"convtheory: error: the experiments package is not importable ({exc}); run from the repository",
              file=sys.stderr)
        return 2
    names = args.names if args.command == "figures" else [args.experiment]
    report = make_figures(names, profile=args.profile, results=args.results, figures=args.out,
                          tables=args.tables, executor=args.executor, workers=args.workers, address=args.address,
                          progress=not args.json)
    if args.json:
        print(json.dumps({"experiments": report}))
    else:
        for r in report:
            verdict = {True: "holds", False: "FAILS", None: "no verdict"}[r["holds"]]
            print(f"{r['experiment']:<24} {verdict:<10} ran {r['runs_ran']:>4}  cached {r['runs_cached']:>4}  "
                  f"diverged {r['runs_diverged']:>3}  {r['seconds']:>7.1f} s  -> {args.out}/{r['experiment']}.png")
    return 1 if any(r["holds"] is False for r in report) else 0


def _add_sweep_options(p) -> None:
    p.add_argument("--profile", choices=["test", "quick", "full"], default="quick",
                   help="test: seconds; quick: the README's main job; full: the paper")
    p.add_argument("--executor", choices=["serial", "local", "dask"], default="local")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: 2)")
    p.add_argument("--address", default=None, help="Dask scheduler address (with --executor dask)")
    p.add_argument("--results", default="results", help="results store folder (resumable)")
    p.add_argument("--out", default="figures", help="where figures and their CSV summaries go")
    p.add_argument("--tables", default="paper/tables", help="where the LaTeX tables go")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bars)")
    p.set_defaults(func=_figures)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convtheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="every hypergradient and meta-gradient engine against the exact answer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=_demo)

    p = sub.add_parser("figures", help="run what is missing and regenerate the paper's figures and tables")
    p.add_argument("names", nargs="*", help="experiments (default: all)")
    _add_sweep_options(p)
    p = sub.add_parser("run", help="run one experiment and draw its figure")
    p.add_argument("experiment")
    _add_sweep_options(p)

    from .commands import check_stepsize, hypergrad_check, predictions

    check_stepsize.register(sub)
    hypergrad_check.register(sub)
    predictions.register(sub)

    from .fewshot import cli_fewshot, cli_omniglot

    cli_omniglot.register(sub)
    cli_fewshot.register(sub)
    return parser


def _dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConvTheoryError as exc:
        print(f"convtheory: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return _dispatch(build_parser(), argv)


def run_alone(register, argv: list[str] | None = None) -> int:
    """Run one subcommand's ``register`` as the ``convtheory`` command would (``python -m <its module>``):
    the same one-line errors and exit statuses. ``argv`` starts with the subcommand's name."""
    parser = _Parser(prog="convtheory")
    register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    return _dispatch(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
