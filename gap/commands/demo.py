"""`gap demo`: play locally in a browser (work in progress, issue 5)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand (filled in by the Mini App area)."""
    return None
