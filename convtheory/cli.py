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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convtheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="every hypergradient and meta-gradient engine against the exact answer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=_demo)

    from .fewshot import cli_omniglot

    cli_omniglot.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConvTheoryError as exc:
        print(f"convtheory: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
