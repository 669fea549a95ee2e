"""`gap db upgrade|current`: Alembic migrations of the game database (Procfile `release:`)."""
from __future__ import annotations

import argparse

from game.migrate import current_revision, upgrade


def _upgrade(args: argparse.Namespace, settings) -> int:
    upgrade(settings.database_url, args.revision)
    print(f"database at revision {current_revision(settings.database_url)}")
    return 0


def _current(args: argparse.Namespace, settings) -> int:
    print(current_revision(settings.database_url) or "empty (run: gap db upgrade)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database migrations")
    kinds = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = kinds.add_parser("upgrade", help="apply migrations up to a revision (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=_upgrade)
    cur = kinds.add_parser("current", help="print the database's revision")
    cur.set_defaults(func=_current)
