"""Programmatic Alembic: `gap db upgrade` and the test fixtures call `upgrade()`,
which finds game/migrations by package path, so it works from any directory."""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config

from game.db import ensure_sqlite_dir, sqlite_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and `url`, without any alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["database_url"] = url
    return cfg


def _run(fn, *args) -> None:
    # env.py runs its own event loop; when called from inside a running loop, do it in a thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        fn(*args)
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(fn, *args).result()


@contextlib.contextmanager
def _one_migration_at_a_time(url: str) -> Iterator[None]:
    """Web workers started together each migrate before serving. On a SQLite file they take
    turns on an exclusive lock of `<file>.migrate-lock` (alembic's SQLite DDL is not transactional,
    so the losers would fail on tables the winner just created); PostgreSQL takes an advisory lock
    inside the migration transaction instead (migrations/env.py)."""
    database = sqlite_file(url)
    if database is None:
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (creates the SQLite file if needed)."""
    ensure_sqlite_dir(url)
    with _one_migration_at_a_time(url):
        _run(command.upgrade, alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Step the schema back (used by the migration round-trip test)."""
    with _one_migration_at_a_time(url):
        _run(command.downgrade, alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None for an empty database.

    Read through the same async driver as the app (aiosqlite / asyncpg), so no
    second, synchronous database driver has to be installed for PostgreSQL."""
    found: list[str | None] = []
    _run(lambda: asyncio.run(_read_revision(url, found)))
    return found[0]


async def _read_revision(url: str, found: list[str | None]) -> None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found.append(await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision()))
    finally:
        await engine.dispose()
