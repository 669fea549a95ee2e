"""Database engine set-up. SQLite gets WAL, synchronous=NORMAL (durable across a
process crash, which is what `kill -9` tests), a busy timeout so concurrent
writers from several workers wait instead of failing, and foreign keys."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import Table, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-16000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA mmap_size=268435456",
)
# values of SQLite's `PRAGMA synchronous` the game's writer accepts (settings: GAP_DB_SYNCHRONOUS)
SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def install_sqlite_pragmas(sync_engine, extra: tuple[str, ...] = ()) -> None:
    """Run the pragmas on every new DBAPI connection of a (sync or async) engine."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # pragma: no cover - exercised by every test
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS + extra:
            cursor.execute(pragma)
        cursor.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory SQLite or a server database.
    Files that belong beside the database (locks, journals, the demo token) are placed from it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database).expanduser().resolve()
    return None


def ensure_sqlite_dir(url: str) -> None:
    """Create the parent folder of a SQLite file so a fresh checkout just works."""
    if (path := sqlite_file(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


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
    """The game's database handle.

    Two ways in:
    - `run_read(fn, ...)` / `run_write(fn, ...)` run a *synchronous* function
      `fn(conn, ...)` on a SQLAlchemy Core connection as one transaction. On
      SQLite they use the stdlib driver directly instead of aiosqlite (which
      costs several thread hand-offs per statement): reads run on the event
      loop on one persistent connection (indexed lookups of a few rows; in WAL
      mode readers never wait for the writer), writes go to one writer thread
      that group-commits whatever is queued (BEGIN IMMEDIATE, so writers of
      other processes queue on busy_timeout instead of failing; synchronous=FULL
      on the writer, so an acknowledged write survives power loss too). On
      PostgreSQL the same functions run through the async engine's `run_sync`:
      reads see one snapshot (REPEATABLE READ), as a SQLite read transaction
      does; writes run READ COMMITTED, so a write function that decides from
      rows other workers may be changing at the same moment locks them first
      (FOR UPDATE, which SQLite ignores: its writers are serialised anyway) or
      relies on a unique constraint and its caller's IntegrityError retry.
    - `read()` / `write()`: async context managers yielding an AsyncConnection
      (aiosqlite / asyncpg) for code that prefers plain async Core.

    Tuning (passed in by the composition root from settings GAP_DB_*, for
    benchmarks and unusual deployments): `inline_reads=False` moves reads to a
    thread pool; `inline_writes=True` runs the group commits on the event loop
    (less CPU, but a checkpoint or a lock held by another process then stalls
    the loop); `synchronous` overrides the writer's FULL. Transactions stay
    short: callers never await the model inside one."""

    def __init__(self, url: str, *, read_pool: int = 8, read_threads: int = 2, inline_reads: bool = True,
                 inline_writes: bool = False, synchronous: str = "FULL") -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        if synchronous.upper() not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}, got {synchronous!r}")

        self.url = url
        self.sqlite = is_sqlite(url)
        # SQLite reads of a few indexed rows take tens of microseconds; on the event
        # loop they cost less than a thread hop (and never wait for the writer in WAL).
        self.inline_reads = inline_reads
        self.engine = create_engine(url, pool_size=read_pool)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.sqlite else None
        self._sync_read = self._sync_write = None
        self._inline_conn = None
        if self.sqlite:
            self.write_engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=300)
            install_sqlite_pragmas(self.write_engine.sync_engine)
            _install_begin_immediate(self.write_engine.sync_engine)
            sync_url = make_url(url).set(drivername="sqlite")
            self._sync_read = sa_create_engine(sync_url, pool_size=read_threads, max_overflow=0,
                                             connect_args={"check_same_thread": False})
            install_sqlite_pragmas(self._sync_read)
            self._sync_write = sa_create_engine(sync_url, pool_size=1, max_overflow=0,
                                              connect_args={"check_same_thread": False})
            # The game's own writer syncs the WAL at every (group) commit, so an
            # acknowledged submit survives a power loss too, not only a crash.
            install_sqlite_pragmas(self._sync_write, (f"PRAGMA synchronous={synchronous.upper()}",))
            _install_begin_immediate(self._sync_write)
            self._read_pool = ThreadPoolExecutor(read_threads, thread_name_prefix="gap-db-read")
            # Writes on the event loop save the thread hand-offs (~15% CPU) but let a
            # checkpoint's fsync or another process's write lock stall the loop: opt-in.
            self._writer = GroupCommitWriter(self._sync_write, inline=inline_writes)
        else:
            self.write_engine = self.engine
            self._snapshot_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")

    async def run_read(self, fn, *args):
        """`fn(conn, *args)` on a read connection; returns its result."""
        if self._sync_read is None:
            async with self._snapshot_engine.connect() as conn:
                return await conn.run_sync(fn, *args)
        if self.inline_reads:
            conn = self._inline_conn
            if conn is None:
                conn = self._inline_conn = self._sync_read.connect()
            try:
                return fn(conn, *args)
            except BaseException:
                self._inline_conn = None
                conn.close()
                raise
            finally:
                if self._inline_conn is not None:
                    conn.rollback()  # end the read; the next one sees the latest commits
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self._read_pool, _in_tx, self._sync_read, False, fn, args)

    async def run_write(self, fn, *args):
        """`fn(conn, *args)` in one write transaction (committed on return, rolled back on raise)."""
        if self._sync_write is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        return await self._writer.submit(fn, args)

    def read(self):
        """`async with db.read() as conn:` — a pooled AsyncConnection for SELECTs (one snapshot)."""
        if self._sync_read is None:
            return self._snapshot_engine.connect()
        return self.engine.connect()

    def write(self):
        """`async with db.write() as conn:` — one async transaction, committed on exit."""
        return _WriteTx(self)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        if self._sync_read is not None:
            if self._inline_conn is not None:
                self._inline_conn.close()
                self._inline_conn = None
            self._read_pool.shutdown(wait=True)
            self._writer.close()
            self._sync_read.dispose()
            self._sync_write.dispose()


class GroupCommitWriter:
    """One writer thread that commits several waiting write transactions at once.

    Under load many players' writes queue up; they run back to back inside one
    BEGIN IMMEDIATE … COMMIT, sharing the commit and the WAL page writes. If any
    of them raises (a conflict, a duplicate request id), the batch is rolled
    back and every job is re-run in a transaction of its own, so jobs stay
    independent; write functions are therefore pure functions of their
    arguments and the database. A caller's future resolves only after its
    COMMIT, so an acknowledged submit is durable."""

    MAX_BATCH = 64

    def __init__(self, engine, *, inline: bool = False) -> None:
        import queue
        import threading

        self._engine = engine
        self.inline = inline
        self._pending: list = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = None
        if not inline:
            self._thread = threading.Thread(target=self._run, name="gap-db-writer", daemon=True)
            self._thread.start()

    async def submit(self, fn, args):
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.inline:
            if not self._pending:
                loop.call_soon(self._flush)
            self._pending.append((fn, args, loop, future))
        else:
            self._queue.put((fn, args, loop, future))
        return await future

    def _flush(self) -> None:
        jobs, self._pending = self._pending, []
        for start in range(0, len(jobs), self.MAX_BATCH):
            self._run_batch(jobs[start:start + self.MAX_BATCH], direct=True)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        import queue

        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self.MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                jobs.append(job)
            self._run_batch(jobs)

    def _run_batch(self, jobs, direct: bool = False) -> None:
        try:
            outcomes = self._transaction(jobs)
        except BaseException:  # noqa: BLE001 - one job failed (or the commit): run each alone
            if len(jobs) == 1:
                outcomes = [self._alone(jobs[0])]
            else:
                outcomes = [self._alone(job) for job in jobs]
        for (_, _, loop, future), (ok, value) in zip(jobs, outcomes):
            if direct:
                _resolve(future, ok, value)
            else:
                loop.call_soon_threadsafe(_resolve, future, ok, value)

    def _transaction(self, jobs) -> list[tuple[bool, object]]:
        """All jobs in one transaction; any exception rolls the whole batch back."""
        with self._engine.connect() as conn:
            with conn.begin():
                return [(True, fn(conn, *args)) for fn, args, _, _ in jobs]

    def _alone(self, job) -> tuple[bool, object]:
        try:
            return self._transaction([job])[0]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            return (False, exc)


def _resolve(future, ok: bool, value) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _in_tx(engine, write: bool, fn, args):
    if write:
        with engine.begin() as conn:
            return fn(conn, *args)
    with engine.connect() as conn:
        return fn(conn, *args)


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


class _Compiled:
    __slots__ = ("sql", "names", "defaults", "row_type")

    def __init__(self, sql: str, names: tuple[str, ...], defaults: dict, row_type) -> None:
        self.sql, self.names, self.defaults, self.row_type = sql, names, defaults, row_type


_COMPILED: dict = {}


def _compile_for_sqlite(conn, stmt, keys: tuple[str, ...]) -> _Compiled:
    from collections import namedtuple

    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys) if stmt.is_dml else None)
    names = tuple(compiled.positiontup or ())
    defaults = compiled.construct_params({k: None for k in keys}, _check=False)
    row_type = None
    if stmt.is_select:
        row_type = namedtuple("Row", list(stmt.selected_columns.keys()), rename=True)
    elif compiled.effective_returning:  # INSERT/UPDATE … RETURNING: rows too
        row_type = namedtuple("Row", [c.key for c in compiled.effective_returning], rename=True)
    return _Compiled(str(compiled), names, defaults, row_type)


def fast(conn, stmt, params: dict | None = None):
    """Execute a Core statement; rows (attribute access) for SELECT and RETURNING, rowcount otherwise.

    On SQLite the statement is compiled once and run on the driver connection,
    skipping SQLAlchemy's per-execution machinery (~50 µs a statement) on the
    game's hot paths; the statement is still defined once, in Core, and other
    databases run it through the ordinary `conn.execute`."""
    params = params or {}
    if conn.dialect.name != "sqlite":
        result = conn.execute(stmt, params)
        return result.all() if result.returns_rows else result.rowcount
    keys = tuple(params)
    entry = _COMPILED.get((stmt, keys))
    if entry is None:
        entry = _COMPILED[(stmt, keys)] = _compile_for_sqlite(conn, stmt, keys)
    defaults = entry.defaults
    values = tuple(params[n] if n in params else defaults[n] for n in entry.names)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(entry.sql, values)
        if entry.row_type is None:
            return cursor.rowcount
        make = entry.row_type._make
        return [make(row) for row in cursor.fetchall()]
    except conn.dialect.loaded_dbapi.Error as exc:
        # Same exception types as conn.execute (e.g. sqlalchemy.exc.IntegrityError).
        from sqlalchemy.exc import DBAPIError

        raise DBAPIError.instance(entry.sql, values, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()


# ---------------------------------------------------------------- bulk statements (gap evaluate)


async def _aiosqlite_driver(conn, method: str) -> Any | None:
    """The aiosqlite connection under `conn` (same connection, same transaction) when it offers
    `method`; None on other databases, where the ordinary SQLAlchemy path is used."""
    if conn.dialect.name != "sqlite":
        return None
    raw = await conn.get_raw_connection()
    driver = getattr(raw, "driver_connection", None)
    return driver if driver is not None and hasattr(driver, method) else None


async def fetch_tuples(conn, stmt) -> list[tuple]:
    """All rows of a SELECT as plain tuples. On SQLite, aiosqlite's `execute_fetchall` runs the
    fetch in its worker thread without building a SQLAlchemy Row per answer (a million Rows
    cost seconds); elsewhere the ordinary path. Same connection, same transaction."""
    if (driver := await _aiosqlite_driver(conn, "execute_fetchall")) is not None:
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        return list(await driver.execute_fetchall(sql))
    return [tuple(r) for r in (await conn.execute(stmt)).all()]


async def insert_many(conn, table: Table, rows: list[dict[str, Any]]) -> None:
    """Bulk INSERT. On SQLite the driver's own executemany, in aiosqlite's thread: SQLAlchemy's
    per-row parameter processing cost ~1 s for the 130,000 count rows of a million answers."""
    if rows:
        cols = list(rows[0])
        await insert_tuples(conn, table, cols, [tuple(r[c] for c in cols) for r in rows])


async def insert_tuples(conn, table: Table, cols: list[str], rows: list[tuple]) -> None:
    """insert_many for rows already in column order (`cols`): the half-million crowd evidence
    pairs of a million answers need no dict per row."""
    if not rows:
        return
    if (driver := await _aiosqlite_driver(conn, "executemany")) is not None:
        sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        await driver.executemany(sql, rows)
        return
    await conn.execute(table.insert(), [dict(zip(cols, r)) for r in rows])
