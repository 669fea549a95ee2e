"""Database engine set-up. SQLite gets WAL, synchronous=NORMAL (durable across a
process crash, which is what `kill -9` tests), a busy timeout so concurrent
writers from several workers wait instead of failing, and foreign keys."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-16000",
    "PRAGMA temp_store=MEMORY",
)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def install_sqlite_pragmas(sync_engine) -> None:
    """Run the pragmas on every new DBAPI connection of a (sync or async) engine."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - exercised by every test
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()


def ensure_sqlite_dir(url: str) -> None:
    """Create the parent folder of a SQLite file so a fresh checkout just works."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, pool_size: int = 8) -> AsyncEngine:
    """An async engine for `url` (SQLite via aiosqlite by default, PostgreSQL via asyncpg)."""
    ensure_sqlite_dir(url)
    if is_sqlite(url):
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=4, pool_timeout=60)
        install_sqlite_pragmas(engine.sync_engine)
    else:
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return engine
