"""Races between web workers (separate Database handles on one database) and between
concurrent transactions, on SQLite and PostgreSQL. SQLite serialises writers (BEGIN
IMMEDIATE); on PostgreSQL (READ COMMITTED writes) the same outcomes come from an
IntegrityError retry when two workers start one session, row locks on the image being
answered (game/storage.py) and on the find being voted on (game/validation.py),
`gap evaluate` locking its state (game/evaluation_store.py) and ordered pool reads. Each race here failed on PostgreSQL before its fix."""
from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select, update

from game import evaluation_store
from game.db import Database
from game.evaluation import EvalConfig
from game.evaluation_tables import eval_counts
from game.storage import tx_pools
from game.service import GameConfig, GameService
from game.errors import Conflict
from game.tables import answers, session_images, sessions
from tests.conftest import TEST_HASH_KEY, seed_images
from tests.data.test_evaluate_db import play_sessions
from tests.game.test_validation import bonus_rows, finds_of, play_all_wrong, vote

pytestmark = pytest.mark.both_backends


@pytest.fixture
async def other_worker(db_url, model, clock):
    """A second GameService with its own engine and pools: another web worker."""
    other_db = Database(db_url)
    yield GameService(other_db, model, hash_key=TEST_HASH_KEY, clock=clock, rng=random.Random(9),
                      config=GameConfig())
    await other_db.dispose()


async def test_many_players_across_three_workers_all_finish(service, db, db_url, model, clock):
    """Thirty players play whole sessions at once through three workers: no request may fail
    (no lock or isolation level may turn ordinary concurrency into errors), and every player
    ends with one finished session of ten judged images."""
    workers = [service] + [GameService(Database(db_url), model, hash_key=TEST_HASH_KEY, clock=clock,
                                       rng=random.Random(seed), config=GameConfig()) for seed in (1, 2)]

    async def play(user: int) -> int:
        worker = workers[user % len(workers)]
        pid = await worker.upsert_player(7000 + user)
        state = await worker.start_or_resume(pid)
        judged = 0
        while state["status"] == "playing":
            got = await worker.ask(pid, state["session_id"], f"q{user}-{judged}", "How many circles?")
            state = await worker.verdict(pid, got["answer_id"], f"v{user}-{judged}", "wrong", "thirteen")
            judged += 1
        return judged

    try:
        judged = await asyncio.gather(*(play(user) for user in range(30)), return_exceptions=True)
    finally:
        for worker in workers[1:]:
            await worker.db.dispose()
    assert judged == [10] * 30
    async with db.read() as conn:
        finished = (await conn.execute(select(func.count()).select_from(sessions).where(
            sessions.c.status == "finished"))).scalar_one()
    assert finished == 30


async def test_simultaneous_starts_in_two_workers_resume_one_session(service, other_worker, db):
    """Both workers find no session and create one: the loser must resume the winner's
    session, not fail (a read-then-insert race; before: unique violation on PostgreSQL)."""
    for user in range(8):
        pid = await service.upsert_player(5000 + user)
        starts = await asyncio.gather(service.start_or_resume(pid), other_worker.start_or_resume(pid),
                                      return_exceptions=True)
        assert all(isinstance(s, dict) for s in starts), starts
        assert starts[0]["session_id"] == starts[1]["session_id"]
        async with db.read() as conn:
            playing = (await conn.execute(select(func.count()).select_from(sessions).where(
                sessions.c.player_id == pid, sessions.c.status == "playing"))).scalar_one()
        assert playing == 1


async def test_no_answer_is_stored_on_an_image_another_worker_is_closing(service, db, clock):
    """Another worker is closing the image (its transaction not committed yet) while this one
    stores an answer to it: the store must wait for that transaction and then refuse, as with
    SQLite's serialised writers (before: PostgreSQL stored the answer on the closed image)."""
    pid = await service.upsert_player(8100)
    state = await service.start_or_resume(pid)
    async with db.read() as conn:
        si_id = (await conn.execute(select(session_images.c.id).where(
            session_images.c.session_id == state["session_id"], session_images.c.position == 0))).scalar_one()
    async with db.write() as closing:
        await closing.execute(update(session_images).where(session_images.c.id == si_id)
                              .values(ended_at=clock.now, end_reason="timeout"))
        asking = asyncio.create_task(service.ask(pid, state["session_id"], "racing-q", "How many circles?"))
        await asyncio.sleep(0.3)  # the ask reads the image open and reaches its write meanwhile
    with pytest.raises(Conflict):
        await asking
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(answers))).scalar_one() == 0


async def test_simultaneous_confirming_votes_pay_the_bonus(service, db, clock):
    """Two validators confirm a find at the same moment: each transaction must see the other's
    vote, so the second to commit pays the bonus (before: write skew left finds unpaid on PostgreSQL)."""
    alice, sid = await play_all_wrong(service, clock, 1, "Alice")
    finds = await finds_of(db, sid)
    bob, carol = [await service.upsert_player(u) for u in (2, 3)]
    for find in finds:
        await asyncio.gather(vote(service, bob, find, True), vote(service, carol, find, True))
    assert sorted(await bonus_rows(db)) == sorted((alice, f, 20) for f in finds)


async def test_overlapping_evaluation_runs_take_turns(service, db, db_url, clock, monkeypatch):
    """Two `gap evaluate` runs at once (say, two cron jobs): both succeed and every answer is
    counted once. The first run waits (briefly) after reading the answers, to give the second
    the chance to read the same ones; on SQLite the second cannot begin until the first commits."""
    await play_sessions(service, clock, 4, random.Random(1), careful={0, 1})
    fetch = evaluation_store.fetch_tuples
    arrived: list[int] = []
    both_read = asyncio.Event()

    async def fetch_then_wait(conn, stmt):
        rows = await fetch(conn, stmt)
        arrived.append(len(rows))
        if len(arrived) == 2:
            both_read.set()
        try:
            await asyncio.wait_for(both_read.wait(), 0.5)
        except TimeoutError:
            pass  # the other run is waiting for our commit: go on
        return rows

    monkeypatch.setattr(evaluation_store, "fetch_tuples", fetch_then_wait)
    other_db = Database(db_url)
    config = EvalConfig(theta=0.5, gold_min=2, mute_min_obs=4, prior="uniform")
    try:
        runs = await asyncio.gather(evaluation_store.run_evaluation(db, config, now_ms=clock.now + 10_000),
                                    evaluation_store.run_evaluation(other_db, config, now_ms=clock.now + 10_000),
                                    return_exceptions=True)
    finally:
        await other_db.dispose()
    assert all(not isinstance(r, BaseException) for r in runs), runs
    new = sorted(r.new_answers for r in runs)
    assert new[0] == 0 and new[1] > 50
    assert {r.total_answers for r in runs} == {new[1]}
    async with db.read() as conn:
        assert (await conn.execute(select(func.sum(eval_counts.c.n)))).scalar_one() == new[1]


async def test_image_pools_are_listed_in_id_order(db):
    """Session plans are drawn from the pool list with a seeded generator, so its order must not
    depend on the backend's storage (PostgreSQL scans in heap order, which updates change)."""
    from game.images import set_reliability

    ids = await seed_images(db, total=12, reliable=0)
    await set_reliability(db, {i: 0.99 for i in reversed(ids)}, threshold=0.9)
    pools = await db.run_read(tx_pools)
    assert [i for i, _, _ in pools] == sorted(ids) and all(reliable for _, reliable, _ in pools)
    assert {look.source for _, _, look in pools} == {"test"} and all(look.size > 0 for _, _, look in pools)
