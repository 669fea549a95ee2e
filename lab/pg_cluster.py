"""A throwaway PostgreSQL cluster for the test suite (SPEC §4.1: the suite runs
against SQLite and PostgreSQL) and for `gap bench api --database postgresql`.

Why a cluster of our own instead of a configured server: tests stay offline and
self-contained, every run starts from nothing, and nothing outside the temp dir
is touched. The server listens on a Unix socket in a private directory only, so
concurrent test runs never race for a TCP port. It runs with fsync off (a test
cluster need not survive a power loss), as the `postgres` OS user when the
suite runs as root (PostgreSQL refuses to run as root), and it is asked to die
with the test process (PR_SET_PDEATHSIG) so even a killed pytest leaves no
server behind.

Binaries: $GAP_TEST_PG_BINDIR, else initdb on PATH, else Debian's
/usr/lib/postgresql/<version>/bin (`make postgres-deps` installs them)."""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PORT = 5432  # only names the socket file inside our private directory; no TCP listener
SUPERUSER = "gap"


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory holding initdb and postgres, or PostgresUnavailable with what to do."""
    candidates: list[Path] = []
    if os.environ.get("GAP_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["GAP_TEST_PG_BINDIR"]))
    if (initdb := shutil.which("initdb")) is not None:
        candidates.append(Path(initdb).resolve().parent)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.parent.name.split(".") if x.isdigit())

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found: run `make postgres-deps` "
        "(Debian's postgresql package), or set GAP_TEST_PG_BINDIR; GAP_TEST_POSTGRES=0 runs SQLite only")


def _die_with_parent_hook():
    """A preexec_fn asking the kernel to SIGQUIT (immediate shutdown) the server when pytest dies.
    libc is loaded here, in the parent: the child has already switched to the `postgres` user and
    may not be able to read this Python's files any more."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigquit = 1, int(signal.SIGQUIT)

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(pr_set_pdeathsig, sigquit)

    return hook


class PostgresCluster:
    """initdb + postgres in a temp dir; `new_database()` hands out fresh empty databases."""

    def __init__(self, *, durable_commits: bool = False) -> None:
        # durable_commits: synchronous_commit=on, so a commit is acknowledged only once its WAL is
        # written — what a crash test of the server itself (kill -9, then recovery) needs
        self.durable_commits = durable_commits
        self.bindir = find_bindir()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise PostgresUnavailable("the tests run as root and PostgreSQL refuses to: they need the "
                                          "unprivileged `postgres` OS user (Debian's postgresql package makes it)") from None
        self.root = Path(tempfile.mkdtemp(prefix="gap-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen | None = None
        self._names = itertools.count(1)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="gap-pg-admin")

    def _subprocess_kwargs(self) -> dict:
        return {"user": self.user, "group": self.user} if self.user else {}

    def start(self) -> PostgresCluster:
        """initdb, then the server; on any failure nothing is left running or on disk."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PostgresCluster:
        self.socket_dir.mkdir()
        if self.user:
            shutil.chown(self.root, self.user, self.user)
            shutil.chown(self.socket_dir, self.user, self.user)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        init = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                               "-E", "UTF8", "--locale=C", "--no-sync"],
                              capture_output=True, text=True, env=env, cwd=self.root, **self._subprocess_kwargs())
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({init.returncode}): {init.stderr.strip()[-2000:]}")
        self._launch()
        return self._wait_ready()

    def _launch(self) -> None:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        with open(self.log, "ab") as log:
            if self.user:
                shutil.chown(self.log, self.user, self.user)
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(PORT), "-k", str(self.socket_dir),
                 "-c", "listen_addresses=", "-c", "fsync=off",
                 "-c", f"synchronous_commit={'on' if self.durable_commits else 'off'}",
                 "-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=64MB"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root, preexec_fn=_die_with_parent_hook(),
                **self._subprocess_kwargs())

    def crash_and_restart(self, down_seconds: float = 1.0) -> None:
        """kill -9 the postmaster and every backend, stay down a moment, start again: crash recovery
        replays the WAL (acknowledged commits survive a process crash; fsync=off only risks an OS crash)."""
        assert self.process is not None
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        self.process.kill()
        self.process.wait()
        for pid in children:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(down_seconds)
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        self._launch()
        self._wait_ready()

    def _wait_ready(self) -> "PostgresCluster":
        assert self.process is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                self._admin("SELECT 1")
                return self
            except Exception as exc:  # noqa: BLE001 - not accepting connections yet (asyncpg, OSError)
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise PostgresUnavailable(f"PostgreSQL did not start ({exc}); log:\n{self._log_tail()}") from exc
                time.sleep(0.1)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _admin(self, sql: str) -> None:
        """Run one statement as the superuser (CREATE DATABASE cannot run in a transaction,
        and the caller may be inside a running event loop: a fresh loop in our own thread)."""
        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(host=str(self.socket_dir), port=PORT, user=SUPERUSER, database="postgres",
                                         timeout=5)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        self._pool.submit(asyncio.run, go()).result()

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    def new_database(self) -> str:
        """A fresh, empty database's SQLAlchemy URL (no tables: migrate it like a new deployment)."""
        name = f"test_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint-free since fsync is off), then the temp dir."""
        self._pool.shutdown(wait=True)
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGQUIT)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
