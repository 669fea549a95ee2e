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


def _install_begin_immediate(sync_engine) -> None:
    """Write transactions take SQLite's write lock up front (BEGIN IMMEDIATE), so a
    read-then-write transaction never fails with SQLITE_BUSY_SNAPSHOT when another
    connection or worker committed in between; other writers wait busy_timeout."""

    @event.listens_for(sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:  # pragma: no cover
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _begin_immediate(conn) -> None:  # pragma: no cover
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The game's database handle: a pool of reader connections and one writer.

    SQLite allows one writer at a time; funnelling this process's writes through
    one connection behind an asyncio lock turns contention into a short FIFO
    queue instead of busy retries. Transactions stay short: callers never await
    the model while holding `write()`. On PostgreSQL both sides are pools."""

    def __init__(self, url: str, *, read_pool: int = 8) -> None:
        import asyncio

        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = create_engine(url, pool_size=read_pool)
        if self.sqlite:
            self.write_engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=300)
            install_sqlite_pragmas(self.write_engine.sync_engine)
            _install_begin_immediate(self.write_engine.sync_engine)
            self._write_lock: asyncio.Lock | None = asyncio.Lock()
        else:
            self.write_engine = self.engine
            self._write_lock = None

    def read(self):
        """`async with db.read() as conn:` — a pooled connection for SELECTs."""
        return self.engine.connect()

    def write(self):
        """`async with db.write() as conn:` — one transaction, committed on exit."""
        return _WriteTx(self)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


class _WriteTx:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._ctx = None

    async def __aenter__(self):
        if self._db._write_lock is not None:
            await self._db._write_lock.acquire()
        try:
            self._ctx = self._db.write_engine.begin()
            return await self._ctx.__aenter__()
        except BaseException:
            if self._db._write_lock is not None:
                self._db._write_lock.release()
            raise

    async def __aexit__(self, *exc):
        try:
            return await self._ctx.__aexit__(*exc)
        finally:
            if self._db._write_lock is not None:
                self._db._write_lock.release()
