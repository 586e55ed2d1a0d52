"""``convtheory omniglot-runs``: score a model on the 20 official Omniglot one-shot runs.

    convtheory omniglot-runs --root data/omniglot --model mhd [--json]

Prints each run's error and the mean over the 20 runs (Lake et al. 2015's protocol, see
:mod:`convtheory.fewshot.runs`); with ``--json`` prints exactly one JSON object on stdout:
``{"model", "mean_error", "errors", "runs"}`` with errors as fractions. Bad input (missing root, wrong layout,
unknown model) exits 2 with one line on stderr naming the bad value.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..types import InvalidArgumentError
from .runs import SCORERS, evaluate_runs, load_runs, resolve_scorer

COMMAND = "omniglot-runs"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True,
                        help="all_runs.zip, its unzipped folder, or a folder holding either (e.g. data/omniglot)")
    parser.add_argument("--model", default="mhd",
                        help=f"a model name ({', '.join(sorted(SCORERS))}) or a checkpoint path (default: mhd)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``omniglot-runs`` subcommand to an argparse subparsers object; its handler is ``args.func``."""
    parser = subparsers.add_parser(COMMAND, help="error on the 20 official Omniglot one-shot runs",
                                   description=__doc__.split("\n")[0])
    _add_arguments(parser)
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the evaluation for parsed ``args``; return the exit status (0, or 2 for bad input)."""
    try:
        scorer = resolve_scorer(args.model)
        runs = load_runs(args.root)
    except InvalidArgumentError as exc:
        print(f"convtheory {COMMAND}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    result = evaluate_runs(runs, scorer)
    if args.json:
        print(json.dumps({"model": args.model, **result.as_dict()}))
        return 0
    print(f"Omniglot one-shot runs (20-way, 1-shot), model {args.model}")
    for name, err in zip(result.names, result.errors):
        print(f"  {name}  error {100 * err:5.1f}%")
    print(f"mean error over {len(result.errors)} runs: {100 * result.mean_error:.2f}%")
    return 0


def _standalone(argv: list[str] | None = None) -> int:
    from ..cli import run_alone

    return run_alone(register, [COMMAND, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(_standalone())
