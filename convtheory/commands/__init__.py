"""Subcommands of the ``convtheory`` command, one module each, each exposing ``register(subparsers)``."""
