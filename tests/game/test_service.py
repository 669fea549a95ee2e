"""GameService against a real migrated database (SQLite file and PostgreSQL): sessions,
timers, scoring, idempotency, isolation between players, leaderboards."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from game.errors import Conflict, Expired, Invalid, NotFound
from game.tables import answers, points_ledger, requests, session_images, sessions
from tests.conftest import FakeClock

pytestmark = pytest.mark.both_backends


async def count(db, table) -> int:
    async with db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def plan_of(db, session_id):
    async with db.read() as conn:
        return (await conn.execute(select(session_images).where(session_images.c.session_id == session_id)
                                   .order_by(session_images.c.position))).all()


async def test_start_creates_durable_plan_and_resume_returns_same(service, db, clock: FakeClock):
    pid = await service.upsert_player(1001, "Ann")
    state = await service.start_or_resume(pid)
    assert state["status"] == "playing"
    assert state["image"]["index"] == 0 and state["image"]["total"] == 10
    assert state["image"]["deadline_ms"] == clock.now + 120_000
    plan = await plan_of(db, state["session_id"])
    assert len(plan) == 10 and sum(p.tainted for p in plan) == 5
    assert len({p.image_id for p in plan}) == 10
    assert [p.served_at is not None for p in plan] == [True] + [False] * 9
    clock.advance(30)
    again = await service.start_or_resume(pid)
    assert again["session_id"] == state["session_id"]
    assert again["image"]["deadline_ms"] == state["image"]["deadline_ms"]
    assert again["image"]["seconds_left"] == 90.0
    assert (await service.current(pid))["session_id"] == state["session_id"]
    assert await count(db, sessions) == 1


async def test_player_key_is_hashed(service, db):
    from game.tables import players

    pid = await service.upsert_player(424242, "Bo")
    assert await service.upsert_player(424242, "Bo") == pid
    async with db.read() as conn:
        row = (await conn.execute(select(players).where(players.c.id == pid))).one()
    assert "424242" not in row.player_key and len(row.player_key) == 64


async def test_current_without_session_is_404(service):
    pid = await service.upsert_player(7)
    with pytest.raises(NotFound):
        await service.current(pid)


async def play_image(service, pid, state, verdict="wrong", rid=""):
    got = await service.ask(pid, state["session_id"], f"q{rid}", "How many circles are there?")
    return got, await service.verdict(pid, got["answer_id"], f"v{rid}", verdict, "three" if verdict == "wrong" else None)


async def test_full_session_scores_and_summary(service, db):
    pid = await service.upsert_player(1, "P")
    state = await service.start_or_resume(pid)
    sid = state["session_id"]
    with pytest.raises(Conflict):
        await service.summary(pid, sid)
    # Correct keeps the image.
    got = await service.ask(pid, sid, "r-c", "What colour is the square?")
    after = await service.verdict(pid, got["answer_id"], "r-cv", "correct")
    assert after["image"]["index"] == 0 and len(after["image"]["answers"]) == 1
    for i in range(10):
        assert state["image"]["index"] == i
        _, state = await play_image(service, pid, state, rid=str(i))
    assert state["status"] == "finished" and state["image"] is None
    summary = await service.summary(pid, sid)
    assert [img["index"] for img in summary["images"]] == list(range(10))
    assert sum(img["tainted"] for img in summary["images"]) == 5
    expected = 0
    async with db.read() as conn:
        rows = (await conn.execute(select(answers, session_images.c.tainted.label("image_tainted"))
                                   .join(session_images, session_images.c.id == answers.c.session_image_id))).all()
        ledger = (await conn.execute(select(func.sum(points_ledger.c.points)))).scalar_one() or 0
    for row in rows:
        if row.verdict == "wrong":
            expected += 20 if row.tainted else (-10 if row.image_tainted else 0)
        assert not (row.tainted and not row.image_tainted)  # untainted images never get tainted answers
        assert row.honest_answer and row.served_answer and row.model_id and row.asked_at
    assert summary["total_points"] == expected == ledger
    with pytest.raises(NotFound):
        await service.current(pid)
    # A new session starts after the old one finished.
    fresh = await service.start_or_resume(pid)
    assert fresh["session_id"] != sid


async def test_wrong_needs_correction_and_stores_nothing(service, db):
    pid = await service.upsert_player(2)
    state = await service.start_or_resume(pid)
    got = await service.ask(pid, state["session_id"], "a", "Is there a red circle?")
    before = (await count(db, requests), await count(db, points_ledger))
    for bad in (None, "", "   ", "x" * 201, 12):
        with pytest.raises(Invalid):
            await service.verdict(pid, got["answer_id"], "b", "wrong", bad)
    with pytest.raises(Invalid):
        await service.verdict(pid, got["answer_id"], "b", "maybe", "x")
    assert (await count(db, requests), await count(db, points_ledger)) == before
    async with db.read() as conn:
        assert (await conn.execute(select(answers.c.verdict))).scalar_one() is None


async def test_bad_questions_store_nothing(service, db):
    pid = await service.upsert_player(3)
    state = await service.start_or_resume(pid)
    for bad in ("", "  ", "\x00\x00", "q" * 301, None, 3):
        with pytest.raises(Invalid):
            await service.ask(pid, state["session_id"], "r", bad)
    for bad_rid in ("", None, 5, "x" * 129):
        with pytest.raises(Invalid):
            await service.ask(pid, state["session_id"], bad_rid, "ok?")
    assert await count(db, answers) == 0 and await count(db, requests) == 0


async def test_idempotent_retries(service, db):
    pid = await service.upsert_player(4)
    state = await service.start_or_resume(pid)
    first = await service.ask(pid, state["session_id"], "same", "How many squares?")
    again = await service.ask(pid, state["session_id"], "same", "How many squares?")
    assert again == first and await count(db, answers) == 1
    v1 = await service.verdict(pid, first["answer_id"], "v-same", "wrong", "twelve")
    v2 = await service.verdict(pid, first["answer_id"], "v-same", "wrong", "twelve")
    assert v1["session_id"] == v2["session_id"] and v1["image"]["index"] == v2["image"]["index"] == 1
    assert v1["image"]["deadline_ms"] == v2["image"]["deadline_ms"]
    ledger = await count(db, points_ledger)
    assert ledger <= 1 and await count(db, requests) == 2
    with pytest.raises(Conflict):  # the request id belongs to an ask, not a verdict
        await service.verdict(pid, first["answer_id"], "same", "correct")
    with pytest.raises(Conflict):  # already judged, with a new request id
        await service.verdict(pid, first["answer_id"], "v-other", "correct")
    assert await count(db, points_ledger) == ledger


async def test_concurrent_same_request_is_stored_once(service, db):
    pid = await service.upsert_player(5)
    state = await service.start_or_resume(pid)
    results = await asyncio.gather(*(service.ask(pid, state["session_id"], "dup", "What shape is it?")
                                     for _ in range(8)))
    assert all(r == results[0] for r in results)
    assert await count(db, answers) == 1
    verdicts = await asyncio.gather(*(service.verdict(pid, results[0]["answer_id"], "dupv", "wrong", "a heptagon")
                                      for _ in range(8)), return_exceptions=True)
    assert not [v for v in verdicts if isinstance(v, Exception)]
    assert await count(db, requests) == 2


async def test_ask_again_before_judging_conflicts(service, db):
    pid = await service.upsert_player(6)
    state = await service.start_or_resume(pid)
    await service.ask(pid, state["session_id"], "a1", "What colour?")
    with pytest.raises(Conflict):
        await service.ask(pid, state["session_id"], "a2", "What shape?")
    assert await count(db, answers) == 1


async def test_other_players_cannot_see_or_touch(service, db):
    alice = await service.upsert_player(100)
    bob = await service.upsert_player(200)
    state = await service.start_or_resume(alice)
    got = await service.ask(alice, state["session_id"], "x", "How many?")
    with pytest.raises(NotFound):
        await service.ask(bob, state["session_id"], "y", "How many?")
    with pytest.raises(NotFound):
        await service.verdict(bob, got["answer_id"], "z", "wrong", "fifteen")
    with pytest.raises(NotFound):
        await service.summary(bob, state["session_id"])
    with pytest.raises(NotFound):
        await service.ask(alice, "no-such-session", "w", "How many?")
    with pytest.raises(NotFound):
        await service.verdict(alice, "no-such-answer", "w", "correct")
    async with db.read() as conn:
        assert (await conn.execute(select(answers.c.verdict))).scalar_one() is None


async def test_deadline_ends_image_and_late_requests_conflict(service, db, clock: FakeClock):
    pid = await service.upsert_player(8)
    state = await service.start_or_resume(pid)
    got = await service.ask(pid, state["session_id"], "a", "Which colour?")
    clock.advance(120)  # exactly at the deadline: late
    with pytest.raises(Expired):
        await service.verdict(pid, got["answer_id"], "v", "wrong", "turquoise")
    now_state = await service.current(pid)
    assert now_state["image"]["index"] == 1
    assert now_state["image"]["deadline_ms"] == clock.now + 120_000
    async with db.read() as conn:
        first = (await conn.execute(select(session_images).where(session_images.c.position == 0))).one()
        assert first.end_reason == "timeout" and first.ended_at == clock.now
        assert (await conn.execute(select(answers.c.verdict))).scalar_one() is None
    assert await count(db, points_ledger) == 0
    # A question after the next deadline: refused, and the session moves on again.
    clock.advance(121)
    with pytest.raises(Expired):
        await service.ask(pid, state["session_id"], "late", "Anything?")
    assert (await service.current(pid))["image"]["index"] == 2
    assert await count(db, answers) == 1


async def test_resume_after_timeout_serves_next(service, clock: FakeClock):
    pid = await service.upsert_player(9)
    state = await service.start_or_resume(pid)
    clock.advance(500)
    resumed = await service.start_or_resume(pid)
    assert resumed["session_id"] == state["session_id"]
    assert resumed["image"]["index"] == 1 and resumed["image"]["seconds_left"] == 120.0


async def test_last_image_timeout_finishes(service, clock: FakeClock):
    pid = await service.upsert_player(10)
    state = await service.start_or_resume(pid)
    for index in range(1, 10):
        clock.advance(121)
        assert (await service.start_or_resume(pid))["image"]["index"] == index
    clock.advance(121)
    final = await service.current(pid)  # the request that notices the last timeout sees the end
    assert final["status"] == "finished" and final["image"] is None
    with pytest.raises(NotFound):
        await service.current(pid)
    summary = await service.summary(pid, state["session_id"])
    assert summary["total_points"] == 0 and all(i["end_reason"] == "timeout" for i in summary["images"])


async def test_state_keys_do_not_reveal_taint(service, db):
    pid = await service.upsert_player(11)
    state = await service.start_or_resume(pid)
    plan = await plan_of(db, state["session_id"])
    shapes = {True: set(), False: set()}

    def shape(obj):
        if isinstance(obj, dict):
            return tuple(sorted((k, shape(v)) for k, v in obj.items()))
        if isinstance(obj, list):
            return tuple(shape(v) for v in obj)
        return type(obj).__name__

    for i in range(10):
        got = await service.ask(pid, state["session_id"], f"a{i}", "What colour is it?")
        mid = await service.verdict(pid, got["answer_id"], f"c{i}", "correct")
        shapes[plan[i].tainted].add((shape(state), shape(mid), tuple(sorted(got))))
        assert "points" not in str(shape(mid)) and "score" not in str(shape(mid))
        got2 = await service.ask(pid, state["session_id"], f"b{i}", "How many?")
        state = await service.verdict(pid, got2["answer_id"], f"w{i}", "wrong", "fourteen")
    assert shapes[True] == shapes[False]


async def test_leaderboards(service, db, clock: FakeClock):
    from sqlalchemy import insert

    a = await service.upsert_player(501, "Alice")
    b = await service.upsert_player(502, "Bob")
    c = await service.upsert_player(503, None)
    old = clock.now - 30 * 86_400_000
    async with db.write() as conn:
        await conn.execute(insert(points_ledger), [
            {"player_id": a, "reason": "tainted_catch", "points": 20, "created_at": old},
            {"player_id": a, "reason": "tainted_catch", "points": 20, "created_at": old},
            {"player_id": b, "reason": "tainted_catch", "points": 20, "created_at": clock.now},
            {"player_id": c, "reason": "tainted_catch", "points": 20, "created_at": clock.now},
            {"player_id": c, "reason": "false_alarm", "points": -10, "created_at": clock.now},
        ])
    allt = await service.leaderboard("all", player_id=c)
    assert [(p["name"], p["points"], p["rank"]) for p in allt["players"]][:2] == [("Alice", 40, 1), ("Bob", 20, 2)]
    assert allt["me"]["points"] == 10 and allt["me"]["rank"] == 3 and allt["me"]["name"].startswith("player ")
    week = await service.leaderboard("week")
    assert [(p["name"], p["points"]) for p in week["players"]][0] == ("Bob", 20)
    assert "Alice" not in [p["name"] for p in week["players"]]
    with pytest.raises(Invalid):
        await service.leaderboard("month")


async def test_two_workers_on_one_database_stay_consistent(service, db_url, model, clock):
    """Two services on the same file behave like two web workers: the unique
    constraints, not the in-process lock, keep retries and races correct."""
    import random as _random

    from game.db import Database
    from game.service import GameConfig, GameService
    from tests.conftest import TEST_HASH_KEY

    other_db = Database(db_url)
    other = GameService(other_db, model, hash_key=TEST_HASH_KEY, clock=clock, rng=_random.Random(9),
                        config=GameConfig())
    try:
        pid = await service.upsert_player(777)
        assert await other.upsert_player(777) == pid
        starts = await asyncio.gather(service.start_or_resume(pid), other.start_or_resume(pid),
                                      return_exceptions=True)
        sids = {s["session_id"] for s in starts if isinstance(s, dict)}
        assert len(sids) == 1, starts  # one playing session, whoever won the race
        sid = sids.pop()
        asked = await asyncio.gather(service.ask(pid, sid, "same-rid", "How many?"),
                                     other.ask(pid, sid, "same-rid", "How many?"))
        assert asked[0] == asked[1]
        assert await count(service.db, answers) == 1
        judged = await asyncio.gather(
            service.verdict(pid, asked[0]["answer_id"], "v-a", "wrong", "eleven"),
            other.verdict(pid, asked[0]["answer_id"], "v-b", "wrong", "twelve"), return_exceptions=True)
        ok = [j for j in judged if isinstance(j, dict)]
        assert len(ok) == 1 and all(isinstance(j, Conflict) for j in judged if not isinstance(j, dict))
        async with service.db.read() as conn:
            row = (await conn.execute(select(answers.c.verdict, answers.c.correction))).one()
            ledger = (await conn.execute(select(func.count()).select_from(points_ledger))).scalar_one()
        assert row.verdict == "wrong" and row.correction in ("eleven", "twelve") and ledger <= 1
        assert (await service.current(pid))["image"]["index"] == (await other.current(pid))["image"]["index"] == 1
    finally:
        await other_db.dispose()


async def test_too_small_pool_is_unavailable_and_stores_nothing(db, model, clock):
    from game.errors import Unavailable
    from game.service import GameService
    from tests.conftest import TEST_HASH_KEY, seed_images

    await seed_images(db, total=12, reliable=4)  # needs 5 reliable
    service = GameService(db, model, hash_key=TEST_HASH_KEY, clock=clock)
    pid = await service.upsert_player(99)
    with pytest.raises(Unavailable):
        await service.start_or_resume(pid)
    assert await count(db, sessions) == 0 and await count(db, session_images) == 0


async def test_answer_is_not_stored_when_the_image_closed_meanwhile(service, db_url, db, clock):
    """Worker A asks; while the model thinks, worker B sees the deadline pass and
    moves the session on. A's answer must not be attached to the closed image."""
    import random as _random

    from game.db import Database
    from game.service import GameConfig, GameService
    from models.base import ModelAnswer
    from tests.conftest import TEST_HASH_KEY

    release = asyncio.Event()
    started = asyncio.Event()

    class SlowModel:
        model_id = "slow"

        async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
            started.set()
            await release.wait()
            return ModelAnswer("two", "two", False, None, "slow", 1.0)

        async def aclose(self) -> None:
            return None

    service.model = SlowModel()
    other_db = Database(db_url)
    other = GameService(other_db, SlowModel(), hash_key=TEST_HASH_KEY, clock=clock, rng=_random.Random(3),
                        config=GameConfig())
    try:
        pid = await service.upsert_player(4242)
        state = await service.start_or_resume(pid)
        asking = asyncio.create_task(service.ask(pid, state["session_id"], "slow-q", "How many?"))
        await started.wait()
        clock.advance(121)
        moved = await other.current(pid)
        assert moved["image"]["index"] == 1
        release.set()
        with pytest.raises(Conflict):
            await asking
        assert await count(db, answers) == 0 and await count(db, requests) == 0
    finally:
        await other_db.dispose()


class ControlCharacterModel:
    """A model endpoint that returns a NUL and other control characters and an over-long model id."""

    model_id = "m" * 300

    async def answer(self, image: bytes, question: str, taint: bool):
        from models.base import ModelAnswer

        return ModelAnswer(honest="two\x00 circles\x1b", served="two\x00 circles\x1b\nreally", tainted=False,
                           strategy=None, model_id=self.model_id, latency_ms=1.0)

    async def aclose(self) -> None:
        pass


async def test_odd_model_output_and_display_name_are_stored_on_every_backend(db, clock: FakeClock):
    """PostgreSQL refuses NUL in text and a model id longer than its column; SQLite would keep
    both. Neither may lose the answer: control characters go, the id is cut."""
    import random

    from game.service import GameConfig, GameService
    from game.tables import players
    from tests.conftest import TEST_HASH_KEY, seed_images

    await seed_images(db)
    service = GameService(db, ControlCharacterModel(), hash_key=TEST_HASH_KEY, clock=clock, rng=random.Random(7),
                          config=GameConfig(image_seconds=120, taint_prob=0.8, false_alarm_penalty=10))
    pid = await service.upsert_player(5, "Ann\x00a\x07")
    state = await service.start_or_resume(pid)
    got = await service.ask(pid, state["session_id"], "q-nul", "How many circles are there?")
    assert got["answer"] == "two circles\nreally"
    async with db.read() as conn:
        row = (await conn.execute(select(answers.c.honest_answer, answers.c.served_answer, answers.c.model_id))).one()
        name = (await conn.execute(select(players.c.display_name))).scalar_one()
    assert (row.honest_answer, row.served_answer) == ("two circles", "two circles\nreally")
    assert row.model_id == "m" * 256 and name == "Anna"
