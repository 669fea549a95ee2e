"""All SQL of preference duels (SPEC §3.4): synchronous `fn(conn, ...)` transactions for
`Database.run_read` / `run_write`, in plain Core so they run on SQLite and PostgreSQL.
The service (game/duels.py) composes them with the rules of game/duel_rules.py; they
return plain data, never URLs (the web layer makes those from opaque ids)."""
from __future__ import annotations

import json
import random
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, not_, select, update

from game import duel_rules as R
from game import storage as q
from game.duel_stock import judgments
from game.duel_tables import duel_batches, duel_images, duel_items, duel_pairs, duel_players
from game.errors import Conflict, NotFound
from game.tables import images, points_ledger, requests

REQUEST_KIND = "duel_choice"
POINTS_REASON = "duel_batch"
ITEM_ID_MAX = 64
P, I, B = duel_pairs, duel_items, duel_batches


# ---------------------------------------------------------------------- standing

def gold_record(conn, player_id: int) -> R.GoldRecord:
    row = conn.execute(select(func.coalesce(func.sum(case((I.c.correct.is_(True), 1), else_=0)), 0),
                              func.coalesce(func.sum(case((I.c.correct.is_(False), 1), else_=0)), 0))
                       .where(I.c.player_id == player_id)).one()
    return R.GoldRecord(int(row[0]), int(row[1]))


def standing(conn, player_id: int) -> dict[str, Any]:
    row = conn.execute(select(duel_players).where(duel_players.c.player_id == player_id)).first()
    return {"removed": bool(row is not None and row.removed_at is not None),
            "tutorial_done": bool(row is not None and row.tutorial_done_at is not None)}


def tx_mark_tutorial(conn, player_id: int, now: int) -> None:
    """The tutorial was seen (idempotent: the first time is kept)."""
    row = conn.execute(select(duel_players.c.player_id).where(duel_players.c.player_id == player_id)).first()
    if row is None:
        conn.execute(insert(duel_players).values(player_id=player_id, tutorial_done_at=now))
    else:
        conn.execute(update(duel_players).where(and_(duel_players.c.player_id == player_id,
                                                     duel_players.c.tutorial_done_at.is_(None)))
                     .values(tutorial_done_at=now))


def _remove(conn, player_id: int, now: int) -> None:
    if conn.execute(select(duel_players.c.player_id).where(duel_players.c.player_id == player_id)).first() is None:
        conn.execute(insert(duel_players).values(player_id=player_id, removed_at=now))
    else:
        conn.execute(update(duel_players).where(and_(duel_players.c.player_id == player_id,
                                                     duel_players.c.removed_at.is_(None))).values(removed_at=now))


# ---------------------------------------------------------------------- batches

def open_batch(conn, player_id: int):
    return conn.execute(select(B).where(and_(B.c.player_id == player_id, B.c.status == "playing"))).first()


def _pick(conn, player_id: int, gold: bool, kind: str, count: int, redundancy: int, rng: random.Random) -> list[int]:
    if count <= 0:
        return []
    judged = judgments()
    n = func.coalesce(judged.c.n, 0)
    seen = exists().where(and_(I.c.pair_id == P.c.id, I.c.player_id == player_id))
    query = (select(P.c.id, n.label("n")).select_from(P.outerjoin(judged, judged.c.pair_id == P.c.id))
             .where(and_(P.c.gold.is_(gold), P.c.kind == kind, not_(seen))))
    if not gold:
        query = query.where(n < redundancy)
    rows = conn.execute(query.order_by(n.desc() if not gold else P.c.id, P.c.id).limit(200)).all()
    if gold:
        ids = [r.id for r in rows]
        return rng.sample(ids, min(count, len(ids)))
    # pairs closest to their redundancy first, so each pair gets its several players soon
    return [r.id for r in rows[:count]]


def tx_start_batch(conn, player_id: int, now: int, batch_id: str, item_ids: list[str], kinds: list[str],
                   gold_flags: list[bool], redundancy: int, rng: random.Random) -> str | None:
    """Create the player's open batch (one at a time): the slots' kinds and gold flags are
    drawn by the service from the rules; pairs the player has not seen are chosen here.
    Returns the open batch id, or None when the stock cannot fill a batch."""
    existing = open_batch(conn, player_id)
    if existing is not None:
        return existing.id
    chosen: list[int] = []
    for kind in sorted(set(kinds)):
        for gold in (True, False):
            want = sum(1 for k, g in zip(kinds, gold_flags) if k == kind and g == gold)
            got = _pick(conn, player_id, gold, kind, want, redundancy, rng)
            if len(got) < want:
                return None
            chosen += got
    rng.shuffle(chosen)
    conn.execute(insert(B).values(id=batch_id, player_id=player_id, status="playing", current_index=0,
                                  created_at=now))
    conn.execute(insert(I), [{"id": item_ids[i], "batch_id": batch_id, "player_id": player_id, "position": i,
                              "pair_id": pair_id, "swapped": R.arrange(rng), "shown_at": now if i == 0 else None,
                              "too_fast": 0} for i, pair_id in enumerate(chosen)])
    return batch_id


_ITEM_COLUMNS = (I.c.id, I.c.batch_id, I.c.position, I.c.swapped, I.c.shown_at, I.c.choice, I.c.player_id,
                 I.c.pair_id, P.c.kind, P.c.prompt, P.c.gold, P.c.a_text, P.c.b_text, P.c.image_id)
A_IMG, B_IMG = duel_images.alias("a_img"), duel_images.alias("b_img")


def _item_payload(conn, batch, now: int, min_seconds: float) -> dict[str, Any] | None:
    """The current duel as the client sees it: no field tells gold from other duels."""
    row = conn.execute(select(*_ITEM_COLUMNS, A_IMG.c.opaque_id.label("a_opaque"), B_IMG.c.opaque_id.label("b_opaque"),
                              images.c.opaque_id.label("image_opaque"))
                       .select_from(I.join(P, P.c.id == I.c.pair_id)
                                    .outerjoin(A_IMG, A_IMG.c.id == P.c.a_image_id)
                                    .outerjoin(B_IMG, B_IMG.c.id == P.c.b_image_id)
                                    .outerjoin(images, images.c.id == P.c.image_id))
                       .where(and_(I.c.batch_id == batch.id, I.c.position == batch.current_index))).first()
    if row is None:
        return None
    if row.kind == "caption":
        sides = [{"duel_image": row.a_opaque}, {"duel_image": row.b_opaque}]
    else:
        sides = [{"text": row.a_text}, {"text": row.b_text}]
    if row.swapped:
        sides.reverse()
    wait_ms = max(0, row.shown_at + int(round(min_seconds * 1000)) - now) if row.shown_at is not None else 0
    return {"item_id": row.id, "index": row.position, "total": R.BATCH_SIZE, "kind": row.kind,
            "prompt": row.prompt, "image": row.image_opaque, "left": sides[0], "right": sides[1],
            "min_seconds": min_seconds, "wait_ms": wait_ms}


def batch_state(conn, player_id: int, batch_id: str | None, now: int, min_seconds: float) -> dict[str, Any]:
    """`{"status": "playing", "batch_id", "item", ...}` for the open batch, or "finished" with
    the result, or "removed"; plus the player's tutorial flag."""
    info = standing(conn, player_id)
    state: dict[str, Any] = {"status": "idle", "batch_id": None, "item": None, "result": None,
                             "tutorial_done": info["tutorial_done"], "now_ms": now}
    if info["removed"]:
        state.update(status="removed", message=R.REMOVAL_MESSAGE)
    batch = None
    if batch_id is not None:
        batch = conn.execute(select(B).where(and_(B.c.id == batch_id, B.c.player_id == player_id))).first()
    elif not info["removed"]:
        batch = open_batch(conn, player_id)
    if batch is None:
        return state
    state["batch_id"] = batch.id
    if batch.status == "playing" and not info["removed"]:
        state.update(status="playing", item=_item_payload(conn, batch, now, min_seconds))
    elif batch.status == "finished":
        state["result"] = batch_result(conn, player_id, batch)
        if not info["removed"]:
            state["status"] = "finished"
    return state


def batch_result(conn, player_id: int, batch) -> dict[str, Any]:
    """The end-of-batch result: points, and the accuracy on the batch's checks (not which
    duels they were)."""
    rows = conn.execute(select(I.c.correct, I.c.elapsed_ms).where(I.c.batch_id == batch.id)).all()
    checks = [r.correct for r in rows if r.correct is not None]
    record = gold_record(conn, player_id)
    return {"points": int(batch.points or 0), "checks": len(checks), "checks_right": sum(1 for c in checks if c),
            "accuracy": round(R.mean_accuracy(record), 3), "duels": len(rows)}


def _replay(conn, player_id: int, request_id: str) -> dict[str, Any] | None:
    row = q.first(conn.execute(select(requests.c.kind, requests.c.response_json).where(and_(
        requests.c.player_id == player_id, requests.c.request_id == request_id))).all())
    if row is None:
        return None
    if row.kind != REQUEST_KIND:
        raise Conflict("this request_id was already used for another request")
    return json.loads(row.response_json)


class Removed(Conflict):
    """The player was removed from duels for good (SPEC §3.4). Maps to 409."""

    code = "removed"


class TooFast(Conflict):
    """A choice came before the minimum time per duel; refused and counted. Maps to 409."""

    code = "too_fast"


def tx_choose(conn, player_id: int, item_id: str, request_id: str, choice: str, now: int,
              min_seconds: float) -> dict[str, Any]:
    """Store one choice (idempotent on request_id): the current duel of the player's open
    batch only. Too fast: the refusal is counted and `{"_too_fast": wait_ms}` returned (the
    service raises after commit, so the count is kept). The last duel of a batch finishes
    it: points by accuracy go to the ledger, and the removal rule is applied."""
    replay = _replay(conn, player_id, request_id)
    if replay is not None:
        return replay
    row = conn.execute(select(*_ITEM_COLUMNS, B.c.status, B.c.current_index, P.c.truth)
                       .select_from(I.join(P, P.c.id == I.c.pair_id).join(B, B.c.id == I.c.batch_id))
                       .where(and_(I.c.id == item_id, I.c.player_id == player_id))).first()
    if row is None:
        raise NotFound("no such duel")
    if standing(conn, player_id)["removed"]:
        raise Removed(R.REMOVAL_MESSAGE)
    if row.choice is not None:
        raise Conflict("you have already chosen on this duel")
    if row.status != "playing" or row.current_index != row.position:
        raise Conflict("this duel is not the current one of your batch")
    if not R.check_min_time(row.shown_at, now, min_seconds):
        conn.execute(update(I).where(I.c.id == item_id).values(too_fast=I.c.too_fast + 1))
        return {"_too_fast": row.shown_at + int(round(min_seconds * 1000)) - now}
    side = R.side_to_canonical(choice, bool(row.swapped))
    correct = (side == "a") if row.gold else None
    changed = conn.execute(update(I).where(and_(I.c.id == item_id, I.c.choice.is_(None))).values(
        choice=side, chosen_at=now, correct=correct, elapsed_ms=now - row.shown_at)).rowcount
    if changed != 1:
        raise Conflict("you have already chosen on this duel")
    nxt = row.position + 1
    moved = conn.execute(update(B).where(and_(B.c.id == row.batch_id, B.c.current_index == row.position,
                                              B.c.status == "playing"))
                         .values(current_index=nxt)).rowcount
    if moved != 1:
        raise Conflict("a concurrent request changed this batch; reload")
    total = conn.execute(select(func.count()).where(I.c.batch_id == row.batch_id)).scalar_one()
    if nxt < total:
        conn.execute(update(I).where(and_(I.c.batch_id == row.batch_id, I.c.position == nxt)).values(shown_at=now))
    else:
        _finish(conn, player_id, row.batch_id, total, now)
    response = {"recorded": True, "item_id": item_id, "choice": choice, "batch_id": row.batch_id}
    q.store_request(conn, player_id, request_id, REQUEST_KIND, response, now)
    return response


def _finish(conn, player_id: int, batch_id: str, duels: int, now: int) -> None:
    record = gold_record(conn, player_id)
    points = R.batch_points(record, duels)
    conn.execute(update(B).where(B.c.id == batch_id).values(status="finished", finished_at=now, points=points))
    if points:
        conn.execute(insert(points_ledger).values(player_id=player_id, answer_id=None, reason=POINTS_REASON,
                                                  points=points, created_at=now))
    if R.should_remove(record):
        _remove(conn, player_id, now)


def clean_item_id(value: object) -> str:
    """An opaque duel id; malformed ids are simply unknown (404), like forged ones."""
    if not isinstance(value, str) or not value or len(value) > ITEM_ID_MAX or not value.isalnum():
        raise NotFound("no such duel")
    return value


def tx_player_stats(conn) -> list[dict[str, Any]]:
    """Per player: gold record, duels chosen, refused too-fast choices, median time per duel
    and removal (for the admin's statistics and the simulation's report)."""
    rows = conn.execute(select(I.c.player_id, I.c.correct, I.c.elapsed_ms, I.c.too_fast, I.c.choice)
                        .order_by(I.c.player_id)).all()
    removed = {r.player_id for r in conn.execute(select(duel_players.c.player_id)
                                                  .where(duel_players.c.removed_at.is_not(None))).all()}
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        s = out.setdefault(r.player_id, {"player_id": r.player_id, "correct": 0, "wrong": 0, "chosen": 0,
                                         "too_fast": 0, "times": [], "removed": r.player_id in removed})
        s["too_fast"] += int(r.too_fast)
        if r.choice is not None:
            s["chosen"] += 1
            s["times"].append(int(r.elapsed_ms))
        if r.correct is not None:
            s["correct" if r.correct else "wrong"] += 1
    for s in out.values():
        times = sorted(s.pop("times"))
        s["median_ms"] = times[len(times) // 2] if times else None
    return list(out.values())


def tx_image(conn, opaque_id: str) -> tuple[str, bytes] | None:
    row = conn.execute(select(duel_images.c.mime, duel_images.c.content)
                       .where(duel_images.c.opaque_id == opaque_id)).first()
    return None if row is None else (row.mime, bytes(row.content))

