"""GAP_DB_* tuning reaches the database through Settings and the composition root (SPEC §4:
nothing below gap/ reads the environment)."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from game.db import Database
from gap.app import open_database
from settings import load_settings


def _writer_synchronous(db: Database) -> int:
    with db._sync_write.connect() as conn:
        return conn.execute(text("PRAGMA synchronous")).scalar_one()


async def test_environment_knobs_reach_the_database(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GAP_DB_INLINE_READS", "0")
    monkeypatch.setenv("GAP_DB_SYNCHRONOUS", "normal")
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'tuned.sqlite3'}")
    assert (settings.db_inline_reads, settings.db_inline_writes, settings.db_synchronous) == (False, False, "NORMAL")
    db = open_database(settings)
    try:
        assert db.inline_reads is False and _writer_synchronous(db) == 1  # NORMAL
    finally:
        await db.dispose()


async def test_defaults_keep_durable_writes(tmp_path: Path, monkeypatch):
    for name in ("GAP_DB_INLINE_READS", "GAP_DB_INLINE_WRITES", "GAP_DB_SYNCHRONOUS"):
        monkeypatch.delenv(name, raising=False)
    db = open_database(load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'plain.sqlite3'}"))
    try:
        assert db.inline_reads is True and _writer_synchronous(db) == 2  # FULL
    finally:
        await db.dispose()


def test_a_bad_synchronous_value_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GAP_DB_SYNCHRONOUS", "FULL; DROP TABLE players")
    with pytest.raises(ValidationError, match="db_synchronous"):
        load_settings()
    with pytest.raises(ValueError, match="synchronous must be one of"):
        Database(f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}", synchronous="sometimes")
