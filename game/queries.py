"""The game's SQL, defined once in SQLAlchemy Core, and the plain read/write
transactions that need no game logic. The service (game/service.py) composes
them; `fast` (game/db.py) runs the hot ones compiled once on SQLite."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update

from game.db import fast
from game.errors import Conflict, NotFound
from game.tables import answers, images, players, points_ledger, requests, session_images, sessions

ACTIVE = select(sessions).where(and_(sessions.c.player_id == bindparam("pid"), sessions.c.status == "playing"))
SESSION = select(sessions).where(and_(sessions.c.id == bindparam("sid"), sessions.c.player_id == bindparam("pid")))
CURRENT_SI = select(session_images).where(and_(session_images.c.session_id == bindparam("sid"),
                                               session_images.c.position == bindparam("pos")))
OPAQUE_ID = select(images.c.opaque_id).where(images.c.id == bindparam("image_id"))
IMAGE_ANSWERS = (select(answers.c.id, answers.c.question, answers.c.served_answer, answers.c.verdict)
                 .where(answers.c.session_image_id == bindparam("si")).order_by(answers.c.asked_at, answers.c.id))
NEXT_SI = session_images.alias("next_si")
VERDICT_CONTEXT = (
    select(answers.c.id, answers.c.verdict, answers.c.tainted, answers.c.session_id, answers.c.session_image_id,
           session_images.c.position, session_images.c.tainted.label("image_tainted"), session_images.c.deadline_at,
           session_images.c.ended_at, session_images.c.image_id, sessions.c.status, sessions.c.current_index,
           NEXT_SI.c.id.label("next_si"), NEXT_SI.c.image_id.label("next_image_id"))
    .join(session_images, session_images.c.id == answers.c.session_image_id)
    .join(sessions, sessions.c.id == answers.c.session_id)
    .outerjoin(NEXT_SI, and_(NEXT_SI.c.session_id == answers.c.session_id,
                              NEXT_SI.c.position == session_images.c.position + 1))
    .where(and_(answers.c.id == bindparam("aid"), answers.c.player_id == bindparam("pid"))))
PENDING_OF_CURRENT = (select(answers.c.id).where(and_(answers.c.session_image_id == session_images.c.id,
                                                      answers.c.verdict.is_(None))).limit(1).scalar_subquery())
ASK_CONTEXT = (
    select(sessions.c.status, sessions.c.current_index, session_images.c.id.label("si_id"), session_images.c.image_id,
           session_images.c.tainted, session_images.c.deadline_at, PENDING_OF_CURRENT.label("pending"))
    .select_from(sessions.outerjoin(session_images, and_(session_images.c.session_id == sessions.c.id,
                                                         session_images.c.position == sessions.c.current_index)))
    .where(and_(sessions.c.id == bindparam("sid"), sessions.c.player_id == bindparam("pid"))))
JUDGE = (update(answers).where(and_(answers.c.id == bindparam("aid"), answers.c.verdict.is_(None)))
         .values(verdict=bindparam("verdict"), correction=bindparam("correction"), points=bindparam("points"),
                 judged_at=bindparam("now")))
LEDGER = insert(points_ledger)
END_IMAGE = (update(session_images).where(and_(session_images.c.id == bindparam("si"),
                                               session_images.c.ended_at.is_(None)))
             .values(ended_at=bindparam("now"), end_reason=bindparam("reason")))
SERVE = (update(session_images).where(and_(session_images.c.id == bindparam("si"), session_images.c.served_at.is_(None)))
         .values(served_at=bindparam("now"), deadline_at=bindparam("deadline")))
MOVE_ON = (update(sessions).where(and_(sessions.c.id == bindparam("sid"), sessions.c.status == "playing",
                                       sessions.c.current_index == bindparam("from")))
           .values(current_index=bindparam("to")))
FINISH = (update(sessions).where(and_(sessions.c.id == bindparam("sid"), sessions.c.status == "playing",
                                      sessions.c.current_index == bindparam("from")))
          .values(status="finished", finished_at=bindparam("now"), current_index=bindparam("to")))
INSERT_REQUEST = insert(requests)
# The answer is stored only while its image is still open (one statement, no read first).
# FOR SHARE (PostgreSQL; SQLite ignores it, its writers are serialised): an image another
# worker is closing at this moment is waited for and re-checked, and one being answered
# is closed only after the answer is stored.
INSERT_ANSWER_IF_OPEN = insert(answers).from_select(
    [c.name for c in answers.columns],
    select(*[bindparam(c.name, type_=c.type) for c in answers.columns]).where(
        select(session_images.c.id).where(and_(session_images.c.id == bindparam("session_image_id"),
                                               session_images.c.ended_at.is_(None)))
        .with_for_update(read=True).exists()))
REPLAY = select(requests.c.kind, requests.c.response_json).where(and_(
   requests.c.player_id == bindparam("pid"), requests.c.request_id == bindparam("rid")))


def first(rows):
    return rows[0] if rows else None


def active_session(conn, player_id: int):
    return first(fast(conn, ACTIVE, {"pid": player_id}))


def load_session(conn, player_id: int, session_id: object):
    """A session of this player; another player's session is 'not found' (no leak)."""
    if not isinstance(session_id, str):
        raise NotFound("no such session")
    row = first(fast(conn, SESSION, {"sid": session_id, "pid": player_id}))
    if row is None:
        raise NotFound("no such session")
    return row


def current_si(conn, session):
    if session.status != "playing":
        return None
    return first(fast(conn, CURRENT_SI, {"sid": session.id, "pos": session.current_index}))


def store_request(conn, player_id: int, request_id: str, kind: str, response: dict[str, Any], now: int) -> None:
    fast(conn, INSERT_REQUEST, {"player_id": player_id, "request_id": request_id, "kind": kind,
                                   "response_json": json.dumps(response, separators=(",", ":")), "created_at": now})


def tx_find_player(conn, key: str):
    row = conn.execute(select(players.c.id, players.c.display_name).where(players.c.player_key == key)).first()
    return None if row is None else (row.id, row.display_name)


def tx_upsert_player(conn, key: str, name: str | None, now: int) -> int:
    row = conn.execute(select(players.c.id, players.c.display_name).where(players.c.player_key == key)).first()
    if row is None:
        result = conn.execute(insert(players).values(player_key=key, display_name=name, muted=False, created_at=now))
        return int(result.inserted_primary_key[0])
    if name and row.display_name != name:
        conn.execute(update(players).where(players.c.id == row.id).values(display_name=name))
    return int(row.id)


def tx_store_answer(conn, player_id: int, request_id: str, row: dict, response: dict, now: int) -> dict:
    store_request(conn, player_id, request_id, "ask", response, now)
    if fast(conn, INSERT_ANSWER_IF_OPEN, row) != 1:
        raise Conflict("this image is over")
    return response


def tx_summary(conn, player_id: int, session_id: str) -> dict[str, Any]:
    session = load_session(conn, player_id, session_id)
    if session.status != "finished":
        raise Conflict("the summary is available once the session is finished")
    sis = conn.execute(select(session_images).where(session_images.c.session_id == session.id)
                       .order_by(session_images.c.position)).all()
    rows = conn.execute(select(answers).where(answers.c.session_id == session.id)
                        .order_by(answers.c.asked_at, answers.c.id)).all()
    by_si: dict[int, list] = {}
    for row in rows:
        by_si.setdefault(row.session_image_id, []).append(row)
    # Peer validation (SPEC §3.3): each find's status and, once confirmed, its bonus.
    from game.validation import find_statuses

    untainted = {si.id for si in sis if not si.tainted}
    checks = find_statuses(conn, [a.id for a in rows if a.session_image_id in untainted
                                  and a.verdict == "wrong" and a.correction is not None])
    out_images = []
    total = 0
    for si in sis:
        items = by_si.get(si.id, [])
        points = sum(a.points + checks.get(a.id, {}).get("bonus", 0) for a in items)
        total += points
        out_images.append({
            "index": si.position,
            "tainted": bool(si.tainted),
            "points": points,
            "end_reason": si.end_reason,
            "finds": sum(1 for a in items if a.verdict == "wrong" and not si.tainted),
            "answers": [{
                "answer_id": a.id, "question": a.question, "answer": a.served_answer,
                "tainted": bool(a.tainted), "verdict": a.verdict, "correction": a.correction, "points": a.points,
                "validation": checks[a.id]["status"] if a.id in checks else None,
                "bonus": checks[a.id]["bonus"] if a.id in checks else 0,
            } for a in items],
        })
    return {"session_id": session.id, "total_points": total, "images": out_images}


def tx_leaderboard(conn, since: int | None) -> list[tuple]:
    total = func.sum(points_ledger.c.points).label("points")
    query = (select(players.c.id, players.c.display_name, players.c.player_key, total)
             .join(players, players.c.id == points_ledger.c.player_id)
             .where(players.c.muted.is_(False))
             .group_by(players.c.id, players.c.display_name, players.c.player_key)
             .order_by(total.desc(), players.c.id))
    if since is not None:
        query = query.where(points_ledger.c.created_at >= since)
    return [tuple(r) for r in conn.execute(query).all()]


def tx_image_by_opaque(conn, opaque_id: str) -> tuple[str, bytes] | None:
    row = conn.execute(select(images.c.mime, images.c.content).where(images.c.opaque_id == opaque_id)).first()
    return None if row is None else (row.mime, bytes(row.content))


def tx_image_content(conn, image_id: int) -> bytes:
    return bytes(conn.execute(select(images.c.content).where(images.c.id == image_id)).scalar_one())


def tx_pools(conn) -> list[tuple[int, bool, str]]:
    """(id, reliable, pool) of every image in id order, so a seeded plan is the same on any backend
    (PostgreSQL returns an unordered scan in heap order, which updates change). The pool is the
    image's source, by which a session's tainted and untainted images are stratified (SPEC §1.2)."""
    return [(r.id, bool(r.reliable), r.pool) for r in conn.execute(
        select(images.c.id, images.c.reliable, images.c.pool).order_by(images.c.id)).all()]


def tx_ping(conn) -> None:
    """The database answers and is migrated (an empty file is not 'ready')."""
    from sqlalchemy import text

    conn.execute(text("SELECT version_num FROM alembic_version")).one()
