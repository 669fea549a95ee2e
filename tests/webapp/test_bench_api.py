"""`gap bench api --model-server` end to end with a handful of players: the servers start
(the game also with its model in a separate `gap model serve` process, reached as
GAP_MODEL=openai:), every simulated session finishes, and the report has the promised fields.
(No timing assertion: the numbers themselves are for benchmarks/README.md.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_api_small_run(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "gap.cli", "bench", "api", "--players", "10",
                           "--model-latency-ms", "1", "--model-server", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    for side in ("bare", "game", "split"):
        assert report[side]["requests"] == 10 * 41 and report[side]["errors"] == 0
        assert report[side]["rps"] > 0 and report[side]["p99_ms"] >= report[side]["p50_ms"] > 0
        assert report[side]["server_cpu_us_per_request"] > 0
    assert report["ratio"] > 0 and report["cpu_ratio"] > 0 and report["split_ratio"] > 0
    assert report["split"]["model_worker_cpu_s"] > 0  # the model worker answered every question
