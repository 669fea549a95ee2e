"""The `gap` command: the one composition root. Each area adds its subcommands
from a module in gap/commands/ exposing `register(subparsers)`; a subcommand sets
`func(args, settings) -> int | None` via `set_defaults`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from settings import load_settings

COMMAND_MODULES = [
    "gap.commands.db",
    "gap.commands.images",
    "gap.commands.serve",
    "gap.commands.model",
    "gap.commands.bench",
    "gap.commands.data",
    "gap.commands.demo",
    "gap.commands.compare",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gap", description="GAP: the visual question-answer game and its data pipeline")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format='{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}',
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic ValidationError: show what is wrong, not a traceback
        print(f"gap: invalid settings: {exc}", file=sys.stderr)
        return 2
    result = args.func(args, settings)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
