"""All SQL of a game session, defined once in SQLAlchemy Core, and the short
transactions that read and write it (SPEC §1, §4.1). The service
(game/service.py) decides and orchestrates; this module stores what it decided
and returns plain data (dataclasses, or the client-visible state dicts that are
also stored verbatim for idempotent replays). `fast` (game/db.py) runs the hot
statements compiled once on SQLite."""
from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update

from game import rules
from game.db import fast
from game.errors import Conflict, NotFound
from game.rules import Look
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
    select(answers.c.id, answers.c.verdict, answers.c.tainted, answers.c.served_answer, answers.c.session_id, answers.c.session_image_id,
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

_ID_RNG = random.Random(secrets.randbits(128))


def new_id() -> str:
    """A 32-hex-digit random id for sessions and answers. Ids are not secrets
    (every lookup also checks the owner), so a seeded PRNG is enough and avoids
    a system call per request."""
    return f"{_ID_RNG.getrandbits(128):032x}"


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
             .where(players.c.muted.is_(False), players.c.banned_at.is_(None))
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


def tx_pools(conn) -> list[tuple[int, bool, Look]]:
    """(id, reliable, look) of every image in id order, so a seeded plan is the same on any backend
    (PostgreSQL returns an unordered scan in heap order, which updates change). The look (source
    pool, format, size, bytes) is what a session's tainted and untainted images are stratified
    by, so that none of it tells the split (SPEC §1.2, game/rules.look_strata)."""
    rows = conn.execute(select(images.c.id, images.c.reliable, images.c.pool, images.c.mime, images.c.width,
                               images.c.height, func.length(images.c.content).label("size"))
                        .order_by(images.c.id)).all()
    return [(r.id, bool(r.reliable), Look(r.pool, r.mime, r.width, r.height, int(r.size))) for r in rows]


def tx_ping(conn) -> None:
    """The database answers and is migrated (an empty file is not 'ready')."""
    from sqlalchemy import text

    conn.execute(text("SELECT version_num FROM alembic_version")).one()


# ---------------------------------------------------------------- session transactions


@dataclass(frozen=True)
class Replay:
    """A retried request: the response stored with its first success."""
    response: dict[str, Any]


@dataclass(frozen=True)
class ImageExpired:
    """The image's deadline passed; the session must move on before anything else."""
    session_id: str


@dataclass(frozen=True)
class AskTarget:
    """The open image a question is about."""
    si_id: int
    image_id: int
    tainted: bool


@dataclass(frozen=True)
class VerdictContext:
    """Everything the write phase of a verdict needs, read in one query."""
    answer_id: str
    answer_tainted: bool
    served_answer: str
    session_id: str
    si_id: int
    position: int
    image_tainted: bool
    deadline_at: int
    image_id: str  # the opaque id clients see
    answers: list[dict[str, Any]]
    next_image: tuple[int, str] | None  # (session image id, opaque id) of the next image, if any


def image_state(position: int, image_id: str, deadline_at: int, answers_list: list, now: int) -> dict[str, Any]:
    """The client-visible current image: its opaque id (adapters make URLs or send bytes), never its kind."""
    return {"index": position, "total": rules.IMAGES_PER_SESSION, "image_id": image_id,
            "deadline_ms": deadline_at, "seconds_left": rules.seconds_left(now, deadline_at),
            "answers": answers_list}


class SessionStore:
    """The transactions of sessions, questions and verdicts. Each method is synchronous and runs
    inside one transaction opened by `Database.run_read` / `run_write`."""

    def __init__(self, image_seconds: float, clock: Callable[[], int]) -> None:
        self.image_seconds = image_seconds
        self.clock = clock
        self._opaque_ids: dict[int, str] = {}

    def state_if_fresh(self, conn, player_id: int, now: int) -> dict[str, Any] | None:
        """Read-only fast path: the state when the active session needs no change."""
        session = active_session(conn, player_id)
        if session is None:
            return None
        si = current_si(conn, session)
        if si is None or rules.is_expired(now, si.deadline_at):
            return None
        return self.state(conn, session, si, now)

    def start(self, conn, player_id: int, now: int,
              plan: Callable[[], list[rules.PlannedImage]]) -> dict[str, Any]:
        """The active session (advanced past an expired image), or a new one from `plan()`."""
        session = active_session(conn, player_id)
        if session is None:
            session = self._create_session(conn, player_id, now, plan())
        session, si = self._advance_if_expired(conn, session, now)
        return self.state(conn, session, si, now)

    def current(self, conn, player_id: int, now: int) -> dict[str, Any]:
        session = active_session(conn, player_id)
        if session is None:
            raise NotFound("no active session")
        session, si = self._advance_if_expired(conn, session, now)
        return self.state(conn, session, si, now)

    def ask_target(self, conn, player_id: int, session_id: str, request_id: str,
                   now: int) -> AskTarget | Replay | ImageExpired:
        """Read phase of a question: one query for the session, its current image and
        any answer awaiting a verdict. A retried request is recognised on every
        path that would not store a new answer (and by the unique constraint on
        the one that would), so the happy path needs no extra lookup."""
        row = first(fast(conn, ASK_CONTEXT, {"sid": session_id, "pid": player_id}))
        try:
            if row is None:
                raise NotFound("no such session")
            if row.status != "playing" or row.si_id is None:
                raise Conflict("this session is finished")
            if not rules.is_expired(now, row.deadline_at):
                if row.pending is not None:
                    raise Conflict("judge the last answer before asking again")
                return AskTarget(row.si_id, row.image_id, bool(row.tainted))
        except (NotFound, Conflict):
            if (replay := self.replay(conn, player_id, request_id, "ask")) is not None:
                return replay
            raise
        return self.replay(conn, player_id, request_id, "ask") or ImageExpired(session_id)

    def expire(self, conn, player_id: int, session_id: str, now: int) -> None:
        session = load_session(conn, player_id, session_id)
        self._advance_if_expired(conn, session, now)

    def verdict_context(self, conn, player_id: int, answer_id: str, request_id: str, verdict: str,
                        now: int) -> VerdictContext | Replay | ImageExpired:
        """Read phase of a verdict: everything the write needs, checked against the rules.

        The write phase then changes rows only under WHERE conditions that
        re-assert what was read, so a concurrent change elsewhere makes it fail
        as a conflict instead of acting on stale data. A retried request is
        recognised on every path that would not store anything."""
        row = first(fast(conn, VERDICT_CONTEXT, {"aid": answer_id, "pid": player_id}))
        try:
            if row is None:
                raise NotFound("no such answer")
            if row.verdict is not None:
                raise Conflict("this answer has already been judged")
            if row.ended_at is not None or row.status != "playing" or row.current_index != row.position:
                raise Conflict("this image is over")
        except (NotFound, Conflict):
            if (replay := self.replay(conn, player_id, request_id, "verdict")) is not None:
                return replay
            raise
        if rules.is_expired(now, row.deadline_at):
            return self.replay(conn, player_id, request_id, "verdict") or ImageExpired(row.session_id)
        answers_so_far = []
        if verdict == "correct":
            answers_so_far = [{"answer_id": r.id, "question": r.question, "answer": r.served_answer,
                               "verdict": r.verdict} for r in fast(conn, IMAGE_ANSWERS, {"si": row.session_image_id})]
        next_image = (row.next_si, self._opaque(conn, row.next_image_id)) if row.next_si is not None else None
        return VerdictContext(
            answer_id=row.id, answer_tainted=bool(row.tainted), served_answer=row.served_answer,
            session_id=row.session_id, si_id=row.session_image_id, position=row.position,
            image_tainted=bool(row.image_tainted), deadline_at=row.deadline_at,
            image_id=self._opaque(conn, row.image_id), answers=answers_so_far, next_image=next_image)

    def apply_verdict(self, conn, player_id: int, request_id: str, ctx: VerdictContext, verdict: str,
                      correction: str | None, award: rules.Award, now: int) -> dict[str, Any]:
        """Write phase of a verdict: a handful of guarded statements, no reads."""
        changed = fast(conn, JUDGE, {"aid": ctx.answer_id, "verdict": verdict, "correction": correction,
                                      "points": award.points, "now": now})
        if changed != 1:
            raise Conflict("this answer has already been judged")
        if award.reason is not None:
            fast(conn, LEDGER, {"player_id": player_id, "answer_id": ctx.answer_id, "reason": award.reason,
                                 "points": award.points, "created_at": now})
        state: dict[str, Any] = {"session_id": ctx.session_id, "status": "playing", "now_ms": now, "image": None}
        if verdict == "correct":
            answers_now = [dict(a, verdict="correct") if a["answer_id"] == ctx.answer_id else a for a in ctx.answers]
            state["image"] = image_state(ctx.position, ctx.image_id, ctx.deadline_at, answers_now, now)
        else:
            if fast(conn, END_IMAGE, {"si": ctx.si_id, "now": now, "reason": "wrong"}) != 1:
                raise Conflict("this image is over")
            if ctx.next_image is not None:
                deadline = rules.deadline_for(now, self.image_seconds)
                fast(conn, SERVE, {"si": ctx.next_image[0], "now": now, "deadline": deadline})
                moved = fast(conn, MOVE_ON, {"sid": ctx.session_id, "from": ctx.position, "to": ctx.position + 1})
                state["image"] = image_state(ctx.position + 1, ctx.next_image[1], deadline, [], now)
            else:
                moved = fast(conn, FINISH, {"sid": ctx.session_id, "from": ctx.position, "now": now,
                                             "to": rules.IMAGES_PER_SESSION})
                state["status"] = "finished"
            if moved != 1:
                raise Conflict("a concurrent request changed this session; reload the state")
        store_request(conn, player_id, request_id, "verdict", state, now)
        return state

    def replay(self, conn, player_id: int, request_id: str, kind: str) -> Replay | None:
        """The stored response of a retried request, its clock fields brought up to now."""
        row = first(fast(conn, REPLAY, {"pid": player_id, "rid": request_id}))
        if row is None:
            return None
        if row.kind != kind:
            raise Conflict("this request_id was already used for another request")
        response = json.loads(row.response_json)
        image = response.get("image") if isinstance(response, dict) else None
        if image and image.get("deadline_ms") is not None:
            now = self.clock()
            response["now_ms"] = now
            image["seconds_left"] = rules.seconds_left(now, image["deadline_ms"])
        return Replay(response)

    def state(self, conn, session, si, now: int) -> dict[str, Any]:
        """The client-visible state: identical keys whatever the image's kind, no score."""
        state: dict[str, Any] = {"session_id": session.id, "status": session.status, "now_ms": now, "image": None}
        if session.status == "playing" and si is not None:
            rows = fast(conn, IMAGE_ANSWERS, {"si": si.id})
            state["image"] = image_state(si.position, self._opaque(conn, si.image_id), si.deadline_at, [
                {"answer_id": r.id, "question": r.question, "answer": r.served_answer, "verdict": r.verdict}
                for r in rows], now)
        return state

    def _opaque(self, conn, image_id: int) -> str:
        """The client-visible id of an image (immutable, so cached for good)."""
        opaque = self._opaque_ids.get(image_id)
        if opaque is None:
            opaque = self._opaque_ids[image_id] = fast(conn, OPAQUE_ID, {"image_id": image_id})[0][0]
        return opaque

    def _create_session(self, conn, player_id: int, now: int, plan: list[rules.PlannedImage]):
        session_id = new_id()
        conn.execute(insert(sessions).values(id=session_id, player_id=player_id, status="playing",
                                             current_index=0, created_at=now))
        deadline = rules.deadline_for(now, self.image_seconds)
        conn.execute(insert(session_images), [{
            "session_id": session_id, "position": position, "image_id": item.image_id, "tainted": item.tainted,
            "served_at": now if position == 0 else None, "deadline_at": deadline if position == 0 else None,
        } for position, item in enumerate(plan)])
        return load_session(conn, player_id, session_id)

    def _advance_if_expired(self, conn, session, now: int):
        """End the current image if its deadline passed (reason "timeout");
        returns (session, current session image or None when finished)."""
        si = current_si(conn, session)
        if si is None or not rules.is_expired(now, si.deadline_at):
            return session, si
        return self._end_image(conn, session, si, "timeout", now)

    def _end_image(self, conn, session, si, reason: str, now: int):
        """Close `si` and serve the next image (its deadline starts now), or finish."""
        closed = conn.execute(update(session_images).where(and_(
            session_images.c.id == si.id, session_images.c.ended_at.is_(None))).values(ended_at=now, end_reason=reason))
        if closed.rowcount != 1:
            raise Conflict("this image is over")
        nxt = si.position + 1
        if nxt < rules.IMAGES_PER_SESSION:
            conn.execute(update(session_images).where(and_(
                session_images.c.session_id == session.id, session_images.c.position == nxt,
                session_images.c.served_at.is_(None))).values(
                served_at=now, deadline_at=rules.deadline_for(now, self.image_seconds)))
            conn.execute(update(sessions).where(sessions.c.id == session.id).values(current_index=nxt))
        else:
            conn.execute(update(sessions).where(sessions.c.id == session.id).values(
                status="finished", finished_at=now, current_index=rules.IMAGES_PER_SESSION))
        session = load_session(conn, session.player_id, session.id)
        return session, current_si(conn, session)
