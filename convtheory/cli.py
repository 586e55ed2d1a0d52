"""The ``convtheory`` command. Exit status: 0 all checks hold, 1 a check failed, 2 unusable input."""

from __future__ import annotations

import argparse
import json
import re
import sys

from .types import ConvTheoryError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2 (its default), never with a traceback."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse reads "-1e-3" or "-inf" as an option, not a negative number; accept them as values
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-inf(inity)?$")

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
    _add_config_option(sub)
    return parser


def _add_config_option(sub) -> None:
    """Every subcommand takes ``--config FILE`` (TOML, or JSON by suffix); see :func:`_config_tokens`."""
    for p in sub.choices.values():
        p.add_argument("--config", metavar="FILE", help="read options from a TOML or JSON file (keys: the long "
                       "option names; the command line overrides it)")


def _config_tokens(sub: argparse.ArgumentParser, command: str, path: str) -> list[str]:
    """The command-line tokens a config file stands for: ``{"alpha": 0.1, "param": {"d": 8}, "json": true}``
    becomes ``--alpha 0.1 --param d=8 --json``. Keys are the subcommand's long option names (``-`` or ``_``);
    tables become repeated ``KEY=VALUE`` options, lists repeated options or positionals (key ``names`` etc.)."""
    import tomllib
    from pathlib import Path

    from .types import InvalidArgumentError

    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"config file {path!r} does not exist")
    try:
        text = file.read_text()
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"config file {path!r} is not valid {'JSON' if file.suffix == '.json' else 'TOML'}: "
                                   f"{' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"config file {path!r} must hold a table of options, not {type(data).__name__}")
    options = {a.dest: a for a in sub._actions if a.dest not in ("help", "config")}
    by_flag = {s.lstrip("-").replace("-", "_"): a for a in sub._actions for s in a.option_strings}
    tokens: list[str] = []
    for key, value in data.items():
        action = by_flag.get(str(key).replace("-", "_")) or options.get(str(key).replace("-", "_"))
        if action is None or action.dest in ("help", "config"):
            valid = sorted({a.dest for a in options.values()})
            raise InvalidArgumentError(f"config file {path!r}: unknown key {key!r} for `convtheory {command}`; "
                                       f"valid: {', '.join(valid)}")
        flag = max(action.option_strings, key=len) if action.option_strings else None
        if isinstance(value, bool) and action.nargs == 0:
            tokens += [flag] if value else []
            continue
        values = ([f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else
                  [str(v) for v in value] if isinstance(value, list) else [str(value)])
        if flag is None:
            tokens += values
        elif action.nargs in ("*", "+"):
            tokens += [flag, *values]
        else:
            for v in values:
                tokens += [flag, v]
    return tokens


def _expand_config(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Replace ``--config FILE`` by the options it holds, placed first so the command line overrides them."""
    if "--config" not in argv and not any(a.startswith("--config=") for a in argv):
        return argv
    sub_actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    command = next((a for a in argv if not a.startswith("-")), None)
    if not sub_actions or command not in sub_actions[0].choices:
        return argv
    rest, path, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--config":
            if i + 1 >= len(argv):
                raise _ConfigError("--config needs a file path")
            path, i = argv[i + 1], i + 2
            continue
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    at = rest.index(command) + 1
    return rest[:at] + _config_tokens(sub_actions[0].choices[command], command, path) + rest[at:]


class _ConfigError(ConvTheoryError, ValueError):
    pass


def _dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _expand_config(parser, argv)
    except ConvTheoryError as exc:
        print(f"convtheory: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    register(sub)
    _add_config_option(sub)
    return _dispatch(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
