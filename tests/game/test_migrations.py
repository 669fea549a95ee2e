"""Alembic migrations: `gap db upgrade` from any directory, the schema equals
game/tables.py, and downgrade/upgrade round-trips."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from game.migrate import current_revision, downgrade, upgrade
from game.tables import metadata
from gap.cli import main


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
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            stored = {c["name"] for c in inspector.get_columns(table.name)}
            assert stored == set(table.columns.keys()), table.name
        names = {i["name"] for i in inspector.get_indexes("sessions")}
        assert "ux_sessions_one_playing" in names
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
    assert main(["db", "upgrade"]) == 0  # idempotent
    assert current_revision(url) == head


def test_downgrade_and_upgrade_round_trip(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite3'}"
    upgrade(url)
    head = current_revision(url)
    downgrade(url, "base")
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head
