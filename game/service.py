"""The game service: the one place where the rules of SPEC §1 meet storage.

Adapters (the JSON API, the bot) call these methods with an already
authenticated player id and render the plain dicts they return. Every
mutating call is idempotent on a client request id, keeps its database
transactions short (the model is never awaited inside one), and is safe when
the same player sends requests concurrently (a per-player lock in the process,
unique constraints across processes).
"""
from __future__ import annotations

import json
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from game import rules
from game.db import Database
from game.errors import Conflict, Expired, Invalid, NotFound, Unavailable
from game.locks import KeyedLocks
from game.players import player_key
from game.tables import answers, images, players, points_ledger, requests, session_images, sessions
from models.base import VQAModel

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """Epoch milliseconds: the unit of every stored time."""
    return int(time.time() * 1000)


REQUEST_ID_MAX = 128


def clean_request_id(value: object) -> str:
    """A client-generated idempotency key: 1–128 printable characters."""
    if not isinstance(value, str) or not value or len(value) > REQUEST_ID_MAX or not value.isprintable():
        raise Invalid(f"request_id must be a string of 1 to {REQUEST_ID_MAX} printable characters")
    return value


@dataclass(frozen=True)
class GameConfig:
    """The rule parameters the service needs from the settings (SPEC §5.1)."""

    image_seconds: float = 120.0
    taint_prob: float = 0.8
    false_alarm_penalty: int = 10
    pool_cache_seconds: float = 10.0


class _LRU(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_item(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class GameService:
    """Sessions, timers, tainting decisions, scoring and leaderboards over a `Database`."""

    def __init__(
        self,
        db: Database,
        model: VQAModel,
        *,
        hash_key: bytes,
        config: GameConfig | None = None,
        clock: Clock = wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.model = model
        self.config = config or GameConfig()
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self._hash_key = hash_key
        self._locks = KeyedLocks()
        self._player_ids: _LRU = _LRU(100_000)
        self._image_bytes: _LRU = _LRU(512)
        self._image_by_opaque: _LRU = _LRU(512)
        self._pools: tuple[float, list[int], list[int]] | None = None

    # ------------------------------------------------------------------ players

    async def upsert_player(self, telegram_id: int, display_name: str | None = None) -> int:
        """The player id for a Telegram user, creating the player on first sight.

        Only the keyed hash of the Telegram id is stored (SPEC §1.4)."""
        key = player_key(self._hash_key, telegram_id)
        cached = self._player_ids.get_item(key)
        name = (display_name or "").strip()[:64] or None
        if cached is not None and cached[1] == name:
            return cached[0]
        async with self.db.read() as conn:
            row = (await conn.execute(select(players.c.id, players.c.display_name)
                                      .where(players.c.player_key == key))).first()
        if row is None or row.display_name != name:
            async with self.db.write() as conn:
                row = (await conn.execute(select(players.c.id, players.c.display_name)
                                          .where(players.c.player_key == key))).first()
                if row is None:
                    result = await conn.execute(insert(players).values(
                        player_key=key, display_name=name, muted=False, created_at=self.clock()))
                    player_id = int(result.inserted_primary_key[0])
                else:
                    player_id = row.id
                    if name and row.display_name != name:
                        await conn.execute(update(players).where(players.c.id == player_id)
                                           .values(display_name=name))
        else:
            player_id = row.id
        self._player_ids.put(key, (player_id, name))
        return player_id

    # ------------------------------------------------------------------ sessions

    async def start_or_resume(self, player_id: int) -> dict[str, Any]:
        """The player's active session (SPEC §1.1: at most one), created if none."""
        async with self._locks.hold(player_id):
            now = self.clock()
            async with self.db.read() as conn:
                session = await self._active_session(conn, player_id)
                if session is not None:
                    si = await self._current_si(conn, session)
                    if si is not None and not rules.is_expired(now, si.deadline_at):
                        return await self._state(conn, session, si, now)
            if session is None:
                await self._pools_cached()  # warm the cache outside the write transaction
            async with self.db.write() as conn:
                session = await self._active_session(conn, player_id)
                if session is None:
                    reliable_ids, all_ids = await self._pools_cached()
                    session = await self._create_session(conn, player_id, now, reliable_ids, all_ids)
                session, si, _ = await self._advance_if_expired(conn, session, now)
                return await self._state(conn, session, si, now)

    async def current(self, player_id: int) -> dict[str, Any]:
        """The active session's state; NotFound when the player has none."""
        async with self._locks.hold(player_id):
            now = self.clock()
            async with self.db.read() as conn:
                session = await self._active_session(conn, player_id)
                if session is None:
                    raise NotFound("no active session")
                si = await self._current_si(conn, session)
                if si is not None and not rules.is_expired(now, si.deadline_at):
                    return await self._state(conn, session, si, now)
            async with self.db.write() as conn:
                session = await self._load_session(conn, player_id, session.id)
                session, si, _ = await self._advance_if_expired(conn, session, now)
                return await self._state(conn, session, si, now)

    async def ask(self, player_id: int, session_id: str, request_id: object, text: object) -> dict[str, Any]:
        """Ask the model a question about the current image: `{"answer_id", "answer"}`.

        Validates before touching anything; after the deadline the image ends,
        the session advances and `Expired` is raised. The model runs outside any
        transaction; the answer and the idempotency record commit together."""
        request_id = clean_request_id(request_id)
        question = rules.clean_question(text)
        async with self._locks.hold(player_id):
            now = self.clock()
            async with self.db.read() as conn:
                replay = await self._replay(conn, player_id, request_id, "ask")
                if replay is not None:
                    return replay
                session = await self._load_session(conn, player_id, session_id)
                si = await self._current_si(conn, session)
                expired = si is not None and rules.is_expired(now, si.deadline_at)
                if si is not None and not expired:
                    if await self._pending_answer(conn, si.id) is not None:
                        raise Conflict("judge the last answer before asking again")
            if session.status != "playing" or si is None:
                raise Conflict("this session is finished")
            if expired:
                await self._expire(player_id, session_id, now)
            taint = rules.should_taint(self.rng, bool(si.tainted), self.config.taint_prob)
            image = await self._image_content(si.image_id)
            result = await self.model.answer(image, question, taint)
            answer_id = secrets.token_hex(16)
            response = {"answer_id": answer_id, "answer": result.served}
            try:
                async with self.db.write() as conn:
                    fresh = await self._load_si(conn, si.id)
                    if fresh.ended_at is not None:
                        raise Conflict("this image is over")
                    await self._store_request(conn, player_id, request_id, "ask", response, now)
                    await conn.execute(insert(answers).values(
                        id=answer_id, session_id=session.id, session_image_id=si.id, player_id=player_id,
                        image_id=si.image_id, question=question, question_type=getattr(result, "question_type", None),
                        honest_answer=result.honest, served_answer=result.served, tainted=bool(result.tainted),
                        strategy=result.strategy if result.tainted else None, model_id=result.model_id,
                        latency_ms=float(result.latency_ms), verdict=None, correction=None, points=0,
                        asked_at=now, judged_at=None))
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "ask")
            return response

    async def verdict(self, player_id: int, answer_id: str, request_id: object, verdict: object,
                      correction: object = None) -> dict[str, Any]:
        """Judge an answer. Correct keeps the image; Wrong (with a required
        correction) scores, ends the image and serves the next. Returns the state."""
        request_id = clean_request_id(request_id)
        verdict = rules.clean_verdict(verdict)
        if verdict == "wrong":
            correction = rules.clean_correction(correction)
        elif correction is not None and not isinstance(correction, str):
            raise Invalid("correction must be a string")
        else:
            correction = None
        if not isinstance(answer_id, str):
            raise NotFound("no such answer")
        async with self._locks.hold(player_id):
            now = self.clock()
            expired_session: str | None = None
            try:
                async with self.db.write() as conn:
                    replay = await self._replay(conn, player_id, request_id, "verdict")
                    if replay is not None:
                        return replay
                    answer = (await conn.execute(select(answers).where(
                        and_(answers.c.id == answer_id, answers.c.player_id == player_id)))).first()
                    if answer is None:
                        raise NotFound("no such answer")
                    if answer.verdict is not None:
                        raise Conflict("this answer has already been judged")
                    si = await self._load_si(conn, answer.session_image_id)
                    if si.ended_at is not None:
                        raise Conflict("this image is over")
                    session = await self._load_session(conn, player_id, answer.session_id)
                    if rules.is_expired(now, si.deadline_at):
                        await self._advance_if_expired(conn, session, now)
                        expired_session = session.id
                    else:
                        award = rules.score_verdict(verdict, bool(si.tainted), bool(answer.tainted),
                                                    self.config.false_alarm_penalty)
                        changed = await conn.execute(update(answers).where(
                            and_(answers.c.id == answer.id, answers.c.verdict.is_(None))).values(
                            verdict=verdict, correction=correction, points=award.points, judged_at=now))
                        if changed.rowcount != 1:
                            raise Conflict("this answer has already been judged")
                        if award.reason is not None:
                            await conn.execute(insert(points_ledger).values(
                                player_id=player_id, answer_id=answer.id, reason=award.reason,
                                points=award.points, created_at=now))
                        if verdict == "wrong":
                            session, si = await self._end_image(conn, session, si, "wrong", now)
                        state = await self._state(conn, session, si, now)
                        await self._store_request(conn, player_id, request_id, "verdict", state, now)
                        return state
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "verdict")
            raise Expired(f"time is up for this image; the session moved on (session {expired_session})")

    async def summary(self, player_id: int, session_id: str) -> dict[str, Any]:
        """The reveal (SPEC §1.3): per image tainted or not and the points; only once finished."""
        async with self.db.read() as conn:
            session = await self._load_session(conn, player_id, session_id)
            if session.status != "finished":
                raise Conflict("the summary is available once the session is finished")
            sis = (await conn.execute(select(session_images).where(session_images.c.session_id == session.id)
                                      .order_by(session_images.c.position))).all()
            rows = (await conn.execute(select(answers).where(answers.c.session_id == session.id)
                                       .order_by(answers.c.asked_at, answers.c.id))).all()
        by_si: dict[int, list] = {}
        for row in rows:
            by_si.setdefault(row.session_image_id, []).append(row)
        out_images = []
        total = 0
        for si in sis:
            items = by_si.get(si.id, [])
            points = sum(a.points for a in items)
            total += points
            out_images.append({
                "index": si.position,
                "tainted": bool(si.tainted),
                "points": points,
                "end_reason": si.end_reason,
                "finds": sum(1 for a in items if a.verdict == "wrong" and not si.tainted),
                "answers": [{
                    "answer_id": a.id, "question": a.question, "answer": a.served_answer,
                    "tainted": bool(a.tainted), "verdict": a.verdict, "correction": a.correction,
                    "points": a.points,
                } for a in items],
            })
        return {"session_id": session.id, "total_points": total, "images": out_images}

    async def leaderboard(self, period: str, player_id: int | None = None, limit: int = 50) -> dict[str, Any]:
        """Players ranked by points from the ledger: `week` (since Monday 00:00 UTC) or `all`."""
        if period not in ("week", "all"):
            raise Invalid('period must be "week" or "all"')
        total = func.sum(points_ledger.c.points).label("points")
        query = (select(players.c.id, players.c.display_name, players.c.player_key, total)
                 .join(players, players.c.id == points_ledger.c.player_id)
                 .where(players.c.muted.is_(False))
                 .group_by(players.c.id, players.c.display_name, players.c.player_key)
                 .order_by(total.desc(), players.c.id))
        if period == "week":
            query = query.where(points_ledger.c.created_at >= rules.week_start_ms(self.clock()))
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        ranked = []
        me = None
        rank = 0
        previous = None
        for position, row in enumerate(rows, start=1):
            if row.points != previous:
                rank, previous = position, row.points
            entry = {"rank": rank, "name": row.display_name or f"player {row.player_key[:6]}",
                     "points": int(row.points), "me": row.id == player_id}
            if position <= limit:
                ranked.append(entry)
            if row.id == player_id:
                me = entry
        return {"period": period, "players": ranked, "me": me}

    # ------------------------------------------------------------------ images

    async def image_by_opaque_id(self, opaque_id: str) -> tuple[str, bytes] | None:
        """(mime, bytes) of an image by the only id clients ever see."""
        hit = self._image_by_opaque.get_item(opaque_id)
        if hit is not None:
            return hit
        async with self.db.read() as conn:
            row = (await conn.execute(select(images.c.mime, images.c.content)
                                      .where(images.c.opaque_id == opaque_id))).first()
        if row is None:
            return None
        value = (row.mime, bytes(row.content))
        self._image_by_opaque.put(opaque_id, value)
        return value

    async def ping(self) -> None:
        """Raise if the database cannot answer (for /healthz)."""
        async with self.db.read() as conn:
            await conn.execute(select(1))

    def invalidate_pools(self) -> None:
        """Forget the cached pool lists (after an import or a reliability run)."""
        self._pools = None

    # ------------------------------------------------------------------ internals

    async def _pools_cached(self) -> tuple[list[int], list[int]]:
        """(reliable ids, all ids), re-read at most every `pool_cache_seconds`."""
        now = time.monotonic()
        if self._pools is not None and (now - self._pools[0]) < self.config.pool_cache_seconds:
            return self._pools[1], self._pools[2]
        async with self.db.read() as conn:
            rows = (await conn.execute(select(images.c.id, images.c.reliable))).all()
        all_ids = [r.id for r in rows]
        reliable = [r.id for r in rows if r.reliable]
        self._pools = (now, reliable, all_ids)
        return reliable, all_ids

    async def _image_content(self, image_id: int) -> bytes:
        hit = self._image_bytes.get_item(image_id)
        if hit is not None:
            return hit
        async with self.db.read() as conn:
            content = (await conn.execute(select(images.c.content).where(images.c.id == image_id))).scalar_one()
        content = bytes(content)
        self._image_bytes.put(image_id, content)
        return content

    async def _active_session(self, conn, player_id: int):
        return (await conn.execute(select(sessions).where(
            and_(sessions.c.player_id == player_id, sessions.c.status == "playing")))).first()

    async def _load_session(self, conn, player_id: int, session_id: object):
        """A session of this player; another player's session is 'not found' (no leak)."""
        if not isinstance(session_id, str):
            raise NotFound("no such session")
        row = (await conn.execute(select(sessions).where(
            and_(sessions.c.id == session_id, sessions.c.player_id == player_id)))).first()
        if row is None:
            raise NotFound("no such session")
        return row

    async def _load_si(self, conn, si_id: int):
        return (await conn.execute(select(session_images).where(session_images.c.id == si_id))).one()

    async def _current_si(self, conn, session):
        if session.status != "playing":
            return None
        return (await conn.execute(select(session_images).where(and_(
            session_images.c.session_id == session.id,
            session_images.c.position == session.current_index)))).first()

    async def _pending_answer(self, conn, si_id: int):
        return (await conn.execute(select(answers.c.id).where(and_(
            answers.c.session_image_id == si_id, answers.c.verdict.is_(None))))).first()

    async def _create_session(self, conn, player_id: int, now: int, reliable_ids: list[int], all_ids: list[int]):
        try:
            plan = rules.plan_session(self.rng, reliable_ids, all_ids)
        except ValueError as exc:
            raise Unavailable(f"the game is not ready: {exc}") from exc
        session_id = secrets.token_hex(16)
        await conn.execute(insert(sessions).values(
            id=session_id, player_id=player_id, status="playing", current_index=0, created_at=now))
        deadline = rules.deadline_for(now, self.config.image_seconds)
        await conn.execute(insert(session_images), [{
            "session_id": session_id, "position": position, "image_id": item.image_id,
            "tainted": item.tainted,
            "served_at": now if position == 0 else None,
            "deadline_at": deadline if position == 0 else None,
        } for position, item in enumerate(plan)])
        return await self._load_session(conn, player_id, session_id)

    async def _advance_if_expired(self, conn, session, now: int):
        """End the current image if its deadline passed (reason "timeout"); returns
        (session, current session image or None when finished, whether it expired)."""
        si = await self._current_si(conn, session)
        if si is None or not rules.is_expired(now, si.deadline_at):
            return session, si, False
        session, si = await self._end_image(conn, session, si, "timeout", now)
        return session, si, True

    async def _end_image(self, conn, session, si, reason: str, now: int):
        """Close `si` and serve the next image (its deadline starts now), or finish."""
        closed = await conn.execute(update(session_images).where(and_(
            session_images.c.id == si.id, session_images.c.ended_at.is_(None))).values(
            ended_at=now, end_reason=reason))
        if closed.rowcount != 1:
            raise Conflict("this image is over")
        nxt = si.position + 1
        if nxt < rules.IMAGES_PER_SESSION:
            await conn.execute(update(session_images).where(and_(
                session_images.c.session_id == session.id, session_images.c.position == nxt,
                session_images.c.served_at.is_(None))).values(
                served_at=now, deadline_at=rules.deadline_for(now, self.config.image_seconds)))
            await conn.execute(update(sessions).where(sessions.c.id == session.id).values(current_index=nxt))
        else:
            await conn.execute(update(sessions).where(sessions.c.id == session.id).values(
                status="finished", finished_at=now, current_index=rules.IMAGES_PER_SESSION))
        session = await self._load_session(conn, session.player_id, session.id)
        return session, await self._current_si(conn, session)

    async def _expire(self, player_id: int, session_id: str, now: int) -> None:
        async with self.db.write() as conn:
            session = await self._load_session(conn, player_id, session_id)
            await self._advance_if_expired(conn, session, now)
        raise Expired("time is up for this image; the session moved on")

    async def _state(self, conn, session, si, now: int) -> dict[str, Any]:
        """The client-visible state: identical keys whatever the image's kind, no score."""
        state: dict[str, Any] = {"session_id": session.id, "status": session.status, "now_ms": now, "image": None}
        if session.status == "playing" and si is not None:
            opaque = (await conn.execute(select(images.c.opaque_id).where(images.c.id == si.image_id))).scalar_one()
            rows = (await conn.execute(select(answers.c.id, answers.c.question, answers.c.served_answer,
                                              answers.c.verdict)
                                       .where(answers.c.session_image_id == si.id)
                                       .order_by(answers.c.asked_at, answers.c.id))).all()
            state["image"] = {
                "index": si.position,
                "total": rules.IMAGES_PER_SESSION,
                "url": f"/img/{opaque}",
                "deadline_ms": si.deadline_at,
                "seconds_left": rules.seconds_left(now, si.deadline_at),
                "answers": [{"answer_id": r.id, "question": r.question, "answer": r.served_answer,
                             "verdict": r.verdict} for r in rows],
            }
        return state

    async def _replay(self, conn, player_id: int, request_id: str, kind: str) -> dict[str, Any] | None:
        row = (await conn.execute(select(requests.c.kind, requests.c.response_json).where(and_(
            requests.c.player_id == player_id, requests.c.request_id == request_id)))).first()
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
        return response

    async def _replay_or_conflict(self, player_id: int, request_id: str, kind: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            replay = await self._replay(conn, player_id, request_id, kind)
        if replay is None:
            raise Conflict("a concurrent request changed this session; reload the state")
        return replay

    async def _store_request(self, conn, player_id: int, request_id: str, kind: str,
                             response: dict[str, Any], now: int) -> None:
        await conn.execute(insert(requests).values(
            player_id=player_id, request_id=request_id, kind=kind,
            response_json=json.dumps(response, separators=(",", ":")), created_at=now))
