"""Placeholder: subcommands are added by the owning area."""
import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None
