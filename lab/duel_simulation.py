"""Simulated duellers over the real HTTP API (SPEC §3.4): proof that the GameLabel rules do
what they claim.

Four kinds of players play batches through `/api/duels` exactly like the page does
(signed initData, request ids, waiting out the `wait_ms` the server reports):

- careful: picks the right side with probability 0.97 on unambiguous pairs and 0.9 on
  near misses;
- sloppy: 0.7, and one tap in five comes too fast (refused and counted by the server,
  then retried after the wait);
- random: a fair coin;
- always-left: always the left side.

A player "sees" a duel through its ground truth: the simulator maps the duel's id to the
side that is right, as it would read a scene graph — it never reads the gold flag, the
player's record or the removal state (those come back from the API). Each plays
`batches` batches (random and always-left players keep coming back, up to 40) or until
removed, in rounds that mix every kind (`simulate`): were the players let in in a fixed
order, the last duels would be judged by the last kinds alone. The report compares,
against the truth of the procedural duels, accuracy-weighted labels with majority vote
(over all duels and over those with 3 or more labels), and gives per kind the removals,
points (in total and per batch), the measured accuracy on gold and the refused taps.
"""
from __future__ import annotations

import asyncio
import random
import sqlite3
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from game import duel_rules as R
from game.db import Database
from game.duel_export import load_choices, majority_labels, weighted_labels
from game.duels_stats import duel_summary
from webapp.auth import sign_init_data

KINDS = ("careful", "sloppy", "random", "always-left")


@dataclass(frozen=True)
class Dueller:
    telegram_id: int
    kind: str


def population(counts: dict[str, int], first_id: int = 7_000_000) -> list[Dueller]:
    out, next_id = [], first_id
    for kind in KINDS:
        for _ in range(counts.get(kind, 0)):
            out.append(Dueller(next_id, kind))
            next_id += 1
    return out


class Eyes:
    """The right displayed side of a duel, from the database file (the simulator's view of
    the pictures); None when the duel has no ground truth."""

    def __init__(self, sqlite_path: Path) -> None:
        self.con = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True, timeout=30, check_same_thread=False)

    def right_side(self, item_id: str) -> tuple[str | None, bool]:
        row = self.con.execute("SELECT i.swapped, p.truth, p.source FROM duel_items i JOIN duel_pairs p "
                               "ON p.id = i.pair_id WHERE i.id = ?", (item_id,)).fetchone()
        if row is None or row[1] is None:
            return None, False
        swapped, truth, source = row
        near = source not in ("gold",)
        return ("left" if (truth == "a") != bool(swapped) else "right"), near

    def close(self) -> None:
        self.con.close()


def decide(kind: str, right: str | None, near: bool, rng: random.Random) -> str:
    if kind == "always-left":
        return "left"
    if right is None or kind == "random":
        return rng.choice(R.CHOICES)
    p = (0.9 if near else 0.97) if kind == "careful" else 0.7
    wrong = "right" if right == "left" else "left"
    return right if rng.random() < p else wrong


async def _call(http: aiohttp.ClientSession, method: str, url: str, auth: str, body: dict | None = None):
    async with http.request(method, url, json=body, headers={"Authorization": f"tma {auth}"}) as resp:
        return resp.status, await resp.json()


PERSISTENT = ("random", "always-left")   # bad players keep coming back until the game stops them


@dataclass
class Tally:
    """What the API told one player so far."""

    player: Dueller
    auth: str
    rng: random.Random
    batches_wanted: int
    points: int = 0
    refused: int = 0
    checks: int = 0
    checks_right: int = 0
    played: int = 0
    removed: bool = False

    @property
    def done(self) -> bool:
        return self.removed or self.played >= self.batches_wanted

    def row(self) -> dict[str, Any]:
        return {"kind": self.player.kind, "telegram_id": self.player.telegram_id, "points": self.points,
                "removed": self.removed, "refused": self.refused, "checks": self.checks,
                "checks_right": self.checks_right, "batches": self.played}


async def start_batch(http: aiohttp.ClientSession, base: str, t: Tally) -> dict[str, Any] | None:
    """Open the player's next batch like the page does; None when the game removed them."""
    status, state = await _call(http, "POST", f"{base}/api/duels", t.auth)
    for wait in (0.1, 0.2, 0.5, 1.0, 2.0, 4.0):  # 503: the stock is being refilled; try again in a moment
        if status != 503:
            break
        await asyncio.sleep(wait)
        status, state = await _call(http, "POST", f"{base}/api/duels", t.auth)
    if status == 409 and state["error"]["code"] == "removed":
        t.removed = True
        return None
    if status != 200:
        raise RuntimeError(f"start: {status} {state}")
    return state


async def play_batch(http: aiohttp.ClientSession, base: str, t: Tally, state: dict[str, Any], eyes: Eyes) -> None:
    """Choose on every duel of the open batch (waiting out `wait_ms`, except a sloppy
    player's too-quick taps) and add the batch's result to the tally."""
    kind = t.player.kind
    while state["status"] == "playing":
        item = state["item"]
        right, near = await asyncio.to_thread(eyes.right_side, item["item_id"])
        pick = decide(kind, right, near, t.rng)
        too_quick = kind == "sloppy" and t.rng.random() < 0.2
        if not too_quick:
            await asyncio.sleep(item["wait_ms"] / 1000 + 0.005)
        body = {"request_id": uuid.uuid4().hex, "choice": pick}
        url = f"{base}/api/duels/items/{item['item_id']}/choice"
        status, got = await _call(http, "POST", url, t.auth, body)
        if status == 409 and got["error"]["code"] == "too_fast":
            t.refused += 1
            await asyncio.sleep(item["wait_ms"] / 1000 + 0.01)
            status, got = await _call(http, "POST", url, t.auth, body)
        if status != 200:
            raise RuntimeError(f"choice: {status} {got}")
        state = got
    t.played += 1
    if state.get("result"):
        t.points += int(state["result"]["points"])
        t.checks += int(state["result"]["checks"])
        t.checks_right += int(state["result"]["checks_right"])
    if state["status"] == "removed":
        t.removed = True


async def simulate(base: str, token: str, db_url: str, sqlite_path: Path, counts: dict[str, int], *,
                   batches: int = 15, seed: int = 0, concurrency: int = 16,
                   persist_batches: int = 40) -> dict[str, Any]:
    """Play everyone in rounds and return the report.

    A round opens one batch for every player still playing, one after another in a seeded
    order, then plays those batches at once (at most `concurrency` players at a time).
    Opening a batch is the only step where players meet — it picks pairs by how many others
    were given them and draws the server's randomness — so with a seeded server the whole
    run, and its report, is the same for the same seed however the concurrent taps
    interleave. Random and always-left players want up to `persist_batches` batches."""
    players = population(counts)
    tallies = [Tally(p, sign_init_data(token, {"id": p.telegram_id, "first_name": f"sim {p.kind}"}),
                     random.Random(f"{seed}:{p.telegram_id}"),
                     max(batches, persist_batches) if p.kind in PERSISTENT else batches) for p in players]
    order = random.Random(f"{seed}:order")
    eyes = Eyes(sqlite_path)
    gate = asyncio.Semaphore(concurrency)
    try:
        async with aiohttp.ClientSession() as http:
            async def one(t: Tally, state: dict[str, Any]) -> None:
                async with gate:
                    await play_batch(http, base, t, state, eyes)

            while playing := [t for t in tallies if not t.done]:
                order.shuffle(playing)
                opened = []
                for t in playing:
                    state = await start_batch(http, base, t)
                    if state is not None:
                        opened.append((t, state))
                await asyncio.gather(*(one(t, s) for t, s in opened))
    finally:
        eyes.close()
    return await report([t.row() for t in tallies], db_url)


async def report(results: list[dict[str, Any]], db_url: str) -> dict[str, Any]:
    """Per kind: removals, points, refused taps and the accuracy on gold the game measured;
    overall: weighted vs majority labels against the truth of the procedural duels."""
    db = Database(db_url)
    try:
        choices, records = await load_choices(db)
        stats = await duel_summary(db)
    finally:
        await db.dispose()
    truth = {c.pair_id: c.truth for c in choices if not c.gold and c.truth is not None}
    weighted = {p: s for p, (s, _) in weighted_labels(choices, records).items() if p in truth}
    majority = {p: s for p, s in majority_labels(choices).items() if p in truth}

    labels = Counter(c.pair_id for c in choices if not c.gold)

    def agreement(aggregate: dict[int, str], least: int = 1) -> float:
        # an undecided duel (a tie, or only zero-weight labels) counts as a coin flip, so
        # both aggregations are scored on the same duels
        pairs = [p for p in truth if labels[p] >= least]
        if not pairs:
            return float("nan")
        return sum(1.0 if aggregate.get(p) == truth[p] else 0.5 if p not in aggregate else 0.0
                   for p in pairs) / len(pairs)

    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_kind[r["kind"]].append(r)
    kinds = {}
    for kind, rs in by_kind.items():
        checks, played = sum(r["checks"] for r in rs), sum(r["batches"] for r in rs)
        kinds[kind] = {"players": len(rs), "removed_share": round(sum(r["removed"] for r in rs) / len(rs), 3),
                       "mean_points": round(sum(r["points"] for r in rs) / len(rs), 1),
                       "points_per_batch": round(sum(r["points"] for r in rs) / played, 1) if played else None,
                       "too_fast_refused": sum(r["refused"] for r in rs),
                       "gold_accuracy": round(sum(r["checks_right"] for r in rs) / checks, 3) if checks else None,
                       "mean_batches": round(played / len(rs), 1)}
    # weighting can only beat a vote where several labels disagree: scored apart on duels with 3+ labels
    several = {"duels": sum(1 for p in truth if labels[p] >= 3),
               "weighted_agreement": round(agreement(weighted, 3), 4),
               "majority_agreement": round(agreement(majority, 3), 4)}
    return {"duels_with_truth": len(truth), "weighted_agreement": round(agreement(weighted), 4),
            "majority_agreement": round(agreement(majority), 4), "three_or_more_labels": several,
            "labels_per_duel": dict(sorted(Counter(labels[p] for p in truth).items())), "kinds": kinds,
            "stats": stats}
