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

from sqlalchemy import and_, insert, update
from sqlalchemy.exc import IntegrityError

from game import rules, validation
from game import queries as q
from game.db import Database, fast
from game.errors import Conflict, Expired, Invalid, NotFound, Unavailable
from game.locks import KeyedLocks
from game.players import player_key
from game.tables import answers, session_images, sessions
from models.base import VQAModel

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """Epoch milliseconds: the unit of every stored time."""
    return int(time.time() * 1000)


REQUEST_ID_MAX = 128

_ID_RNG = random.Random(secrets.randbits(128))


def new_id() -> str:
    """A 32-hex-digit random id for sessions and answers. Ids are not secrets
    (every lookup also checks the owner), so a seeded PRNG is enough and avoids
    a system call per request."""
    return f"{_ID_RNG.getrandbits(128):032x}"


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
    leaderboard_cache_seconds: float = 5.0


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
    """Sessions, timers, tainting decisions, scoring and leaderboards over a `Database`.

    Each database phase is one synchronous function run by `Database.run_read`
    / `run_write` as a single short transaction; the async methods orchestrate
    the phases, the per-player lock and the model call between them."""

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
        self._pools: tuple[float, list[int], list[int], dict[int, str]] | None = None
        self._boards: dict[tuple, tuple[float, list]] = {}
        self._opaque_ids: dict[int, str] = {}

    # ------------------------------------------------------------------ players

    async def upsert_player(self, telegram_id: int, display_name: str | None = None) -> int:
        """The player id for a Telegram user, creating the player on first sight.

        Only the keyed hash of the Telegram id is stored (SPEC §1.4)."""
        key = player_key(self._hash_key, telegram_id)
        name = rules.storable_text(display_name or "").strip()[:64] or None
        cached = self._player_ids.get_item(key)
        if cached is not None and cached[1] == name:
            return cached[0]
        row = await self.db.run_read(q.tx_find_player, key)
        if row is None or (name and row[1] != name):
            try:
                player_id = await self.db.run_write(q.tx_upsert_player, key, name, self.clock())
            except IntegrityError:  # another worker created the player first
                player_id = await self.db.run_write(q.tx_upsert_player, key, name, self.clock())
        else:
            player_id = row[0]
        self._player_ids.put(key, (player_id, name))
        return player_id

    # ------------------------------------------------------------------ sessions

    async def start_or_resume(self, player_id: int) -> dict[str, Any]:
        """The player's active session (SPEC §1.1: at most one), created if none."""
        async with self._locks.hold(player_id):
            now = self.clock()
            state = await self.db.run_read(self._tx_state_if_fresh, player_id, now)
            if state is not None:
                return state
            reliable_ids, all_ids, source_of = await self._pools_cached()
            plan_rng = random.Random(self.rng.getrandbits(64))
            try:
                return await self.db.run_write(self._tx_start, player_id, now, reliable_ids, all_ids, source_of,
                                                 plan_rng)
            except IntegrityError:  # another worker started the player's session first: resume it
                return await self.db.run_write(self._tx_start, player_id, now, reliable_ids, all_ids, source_of,
                                                 plan_rng)

    async def current(self, player_id: int) -> dict[str, Any]:
        """The active session's state; NotFound when the player has none."""
        async with self._locks.hold(player_id):
            now = self.clock()
            state = await self.db.run_read(self._tx_state_if_fresh, player_id, now)
            if state is not None:
                return state
            return await self.db.run_write(self._tx_current, player_id, now)

    async def ask(self, player_id: int, session_id: str, request_id: object, text: object) -> dict[str, Any]:
        """Ask the model a question about the current image: `{"answer_id", "answer"}`.

        Validates before touching anything; after the deadline the image ends,
        the session advances and `Expired` is raised. The model runs outside any
        transaction; the answer and the idempotency record commit together."""
        request_id = clean_request_id(request_id)
        question = rules.clean_question(text)
        if not isinstance(session_id, str):
            raise NotFound("no such session")
        async with self._locks.hold(player_id):
            now = self.clock()
            check = await self.db.run_read(self._tx_ask_check, player_id, session_id, request_id, now)
            if check[0] == "replay":
                return check[1]
            if check[0] == "expired":
                await self.db.run_write(self._tx_expire, player_id, session_id, now)
                raise Expired("time is up for this image; the session moved on")
            _, si_id, image_id, image_tainted = check
            taint = rules.should_taint(self.rng, image_tainted, self.config.taint_prob)
            image = await self._image_content(image_id)
            result = await self.model.answer(image, question, taint)
            answer_id = new_id()
            served = rules.storable_text(result.served)
            response = {"answer_id": answer_id, "answer": served}
            row = {
                "id": answer_id, "session_id": session_id, "session_image_id": si_id, "player_id": player_id,
                "image_id": image_id, "question": question, "question_type": getattr(result, "question_type", None),
                "honest_answer": rules.storable_text(result.honest), "served_answer": served,
                "tainted": bool(result.tainted), "strategy": result.strategy if result.tainted else None,
                "model_id": rules.storable_text(result.model_id, answers.c.model_id.type.length),
                "latency_ms": float(result.latency_ms), "verdict": None, "correction": None, "points": 0,
                "asked_at": now, "judged_at": None,
            }
            try:
                return await self.db.run_write(q.tx_store_answer, player_id, request_id, row, response, now)
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "ask")

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
            check = await self.db.run_read(self._tx_verdict_check, player_id, answer_id, request_id, verdict, now)
            if check[0] == "replay":
                return check[1]
            if check[0] == "expired":
                await self.db.run_write(self._tx_expire, player_id, check[1], now)
                raise Expired("time is up for this image; the session moved on")
            try:
                return await self.db.run_write(self._tx_verdict_apply, player_id, request_id, check[1], verdict,
                                               correction, now)
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "verdict")

    async def summary(self, player_id: int, session_id: str) -> dict[str, Any]:
        """The reveal (SPEC §1.3): per image tainted or not and the points; only once finished."""
        return await self.db.run_read(q.tx_summary, player_id, session_id)

    async def leaderboard(self, period: str, player_id: int | None = None, limit: int = 50) -> dict[str, Any]:
        """Players ranked by points from the ledger: `week` (since Monday 00:00 UTC) or `all`."""
        if period not in ("week", "all"):
            raise Invalid('period must be "week" or "all"')
        since = rules.week_start_ms(self.clock()) if period == "week" else None
        cached = self._boards.get((period, since))
        if cached is not None and time.monotonic() - cached[0] < self.config.leaderboard_cache_seconds:
            rows = cached[1]
        else:
            rows = await self.db.run_read(q.tx_leaderboard, since)
            self._boards[(period, since)] = (time.monotonic(), rows)
        ranked = []
        me = None
        rank = 0
        previous = None
        for position, (pid, name, key, points) in enumerate(rows, start=1):
            if points != previous:
                rank, previous = position, points
            entry = {"rank": rank, "name": name or f"player {key[:6]}", "points": int(points),
                     "me": pid == player_id}
            if position <= limit:
                ranked.append(entry)
            if pid == player_id:
                me = entry
        return {"period": period, "players": ranked, "me": me}

    # ------------------------------------------------------------------ peer validation (SPEC §3.3)

    async def next_find(self, player_id: int) -> dict[str, Any]:
        """Another player's find for this player to check (game/validation.py); NotFound when none."""
        return await self.db.run_read(validation.tx_next_find, player_id)

    async def validate_find(self, player_id: int, find_id: object, request_id: object,
                            agrees: object) -> dict[str, Any]:
        """Vote on a find (agrees = the answer is wrong); idempotent on request_id.
        A confirming vote pays the finder's bonus once, so the leaderboards are refreshed."""
        request_id = clean_request_id(request_id)
        agrees = validation.clean_agrees(agrees)
        find_id = validation.clean_find_id(find_id)
        async with self._locks.hold(player_id):
            try:
                result = await self.db.run_write(validation.tx_record_vote, player_id, find_id, request_id,
                                                 agrees, self.clock())
            except IntegrityError:  # a concurrent vote or bonus in another worker: decide again
                result = await self.db.run_write(validation.tx_record_vote, player_id, find_id, request_id,
                                                 agrees, self.clock())
        if result.pop("_bonus_paid", False):
            self._boards.clear()
        return result

    # ------------------------------------------------------------------ images

    async def image_by_opaque_id(self, opaque_id: str) -> tuple[str, bytes] | None:
        """(mime, bytes) of an image by the only id clients ever see."""
        hit = self._image_by_opaque.get_item(opaque_id)
        if hit is not None:
            return hit
        value = await self.db.run_read(q.tx_image_by_opaque, opaque_id)
        if value is not None:
            self._image_by_opaque.put(opaque_id, value)
        return value

    async def ping(self) -> None:
        """Raise if the database cannot answer (for /healthz)."""
        await self.db.run_read(q.tx_ping)

    def invalidate_pools(self) -> None:
        """Forget the cached pool lists (after an import or a reliability run)."""
        self._pools = None

    # ------------------------------------------------------------------ async internals

    async def _pools_cached(self) -> tuple[list[int], list[int], dict[int, str]]:
        """(reliable ids, all ids, each id's source pool), re-read at most every `pool_cache_seconds`."""
        now = time.monotonic()
        if self._pools is not None and (now - self._pools[0]) < self.config.pool_cache_seconds:
            return self._pools[1], self._pools[2], self._pools[3]
        rows = await self.db.run_read(q.tx_pools)
        all_ids = [r[0] for r in rows]
        reliable = [r[0] for r in rows if r[1]]
        source_of = {r[0]: r[2] for r in rows}
        self._pools = (now, reliable, all_ids, source_of)
        return reliable, all_ids, source_of

    async def _image_content(self, image_id: int) -> bytes:
        hit = self._image_bytes.get_item(image_id)
        if hit is not None:
            return hit
        content = await self.db.run_read(q.tx_image_content, image_id)
        self._image_bytes.put(image_id, content)
        return content

    async def _replay_or_conflict(self, player_id: int, request_id: str, kind: str) -> dict[str, Any]:
        replay = await self.db.run_read(self._tx_replay, player_id, request_id, kind)
        if replay is None:
            raise Conflict("a concurrent request changed this session; reload the state")
        return replay

    # ------------------------------------------------------------------ transactions (sync, one each)

    def _tx_state_if_fresh(self, conn, player_id: int, now: int) -> dict[str, Any] | None:
        """Read-only fast path: the state when the active session needs no change."""
        session = q.active_session(conn, player_id)
        if session is None:
            return None
        si = q.current_si(conn, session)
        if si is None or rules.is_expired(now, si.deadline_at):
            return None
        return self._state(conn, session, si, now)

    def _tx_start(self, conn, player_id: int, now: int, reliable_ids, all_ids, source_of,
                  plan_rng) -> dict[str, Any]:
        session = q.active_session(conn, player_id)
        if session is None:
            session = self._create_session(conn, player_id, now, reliable_ids, all_ids, source_of, plan_rng)
        session, si = self._advance_if_expired(conn, session, now)
        return self._state(conn, session, si, now)

    def _tx_current(self, conn, player_id: int, now: int) -> dict[str, Any]:
        session = q.active_session(conn, player_id)
        if session is None:
            raise NotFound("no active session")
        session, si = self._advance_if_expired(conn, session, now)
        return self._state(conn, session, si, now)

    def _tx_ask_check(self, conn, player_id: int, session_id: str, request_id: str, now: int):
        """Read phase of a question: one query for the session, its current image and
        any answer awaiting a verdict. A retried request is recognised on every
        path that would not store a new answer (and by the unique constraint on
        the one that would), so the happy path needs no extra lookup."""
        row = q.first(fast(conn, q.ASK_CONTEXT, {"sid": session_id, "pid": player_id}))
        outcome: tuple
        try:
            if row is None:
                raise NotFound("no such session")
            if row.status != "playing" or row.si_id is None:
                raise Conflict("this session is finished")
            if rules.is_expired(now, row.deadline_at):
                outcome = ("expired",)
            elif row.pending is not None:
                raise Conflict("judge the last answer before asking again")
            else:
                return ("ok", row.si_id, row.image_id, bool(row.tainted))
        except (NotFound, Conflict):
            replay = self._tx_replay(conn, player_id, request_id, "ask")
            if replay is not None:
                return ("replay", replay)
            raise
        replay = self._tx_replay(conn, player_id, request_id, "ask")
        return ("replay", replay) if replay is not None else outcome

    def _tx_expire(self, conn, player_id: int, session_id: str, now: int) -> None:
        session = q.load_session(conn, player_id, session_id)
        self._advance_if_expired(conn, session, now)

    def _tx_verdict_check(self, conn, player_id: int, answer_id: str, request_id: str, verdict: str, now: int):
        """Read phase of a verdict: everything the write needs, checked against the rules.

        The write phase then changes rows only under WHERE conditions that
        re-assert what was read, so a concurrent change elsewhere makes it fail
        as a conflict instead of acting on stale data. A retried request is
        recognised on every path that would not store anything."""
        row = q.first(fast(conn, q.VERDICT_CONTEXT, {"aid": answer_id, "pid": player_id}))
        try:
            if row is None:
                raise NotFound("no such answer")
            if row.verdict is not None:
                raise Conflict("this answer has already been judged")
            if row.ended_at is not None or row.status != "playing" or row.current_index != row.position:
                raise Conflict("this image is over")
        except (NotFound, Conflict):
            replay = self._tx_replay(conn, player_id, request_id, "verdict")
            if replay is not None:
                return ("replay", replay)
            raise
        if rules.is_expired(now, row.deadline_at):
            replay = self._tx_replay(conn, player_id, request_id, "verdict")
            return ("replay", replay) if replay is not None else ("expired", row.session_id)
        answers_so_far = []
        if verdict == "correct":
            answers_so_far = [{"answer_id": r.id, "question": r.question, "answer": r.served_answer,
                               "verdict": r.verdict} for r in fast(conn, q.IMAGE_ANSWERS, {"si": row.session_image_id})]
        next_image = (row.next_si, self._opaque(conn, row.next_image_id)) if row.next_si is not None else None
        return ("ok", {"answer_id": row.id, "answer_tainted": bool(row.tainted), "session_id": row.session_id,
                       "si_id": row.session_image_id, "position": row.position, "image_tainted": bool(row.image_tainted),
                       "deadline_at": row.deadline_at, "opaque_id": self._opaque(conn, row.image_id),
                       "answers": answers_so_far,
                       "next_image": next_image})

    def _tx_verdict_apply(self, conn, player_id: int, request_id: str, ctx: dict, verdict: str,
                          correction: str | None, now: int) -> dict[str, Any]:
        """Write phase of a verdict: a handful of guarded statements, no reads."""
        award = rules.score_verdict(verdict, ctx["image_tainted"], ctx["answer_tainted"],
                                    self.config.false_alarm_penalty)
        changed = fast(conn, q.JUDGE, {"aid": ctx["answer_id"], "verdict": verdict, "correction": correction,
                                        "points": award.points, "now": now})
        if changed != 1:
            raise Conflict("this answer has already been judged")
        if award.reason is not None:
            fast(conn, q.LEDGER, {"player_id": player_id, "answer_id": ctx["answer_id"], "reason": award.reason,
                                   "points": award.points, "created_at": now})
        state: dict[str, Any] = {"session_id": ctx["session_id"], "status": "playing", "now_ms": now, "image": None}
        if verdict == "correct":
            answers_now = [dict(a, verdict="correct") if a["answer_id"] == ctx["answer_id"] else a
                           for a in ctx["answers"]]
            state["image"] = self._image_state(ctx["position"], ctx["opaque_id"], ctx["deadline_at"], answers_now, now)
        else:
            if fast(conn, q.END_IMAGE, {"si": ctx["si_id"], "now": now, "reason": "wrong"}) != 1:
                raise Conflict("this image is over")
            if ctx["next_image"] is not None:
                deadline = rules.deadline_for(now, self.config.image_seconds)
                fast(conn, q.SERVE, {"si": ctx["next_image"][0], "now": now, "deadline": deadline})
                moved = fast(conn, q.MOVE_ON, {"sid": ctx["session_id"], "from": ctx["position"],
                                                "to": ctx["position"] + 1})
                state["image"] = self._image_state(ctx["position"] + 1, ctx["next_image"][1], deadline, [], now)
            else:
                moved = fast(conn, q.FINISH, {"sid": ctx["session_id"], "from": ctx["position"], "now": now,
                                               "to": rules.IMAGES_PER_SESSION})
                state["status"] = "finished"
            if moved != 1:
                raise Conflict("a concurrent request changed this session; reload the state")
        q.store_request(conn, player_id, request_id, "verdict", state, now)
        return state

    def _opaque(self, conn, image_id: int) -> str:
        """The client-visible id of an image (immutable, so cached for good)."""
        opaque = self._opaque_ids.get(image_id)
        if opaque is None:
            opaque = self._opaque_ids[image_id] = fast(conn, q.OPAQUE_ID, {"image_id": image_id})[0][0]
        return opaque

    @staticmethod
    def _image_state(position: int, opaque_id: str, deadline_at: int, answers_list: list, now: int) -> dict[str, Any]:
        return {"index": position, "total": rules.IMAGES_PER_SESSION, "url": f"/img/{opaque_id}",
                "deadline_ms": deadline_at, "seconds_left": rules.seconds_left(now, deadline_at),
                "answers": answers_list}

    def _tx_replay(self, conn, player_id: int, request_id: str, kind: str) -> dict[str, Any] | None:
        row = q.first(fast(conn, q.REPLAY, {"pid": player_id, "rid": request_id}))
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

    def _create_session(self, conn, player_id: int, now: int, reliable_ids, all_ids, source_of, plan_rng):
        try:
            plan = rules.plan_session(plan_rng, reliable_ids, all_ids, source_of)
        except ValueError as exc:
            raise Unavailable(f"the game is not ready: {exc}") from exc
        session_id = new_id()
        conn.execute(insert(sessions).values(id=session_id, player_id=player_id, status="playing",
                                             current_index=0, created_at=now))
        deadline = rules.deadline_for(now, self.config.image_seconds)
        conn.execute(insert(session_images), [{
            "session_id": session_id, "position": position, "image_id": item.image_id, "tainted": item.tainted,
            "served_at": now if position == 0 else None, "deadline_at": deadline if position == 0 else None,
        } for position, item in enumerate(plan)])
        return q.load_session(conn, player_id, session_id)

    def _advance_if_expired(self, conn, session, now: int):
        """End the current image if its deadline passed (reason "timeout");
        returns (session, current session image or None when finished)."""
        si = q.current_si(conn, session)
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
                served_at=now, deadline_at=rules.deadline_for(now, self.config.image_seconds)))
            conn.execute(update(sessions).where(sessions.c.id == session.id).values(current_index=nxt))
        else:
            conn.execute(update(sessions).where(sessions.c.id == session.id).values(
                status="finished", finished_at=now, current_index=rules.IMAGES_PER_SESSION))
        session = q.load_session(conn, session.player_id, session.id)
        return session, q.current_si(conn, session)

    def _state(self, conn, session, si, now: int) -> dict[str, Any]:
        """The client-visible state: identical keys whatever the image's kind, no score."""
        state: dict[str, Any] = {"session_id": session.id, "status": session.status, "now_ms": now, "image": None}
        if session.status == "playing" and si is not None:
            rows = fast(conn, q.IMAGE_ANSWERS, {"si": si.id})
            state["image"] = self._image_state(si.position, self._opaque(conn, si.image_id), si.deadline_at, [
                {"answer_id": r.id, "question": r.question, "answer": r.served_answer, "verdict": r.verdict}
                for r in rows], now)
        return state
