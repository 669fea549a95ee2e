"""The `gap` command's streams (SPEC §4): stdout carries only the command's own
output, so it can be piped; log lines go to stderr, one JSON object each, and only
warnings unless `-v`. Run as a real subprocess, as an operator would."""
from __future__ import annotations

import json
import os
import subprocess
import sys


def _gap(*argv: str, db) -> subprocess.CompletedProcess:
    env = {**os.environ, "GAP_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    return subprocess.run([sys.executable, "-m", "gap.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=180)


def test_stdout_has_only_the_output_and_logs_wait_for_verbose(tmp_path):
    quiet = _gap("db", "upgrade", db=tmp_path / "quiet.sqlite3")
    assert quiet.returncode == 0, quiet.stderr
    assert len(quiet.stdout.splitlines()) == 1 and quiet.stdout.startswith("database at revision ")
    assert quiet.stderr == ""  # Alembic's INFO lines are not shown by default

    stats = _gap("images", "stats", db=tmp_path / "quiet.sqlite3")
    assert stats.returncode == 0 and "{" not in stats.stdout
    assert stats.stdout.splitlines() == ["images 0, reliable 0, playable 0",
                                         "no images yet: gap images generate N, or gap images import DIR"]
    assert stats.stderr == ""

    loud = _gap("-v", "db", "upgrade", db=tmp_path / "loud.sqlite3")
    assert loud.returncode == 0 and loud.stdout == quiet.stdout  # the same output, the logs elsewhere
    lines = [json.loads(line) for line in loud.stderr.splitlines()]  # valid JSON even for multi-line messages
    assert any(e["logger"].startswith("alembic") and e["level"] == "INFO" and "Running upgrade" in e["msg"]
               for e in lines)
