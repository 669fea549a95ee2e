"""Statistics of preference duels (SPEC §3.4) for operators: players, accuracy on hidden gold,
removals, refused too-fast choices and the time per duel — GameLabel's own future work
asked for time-per-item statistics, to set the minimum time from data."""
from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select

from game import duel_rules as R
from game import duel_store as S
from game.db import Database
from game.duel_tables import duel_batches, duel_items, duel_pairs


def _times(conn) -> dict[str, list[int]]:
    rows = conn.execute(select(duel_pairs.c.kind, duel_items.c.elapsed_ms)
                        .join(duel_pairs, duel_pairs.c.id == duel_items.c.pair_id)
                        .where(duel_items.c.choice.is_not(None))).all()
    out: dict[str, list[int]] = {}
    for kind, ms in rows:
        out.setdefault(kind, []).append(int(ms))
    return out


def _counts(conn) -> dict[str, int]:
    batches = conn.execute(select(func.count()).select_from(duel_batches)
                           .where(duel_batches.c.status == "finished")).scalar_one()
    pairs = conn.execute(select(func.count()).select_from(duel_pairs)).scalar_one()
    return {"finished_batches": int(batches), "pairs": int(pairs)}


def time_summary(ms: list[int]) -> dict[str, Any]:
    """Quartiles and the 10th/90th percentile of the time per duel, in seconds."""
    if not ms:
        return {"n": 0}
    p = np.percentile(np.asarray(ms) / 1000.0, [10, 25, 50, 75, 90])
    return {"n": len(ms), "p10": round(float(p[0]), 2), "p25": round(float(p[1]), 2), "median": round(float(p[2]), 2),
            "p75": round(float(p[3]), 2), "p90": round(float(p[4]), 2)}


async def duel_summary(db: Database) -> dict[str, Any]:
    """Numbers for `gap duels stats` and the admin's /stats."""
    players = await db.run_read(S.tx_player_stats)
    times = await db.run_read(_times)
    counts = await db.run_read(_counts)
    accs = [R.mean_accuracy(R.GoldRecord(p["correct"], p["wrong"])) for p in players if p["correct"] + p["wrong"]]
    return {
        "players": len(players),
        "removed": sum(p["removed"] for p in players),
        "choices": sum(p["chosen"] for p in players),
        "too_fast_refused": sum(p["too_fast"] for p in players),
        "gold_answers": sum(p["correct"] + p["wrong"] for p in players),
        "mean_player_accuracy": round(float(np.mean(accs)), 3) if accs else None,
        "seconds_per_duel": {kind: time_summary(ms) for kind, ms in sorted(times.items())},
        **counts,
    }


async def duel_seconds(db: Database) -> list[float]:
    """Every chosen duel's time in seconds (the admin's histogram)."""
    times = await db.run_read(_times)
    return [ms / 1000.0 for values in times.values() for ms in values]
