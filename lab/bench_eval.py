"""`gap bench eval`: our evaluation vs crowd-kit's OneCoinDawidSkene on the same
1,000,000 verdicts, in the same run.

Two comparisons:
1. in memory — our sufficient-statistics EM on the verdict arrays vs
   `OneCoinDawidSkene().fit(DataFrame)` on the same verdicts;
2. stored — 1,000,000 answers written to a real migrated SQLite file; the real
   `gap evaluate` code path (`run_evaluation`: read, classify, count, fit, store)
   vs reading the same verdicts from that file with SQL + crowd-kit's fit.
   Then an incremental run after 1% new answers.

It prints times, the ratio (crowd-kit / ours; > 1 means we are faster) and the
Spearman correlation of the two player rankings (ours: Youden's J = s − f;
crowd-kit: one-coin skill) and of each against the true players.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from game.evaluation import TAINTED, UNTAINTED, Counts, EvalConfig, evaluate, spearman
from lab.synthetic_verdicts import synthetic_verdicts

QUESTIONS = {  # π-strata also split by question type, as in the real data
    0: "How many objects are there?", 1: "What color is the square?", 2: "Is there a red circle?",
    3: "Is the star on the left or the right?",
}


def _crowdkit_fit(task: np.ndarray, worker: np.ndarray, flagged: np.ndarray):
    import pandas as pd
    from crowdkit.aggregation import OneCoinDawidSkene

    df = pd.DataFrame({"task": task, "worker": worker, "label": np.where(flagged, "wrong", "correct")})
    return OneCoinDawidSkene(n_iter=100).fit(df)


def _write_db(url_path: Path, v, n_players: int, upto: int, start: int = 0) -> None:
    """Answers [start, upto) of the synthetic verdicts as real rows (one session per player)."""
    con = sqlite3.connect(url_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    now = 1_790_000_000_000
    if start == 0:
        con.executemany("INSERT INTO players (id, player_key, muted, created_at) VALUES (?, ?, 0, ?)",
                        [(p + 1, f"k{p}", now) for p in range(n_players)])
        con.executemany(
            "INSERT INTO images (id, opaque_id, pool, sha256, mime, content, width, height, complexity, reliable,"
            " created_at) VALUES (?, ?, 'bench', ?, 'image/png', x'00', 1, 1, ?, 0, ?)",
            [(i + 1, f"o{i}", f"h{i}", "simple" if i % 2 == 0 else "complex", now) for i in range(2000)])
        con.executemany("INSERT INTO sessions (id, player_id, status, current_index, created_at) "
                        "VALUES (?, ?, 'finished', 10, ?)", [(f"s{p}", p + 1, now) for p in range(n_players)])
    idx = np.arange(start, upto)
    image = 2 * (v.task[idx] % 1000) + v.group[idx] + 1
    si_rows = [(int(i) + 1, f"s{int(v.player[i])}", int(i), int(image[j]), int(v.kind[i] != UNTAINTED))
               for j, i in enumerate(idx)]
    con.executemany("INSERT INTO session_images (id, session_id, position, image_id, tainted) VALUES (?, ?, ?, ?, ?)",
                    si_rows)
    ans_rows = [(f"{int(i):012d}", f"s{int(v.player[i])}", int(i) + 1, int(v.player[i]) + 1, int(image[j]),
                 QUESTIONS[int(v.task[i]) % 4], int(v.kind[i] == TAINTED),
                 "wrong" if v.flagged[i] else "correct", "fix" if v.flagged[i] else None, now + int(i))
                for j, i in enumerate(idx)]
    con.executemany(
        "INSERT INTO answers (id, session_id, session_image_id, player_id, image_id, question, honest_answer,"
        " served_answer, tainted, model_id, latency_ms, verdict, correction, points, asked_at, judged_at)"
        " VALUES (?, ?, ?, ?, ?, ?, 'a', 'b', ?, 'bench', 1.0, ?, ?, 0, 0, ?)", ans_rows)
    con.commit()
    con.close()


def run(args: argparse.Namespace, settings) -> int:
    from game.db import Database
    from game.evaluation_store import SETTLE_MS, run_evaluation
    from game.evaluation_tables import player_estimates
    from game.migrate import upgrade
    from sqlalchemy import select

    n, P = args.answers, args.players
    v = synthetic_verdicts(n, P, seed=args.seed)
    true_j = v.true_s - v.true_f
    out: dict[str, object] = {"answers": n, "players": P}

    # 1. in memory
    t0 = time.perf_counter()
    res = evaluate(Counts.from_answers(v.player, v.kind, v.flagged, v.group, n_players=P, n_groups=2))
    ours_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    ck = _crowdkit_fit(v.task, v.player, v.flagged)
    ck_mem = time.perf_counter() - t0
    ck_skill = ck.skills_.reindex(range(P)).fillna(0.5).to_numpy()
    out["memory"] = {"ours_s": ours_mem, "crowdkit_s": ck_mem, "ratio": ck_mem / ours_mem,
                     "spearman_ours_vs_crowdkit": spearman(res.ability, ck_skill),
                     "spearman_ours_vs_truth": spearman(res.ability, true_j),
                     "spearman_crowdkit_vs_truth": spearman(ck_skill, true_j)}

    # 2. stored answers, the real `gap evaluate` code path
    if not args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.sqlite3"
            url = f"sqlite+aiosqlite:///{path}"
            upgrade(url)
            base = int(n * 0.99)
            t0 = time.perf_counter()
            _write_db(path, v, P, base)
            write_s = time.perf_counter() - t0

            async def ours(now_ms: int):
                db = Database(url)
                try:
                    t = time.perf_counter()
                    summary = await run_evaluation(db, EvalConfig(), now_ms=now_ms)
                    elapsed = time.perf_counter() - t
                    async with db.read() as conn:
                        rows = (await conn.execute(select(player_estimates.c.player_id, player_estimates.c.s_mean,
                                                          player_estimates.c.f_mean))).all()
                    return elapsed, summary, rows
                finally:
                    await db.dispose()

            # the first run sees answers [0, base): its cutoff (now − SETTLE_MS) is just below the next judged_at
            full_s, summary, rows = asyncio.run(ours(1_790_000_000_000 + base - 1 + SETTLE_MS))
            ours_j = np.zeros(P)
            for r in rows:
                ours_j[r.player_id - 1] = r.s_mean - r.f_mean
            t0 = time.perf_counter()
            con = sqlite3.connect(path)
            data = con.execute("SELECT id, player_id, verdict FROM answers").fetchall()
            con.close()
            ids = np.array([int(r[0]) for r in data])
            worker = np.array([r[1] - 1 for r in data])
            flagged = np.array([r[2] == "wrong" for r in data])
            ck2 = _crowdkit_fit(v.task[ids], worker, flagged)
            ck_db_s = time.perf_counter() - t0
            ck2_skill = ck2.skills_.reindex(range(P)).fillna(0.5).to_numpy()
            _write_db(path, v, P, n, start=base)
            inc_s, inc_summary, _ = asyncio.run(ours(1_790_000_000_000 + 2 * n + 20_000))
            out["stored"] = {"write_s": write_s, "answers": base, "ours_evaluate_s": full_s,
                             "crowdkit_read_and_fit_s": ck_db_s, "ratio": ck_db_s / full_s,
                             "spearman_ours_vs_crowdkit": spearman(ours_j, ck2_skill),
                             "incremental_new_answers": inc_summary.new_answers, "incremental_s": inc_s,
                             "exportable_finds": summary.exportable}
    if args.json:
        print(json.dumps(out))
    else:
        m = out["memory"]
        print(f"gap bench eval: {n:,} answers, {P:,} players (20% random flaggers)")
        print(f"  in memory: ours {m['ours_s']:.3f} s, crowd-kit OneCoinDawidSkene {m['crowdkit_s']:.2f} s "
              f"→ ours is {m['ratio']:.1f}× faster")
        print(f"  Spearman of player rankings ours vs crowd-kit {m['spearman_ours_vs_crowdkit']:.3f}; vs truth: "
              f"ours {m['spearman_ours_vs_truth']:.3f}, crowd-kit {m['spearman_crowdkit_vs_truth']:.3f}")
        if "stored" in out:
            s = out["stored"]
            print(f"  stored ({s['answers']:,} answers in SQLite): gap evaluate {s['ours_evaluate_s']:.2f} s, "
                  f"SQL read + crowd-kit {s['crowdkit_read_and_fit_s']:.2f} s → ratio {s['ratio']:.2f}; "
                  f"Spearman {s['spearman_ours_vs_crowdkit']:.3f}")
            print(f"  incremental: {s['incremental_new_answers']:,} new answers evaluated in {s['incremental_s']:.2f} s")
    return 0
