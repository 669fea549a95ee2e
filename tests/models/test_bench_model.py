"""`gap bench model` runs end to end on the embedded checkpoint and reports every number of
benchmarks/README.md's model section (values are timings: only their presence and sanity are checked here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_model_reports_every_measurement(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "gap.cli", "bench", "model", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["load_s"] > 0 and report["single_p99_ms"] >= report["single_p50_ms"] > 0
    for key in ("concurrent_16", "concurrent_64", "concurrent_16_new_images"):
        entry = report[key]
        assert entry["batched_qps"] > 0 and entry["one_by_one_plain_generate_qps"] > 0 and entry["speedup"] > 0
    assert report["honest_median_ms"] > 0 and report["tainted_over_honest"] > 0
    assert report["loop_lag_max_ms"] >= report["loop_lag_p50_ms"] >= 0
    assert sum(report["batch_sizes"].values()) > 0 and max(map(int, report["batch_sizes"])) > 1
