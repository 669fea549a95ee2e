"""`gap model promote` / `gap model rounds` as an operator runs them (SPEC §3.2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _gap(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GAP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gap.sqlite3'}"}
    return subprocess.run([sys.executable, "-m", "gap.cli", "model", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_promote_checks_the_model_then_records_a_round(tmp_path: Path):
    bad = _gap(tmp_path, "promote", str(tmp_path / "missing-adapter"))
    assert bad.returncode == 1 and "does not load" in bad.stderr and bad.stdout == ""
    good = _gap(tmp_path, "promote", "fake:2")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("round 1: fake-fixed-latency-2ms (fake:2) promoted")
    report = _gap(tmp_path, "rounds", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert [(r["number"], r["spec"], r["promoted_by"]) for r in data["rounds"]] == [(1, "fake:2", "cli")]
    assert data["models"] == [] and data["theta"] == 0.8
