"""The game service: the one place where the rules of SPEC §1 meet storage.

Adapters (the JSON API, the bot) call these methods with an already
authenticated player id and render the plain dicts they return. Every
mutating call is idempotent on a client request id, keeps its database
transactions short (the model is never awaited inside one), and is safe when
the same player sends requests concurrently (a per-player lock in the process,
unique constraints across processes).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from sqlalchemy.exc import IntegrityError

from game import descriptions, rules, validation
from game import storage as q
from game.question_types import classify_question
from game.storage import AskTarget, ImageExpired, Replay, SessionStore, new_id
from game.db import Database, fast
from game.errors import Conflict, Expired, Invalid, NotFound, Unavailable
from game import limits as lim
from game.i18n import N_
from game.limits import Banned, Limits
from game.locks import KeyedLocks
from game.metrics import GameMetrics
from game.players import player_key
from game.tables import answers
from models.base import VQAModel

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """Epoch milliseconds: the unit of every stored time."""
    return int(time.time() * 1000)


REQUEST_ID_MAX = 128
BANNED_MESSAGE = N_("an admin has banned this account from the game")
LIMITED = {"question": N_("too many questions; try again in {seconds} s"),
           "verdict": N_("too many verdicts; try again in {seconds} s"),
           "session": N_("too many new games; try again in {seconds} s")}


def clean_request_id(value: object) -> str:
    """A client-generated idempotency key: 1–128 printable characters."""
    if not isinstance(value, str) or not value or len(value) > REQUEST_ID_MAX or not value.isprintable():
        raise Invalid("request_id must be a string of 1 to {max_len} printable characters", max_len=REQUEST_ID_MAX)
    return value


def _tx_chat_guard(conn, key: str, buckets, now: int):
    """(each bucket's count after this hit, whether the player with this key is banned)."""
    return lim.tx_hit(conn, buckets, now), lim.tx_is_banned_key(conn, key)


def _enforce(action: str, results: list[tuple[int, int, int]] | None) -> None:
    """Banned when the guard found a ban (None), RateLimited when a count is over its limit."""
    if results is None:
        raise Banned(BANNED_MESSAGE)
    refused = lim.refusal(results, LIMITED[action])
    if refused is not None:
        raise refused


@dataclass(frozen=True)
class GameConfig:
    """The rule parameters the service needs from the settings (SPEC §5.1)."""

    image_seconds: float = 120.0
    taint_prob: float = 0.8
    false_alarm_penalty: int = 10
    pool_cache_seconds: float = 10.0
    leaderboard_cache_seconds: float = 5.0
    describe_seconds: float = rules.DESCRIBE_SECONDS


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
        metrics: GameMetrics | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.db = db
        self.model = model
        self.metrics = metrics or GameMetrics()
        self.metrics.watch_model(model)
        self.limits = limits or Limits()
        self.config = config or GameConfig()
        self.clock = clock
        self.rng = rng or random.SystemRandom()
        self._hash_key = hash_key
        self._locks = KeyedLocks()
        self._player_ids: LRUCache[bytes, tuple[int, str | None]] = LRUCache(100_000)
        self._image_bytes: LRUCache[int, bytes] = LRUCache(512)
        self._image_by_opaque: LRUCache[str, tuple[str, bytes]] = LRUCache(512)
        self._pools: tuple[float, list[int], list[int], dict[int, str]] | None = None
        self._boards: dict[tuple, tuple[float, list]] = {}
        self.store = SessionStore(self.config.image_seconds, clock)

    # ------------------------------------------------------------------ players

    async def upsert_player(self, telegram_id: int, display_name: str | None = None) -> int:
        """The player id for a Telegram user, creating the player on first sight.

        Only the keyed hash of the Telegram id is stored (SPEC §1.4)."""
        key = player_key(self._hash_key, telegram_id)
        name = rules.storable_text(display_name or "").strip()[:64] or None
        cached = self._player_ids.get(key)
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
        self._player_ids[key] = (player_id, name)
        return player_id

    def player_key_for(self, telegram_id: int) -> str:
        """The stored (keyed-hash) identity of a Telegram user, e.g. for an admin's /ban."""
        return player_key(self._hash_key, telegram_id)

    async def check_chat(self, telegram_id: int, chat_id: int | None) -> None:
        """Before the bot handles an update: count it against the chat's limit
        (RateLimited when over), then refuse a banned sender (Banned)."""
        buckets = self.limits.rates("update", None, None, chat_id)
        results, banned = await self.db.run_write(_tx_chat_guard, self.player_key_for(telegram_id), buckets,
                                                  self.clock())
        refused = lim.refusal(results, N_("too many messages; try again in {seconds} s"))
        if refused is not None:
            raise refused
        if banned:
            raise Banned(BANNED_MESSAGE)

    # ------------------------------------------------------------------ sessions

    async def start_or_resume(self, player_id: int, *, origin: str | None = None) -> dict[str, Any]:
        """The player's active session (SPEC §1.1: at most one), created if none.

        Creating one counts against the session-start limits of the player and of
        `origin` (the client's network, game/limits.py) and may be gold-only (the
        gates of game/limits.py); resuming does neither."""
        async with self._locks.hold(player_id):
            now = self.clock()
            if await self.db.run_read(lim.tx_is_banned, player_id):
                raise Banned(BANNED_MESSAGE)
            state = await self.db.run_read(self.store.state_if_fresh, player_id, now)
            if state is not None:
                return state
            reliable_ids, all_ids, source_of = await self._pools_cached()
            plan_rng = random.Random(self.rng.getrandbits(64))
            try:
                state, created = await self.db.run_write(self._tx_start, player_id, now, origin, plan_rng,
                                                         reliable_ids, all_ids, source_of)
            except IntegrityError:  # another worker started the player's session first: resume it
                state, created = await self.db.run_write(self._tx_start, player_id, now, origin, plan_rng,
                                                         reliable_ids, all_ids, source_of)
            if created:
                self.metrics.record_session_started()
            elif state["status"] == "finished":  # the active session's last image timed out just now
                self.metrics.record_session_finished("timeout")
            return state

    async def current(self, player_id: int) -> dict[str, Any]:
        """The active session's state; NotFound when the player has none."""
        async with self._locks.hold(player_id):
            now = self.clock()
            state = await self.db.run_read(self.store.state_if_fresh, player_id, now)
            if state is not None:
                return state
            state = await self.db.run_write(self.store.current, player_id, now)
            if state["status"] == "finished":  # the active session's last image timed out just now
                self.metrics.record_session_finished("timeout")
            return state

    async def ask(self, player_id: int, session_id: str, request_id: object, text: object, *,
                  origin: str | None = None) -> dict[str, Any]:
        """Ask the model a question about the current image: `{"answer_id", "answer"}`.

        Validates before touching anything; after the deadline the image ends,
        the session advances and `Expired` is raised. A new question (not a
        replay) counts against the question limits before the model is asked.
        The model runs outside any transaction; the answer and the idempotency
        record commit together."""
        request_id = clean_request_id(request_id)
        question = rules.clean_question(text)
        if not isinstance(session_id, str):
            raise NotFound("no such session")
        async with self._locks.hold(player_id):
            now = self.clock()
            target = await self.db.run_read(self.store.ask_target, player_id, session_id, request_id, now)
            if isinstance(target, Replay):
                return target.response
            if isinstance(target, ImageExpired):
                await self._expire(player_id, session_id, now)
                raise Expired("time is up for this image; the session moved on")
            assert isinstance(target, AskTarget)
            try:
                await self._guard("question", player_id, origin, now)
            except lim.RateLimited:  # a retry of an answered question is replayed, never refused
                replay = await self.db.run_read(self.store.replay, player_id, request_id, "ask")
                if replay is None:
                    raise
                return replay.response
            si_id, image_id = target.si_id, target.image_id
            taint = rules.should_taint(self.rng, target.tainted, self.config.taint_prob)
            image = await self._image_content(image_id)
            result = await self.model.answer(image, question, taint)
            answer_id = new_id()
            served = rules.storable_text(result.served)
            response = {"answer_id": answer_id, "answer": served}
            row = {
                "id": answer_id, "session_id": session_id, "session_image_id": si_id, "player_id": player_id,
                "image_id": image_id, "question": question, "question_type": classify_question(question),
                "honest_answer": rules.storable_text(result.honest), "served_answer": served,
                "tainted": bool(result.tainted), "strategy": result.strategy if result.tainted else None,
                "model_id": rules.storable_text(result.model_id, answers.c.model_id.type.length),
                "latency_ms": float(result.latency_ms), "verdict": None, "correction": None, "points": 0,
                "asked_at": now, "judged_at": None,
            }
            try:
                stored = await self.db.run_write(q.tx_store_answer, player_id, request_id, row, response, now)
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "ask")
            self.metrics.record_answer(row["latency_ms"])
            return stored

    async def verdict(self, player_id: int, answer_id: str, request_id: object, verdict: object,
                      correction: object = None, *, origin: str | None = None) -> dict[str, Any]:
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
            ctx = await self.db.run_read(self.store.verdict_context, player_id, answer_id, request_id, verdict, now)
            if isinstance(ctx, Replay):
                return ctx.response
            if isinstance(ctx, ImageExpired):
                await self._expire(player_id, ctx.session_id, now)
                raise Expired("time is up for this image; the session moved on")
            if correction is not None:
                rules.check_correction_differs(correction, ctx.served_answer)
            award = rules.score_verdict(verdict, ctx.image_tainted, ctx.answer_tainted,
                                        self.config.false_alarm_penalty)
            try:
                state = await self._guarded_write("verdict", player_id, origin, now, self.store.apply_verdict,
                                                  player_id, request_id, ctx, verdict, correction, award, now)
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, "verdict")
            self.metrics.record_verdict(verdict, find=verdict == "wrong" and not ctx.image_tainted)
            if state["status"] == "finished":
                self.metrics.record_session_finished("wrong")
            return state

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
                            agrees: object, *, origin: str | None = None) -> dict[str, Any]:
        """Vote on a find (agrees = the answer is wrong); idempotent on request_id.
        A confirming vote pays the finder's bonus once, so the leaderboards are refreshed."""
        request_id = clean_request_id(request_id)
        agrees = validation.clean_agrees(agrees)
        find_id = validation.clean_find_id(find_id)
        async with self._locks.hold(player_id):
            now = self.clock()
            try:
                result = await self._guarded_write("verdict", player_id, origin, now, validation.tx_record_vote,
                                                   player_id, find_id, request_id, agrees, now)
            except IntegrityError:  # a concurrent vote or bonus in another worker: decide again
                now = self.clock()
                result = await self._guarded_write("verdict", player_id, origin, now, validation.tx_record_vote,
                                                   player_id, find_id, request_id, agrees, now)
        if result.pop("_bonus_paid", False):
            self._boards.clear()
        return result

    # ------------------------------------------------------------------ describe round (SPEC §3.5)

    async def describe_task(self, player_id: int) -> dict[str, Any]:
        """The player's open describe task, or a new image to describe (game/descriptions.py)."""
        async with self._locks.hold(player_id):
            rng = random.Random(self.rng.getrandbits(64))
            return await self.db.run_write(descriptions.tx_open_task, player_id, new_id(), self.clock(),
                                           self.config.describe_seconds, rng)

    async def describe(self, player_id: int, task_id: object, request_id: object, text: object) -> dict[str, Any]:
        """Store a description of the task's image; idempotent on request_id. Everything is
        checked before anything is stored."""
        request_id = clean_request_id(request_id)
        text = rules.clean_description(text)
        task_id = descriptions.clean_id(task_id, "image to describe")
        async with self._locks.hold(player_id):
            try:
                return await self.db.run_write(descriptions.tx_describe, player_id, task_id, new_id(), request_id,
                                               text, self.clock())
            except IntegrityError:
                return await self._replay_or_conflict(player_id, request_id, descriptions.DESCRIBE_KIND)

    async def next_description(self, player_id: int) -> dict[str, Any]:
        """Another player's description to rate; NotFound when none."""
        return await self.db.run_read(descriptions.tx_next_to_rate, player_id)

    async def rate_description(self, player_id: int, description_id: object, request_id: object,
                               fits: object) -> dict[str, Any]:
        """Rate a description (fits = it fits the picture); a confirming rating pays the writer once."""
        request_id = clean_request_id(request_id)
        fits = descriptions.clean_fits(fits)
        description_id = descriptions.clean_id(description_id, "description")
        async with self._locks.hold(player_id):
            try:
                result = await self.db.run_write(descriptions.tx_rate, player_id, description_id, request_id, fits,
                                                 self.clock())
            except IntegrityError:  # a concurrent rating elsewhere: decide again
                result = await self.db.run_write(descriptions.tx_rate, player_id, description_id, request_id,
                                                 fits, self.clock())
        if result.pop("_paid", False):
            self._boards.clear()
        return result

    # ------------------------------------------------------------------ images

    async def image_by_opaque_id(self, opaque_id: str) -> tuple[str, bytes] | None:
        """(mime, bytes) of an image by the only id clients ever see."""
        hit = self._image_by_opaque.get(opaque_id)
        if hit is not None:
            return hit
        value = await self.db.run_read(q.tx_image_by_opaque, opaque_id)
        if value is not None:
            self._image_by_opaque[opaque_id] = value
        return value

    async def refresh_pool_metrics(self) -> None:
        """Count the reliable and the whole image pool for the metrics (read when scraped)."""
        reliable, all_ids, _ = await self._pools_cached()  # at most pool_cache_seconds old
        self.metrics.set_pool_sizes(len(reliable), len(all_ids))

    async def ping(self) -> None:
        """Raise if the database cannot answer (for /healthz)."""
        await self.db.run_read(q.tx_ping)

    def invalidate_pools(self) -> None:
        """Forget the cached pool lists (after an import or a reliability run)."""
        self._pools = None

    # ------------------------------------------------------------------ async internals

    async def _pools_cached(self) -> tuple[list[int], list[int], dict[int, str]]:
        """(reliable ids, all ids, each id's stratum: game/rules.look_strata), re-read at most every
        `pool_cache_seconds`."""
        now = time.monotonic()
        if self._pools is not None and (now - self._pools[0]) < self.config.pool_cache_seconds:
            return self._pools[1], self._pools[2], self._pools[3]
        rows = await self.db.run_read(q.tx_pools)
        all_ids = [r[0] for r in rows]
        reliable = [r[0] for r in rows if r[1]]
        source_of = rules.look_strata(reliable, {r[0]: r[2] for r in rows})
        self._pools = (now, reliable, all_ids, source_of)
        return reliable, all_ids, source_of

    async def _image_content(self, image_id: int) -> bytes:
        hit = self._image_bytes.get(image_id)
        if hit is not None:
            return hit
        content = await self.db.run_read(q.tx_image_content, image_id)
        self._image_bytes[image_id] = content
        return content

    def _tx_start(self, conn, player_id: int, now: int, origin: str | None, plan_rng: random.Random,
                  reliable_ids: list[int], all_ids: list[int], source_of) -> tuple[dict[str, Any], bool]:
        """(state, whether a session was created): the store's start, whose plan — run only when
        a session is created — first counts the start against its limits (RateLimited, rolled
        back with the transaction) and draws from the reliable pool alone for a gated player."""
        created = False

        def plan() -> list[rules.PlannedImage]:
            nonlocal created
            created = True
            refused = lim.refusal(lim.tx_hit(conn, self.limits.rates("session", player_id, origin, None), now),
                                  LIMITED["session"])
            if refused is not None:
                raise refused
            pool = all_ids
            if lim.tx_gold_only(conn, self.limits, player_id, origin, now) \
                    and len(set(reliable_ids)) >= rules.IMAGES_PER_SESSION:
                pool = reliable_ids  # the split stays 5/5; only the untainted five are gold too
            try:
                return rules.plan_session(plan_rng, reliable_ids, pool, source_of)
            except ValueError as exc:
                raise Unavailable("the game is not ready: {reason}", reason=str(exc)) from exc

        return self.store.start(conn, player_id, now, plan), created

    async def _guard(self, action: str, player_id: int, origin: str | None, now: int) -> None:
        """Refuse a banned player, then count one `action` against the player's and the
        origin's limits (one write, shared by every worker); RateLimited when over."""
        buckets = self.limits.rates(action, player_id, origin, None)
        if not buckets:
            if await self.db.run_read(lim.tx_is_banned, player_id):
                raise Banned(BANNED_MESSAGE)
            return
        _enforce(action, await self.db.run_write(lim.tx_guard, player_id, buckets, now))

    async def _guarded_write(self, action: str, player_id: int, origin: str | None, now: int, fn, *args):
        """`run_write(fn, *args)` behind the same checks as `_guard`, counted in the same
        transaction: one write per request instead of two on the single SQLite writer."""
        buckets = self.limits.rates(action, player_id, origin, None)
        results, value = await self.db.run_write(lim.tx_guarded, player_id, buckets, now, fn, *args)
        _enforce(action, results)
        return value

    async def _expire(self, player_id: int, session_id: str, now: int) -> None:
        """End the timed-out image (counting the session when that finished it)."""
        def tx(conn) -> str:
            self.store.expire(conn, player_id, session_id, now)
            return q.load_session(conn, player_id, session_id).status

        if await self.db.run_write(tx) == "finished":
            self.metrics.record_session_finished("timeout")

    async def _replay_or_conflict(self, player_id: int, request_id: str, kind: str) -> dict[str, Any]:
        replay = await self.db.run_read(self.store.replay, player_id, request_id, kind)
        if replay is None:
            raise Conflict("a concurrent request changed this session; reload the state")
        return replay.response
