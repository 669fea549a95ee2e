"""Alembic migrations: `gap db upgrade` from any directory, the schema equals
game/tables.py (on SQLite and PostgreSQL), and downgrade/upgrade round-trips."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.ext.asyncio import create_async_engine

import game.description_tables  # noqa: F401 - registers the describe round's tables on the metadata
import game.evaluation_tables  # noqa: F401 - registers the evaluation tables on the metadata
import game.duel_tables  # noqa: F401 - registers the duel tables on the metadata
from game.migrate import current_revision, downgrade, upgrade
from game.tables import metadata
from gap.cli import main


def stored_schema(url: str) -> tuple[dict[str, set[str]], dict[str, dict[str, bool]], list]:
    """Columns per table, {index name: unique} per table, and Alembic's autogenerate diff
    against game/tables.py (tables, columns, types, nullability, indexes, constraints)."""

    def read(conn) -> tuple[dict, dict, list]:
        inspector = inspect(conn)
        columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}
        indexes = {t: {i["name"]: bool(i["unique"]) for i in inspector.get_indexes(t)} for t in columns}
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        return columns, indexes, diff

    async def go() -> tuple[dict, dict, list]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_cli_upgrade_from_another_directory(tmp_path: Path, monkeypatch, capsys):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'gap.sqlite3'}"
    monkeypatch.setenv("GAP_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert "database at revision" in capsys.readouterr().out
    head = current_revision(url)
    assert head is not None
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'gap.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    assert main(["db", "upgrade"]) == 0  # idempotent
    assert current_revision(url) == head


@pytest.mark.both_backends
def test_cli_upgrade_creates_exactly_the_tables_schema(empty_db_url: str, monkeypatch, capsys):
    """`gap db upgrade` on an empty database (GAP_DATABASE_URL, the deployers' one setting)
    gives game/tables.py's columns and the partial unique indexes that keep workers correct."""
    monkeypatch.setenv("GAP_DATABASE_URL", empty_db_url)
    assert current_revision(empty_db_url) is None
    assert main(["db", "upgrade"]) == 0
    head = current_revision(empty_db_url)
    assert head is not None and f"database at revision {head}" in capsys.readouterr().out
    columns, indexes, diff = stored_schema(empty_db_url)
    assert diff == []
    assert set(columns) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    for table in metadata.sorted_tables:
        assert columns[table.name] == set(table.columns.keys()), table.name
    assert indexes["sessions"]["ux_sessions_one_playing"] is True
    assert indexes["answers"]["ux_answers_one_pending"] is True
    assert main(["db", "upgrade"]) == 0  # idempotent
    assert current_revision(empty_db_url) == head


@pytest.mark.both_backends
def test_downgrade_and_upgrade_round_trip(empty_db_url: str):
    upgrade(empty_db_url)
    head = current_revision(empty_db_url)
    downgrade(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    assert set(stored_schema(empty_db_url)[0]) == {"alembic_version"}
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head


@pytest.mark.both_backends
def test_simultaneous_upgrades_take_turns(empty_db_url: str):
    """Every `gap serve` migrates before serving, so web workers started together upgrade one
    fresh database at once: all must succeed (a lock file on SQLite, an advisory lock on
    PostgreSQL; without them the losers failed on duplicate tables, 3 of 3 runs on each backend).
    Real processes, as alembic's context is per process."""
    import os
    import subprocess
    import sys

    url = empty_db_url
    env = {**os.environ, "GAP_DATABASE_URL": url}
    command = [sys.executable, "-c", "import sys; from gap.cli import main; sys.exit(main(['db', 'upgrade']))"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    head = current_revision(url)
    assert head is not None and all(f"database at revision {head}" in out for out in outputs)
