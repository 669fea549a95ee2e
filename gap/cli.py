"""The `gap` command: the one composition root. Each area adds its subcommands
from a module in gap/commands/ exposing `register(subparsers)`; a subcommand sets
`func(args, settings) -> int | None` via `set_defaults`.

Output: stdout carries only a command's own output (so it can be piped); log
lines go to stderr as JSON, at WARNING unless `-v` (INFO) or `-vv` (DEBUG). A
server (`gap serve`) sets `log_level=INFO` as its default: its log is what an
operator reads."""
from __future__ import annotations

import argparse
import importlib
import json
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
    "gap.commands.duels",
]


class JsonFormatter(logging.Formatter):
    """One JSON object per line, whatever the message holds (quotes, newlines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"t": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr, not the one at creation (callers in one process may swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int, default: int = logging.WARNING) -> None:
    """Root level from `-v` count (0: `default`, 1: INFO, 2+: DEBUG); one JSON handler on stderr."""
    level = {0: default, 1: min(default, logging.INFO)}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gap", description="GAP: the visual question-answer game and its data pipeline")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log lines on stderr: -v INFO, -vv DEBUG (default: warnings and errors only)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, getattr(args, "log_level", logging.WARNING))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic ValidationError: show what is wrong, not a traceback
        print(f"gap: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        result = args.func(args, settings)
    except Exception as exc:  # a failing model ends any command with one line, not a traceback
        failure = model_failure(exc)
        if failure is None:
            raise
        print(f"gap {args.command}: the model failed: {failure}", file=sys.stderr)
        return 1
    return int(result or 0)


def model_failure(exc: BaseException) -> str | None:
    """The message of the ModelError behind `exc` (itself, or inside an ExceptionGroup), else None."""
    from models.base import ModelError

    if isinstance(exc, ModelError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        return next((m for m in map(model_failure, exc.exceptions) if m), None)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
