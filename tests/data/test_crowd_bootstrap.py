"""lab/crowd_bootstrap.py: simulated players through the real game core make unannotated
photos reliable from their verdicts, and the report counts the verdicts it took."""
from __future__ import annotations

from pathlib import Path

from lab.crowd_bootstrap import BootstrapConfig, report_md, run


async def test_a_small_crowd_measures_photos_into_the_reliable_pool(tmp_path: Path):
    cfg = BootstrapConfig(photos=12, declared=5, players=6, max_sessions=20, evaluate_every=10, target=50,
                          crowd_threshold=0.6, seed=1)
    result = await run(cfg, f"sqlite+aiosqlite:///{tmp_path / 'bootstrap.sqlite3'}")
    first, last = result["timeline"]
    assert (first["sessions"], last["sessions"]) == (10, 20) and 0 < first["verdicts"] < last["verdicts"]
    assert first["reliable"] >= cfg.declared and last["crowd_reliable"] >= 1
    assert last["reliable"] == cfg.declared + last["crowd_reliable"]
    assert "crowd_reliable>=5" in result["reached"] or last["crowd_reliable"] < 5
    assert f"| 20 | {last['verdicts']} |" in report_md(result)
