"""game/admin_queries.py on a real migrated database (SQLite file and PostgreSQL), with data made by
the real GameService."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from game import admin_queries as aq
from game.tables import players
from tests.conftest import FakeClock

pytestmark = pytest.mark.both_backends

DAY_S = 86_400


async def play_one_image(service, player: int, rid: str, verdict: str = "wrong") -> dict:
    state = await service.start_or_resume(player)
    got = await service.ask(player, state["session_id"], f"{rid}-q", "What colour is it?")
    return await service.verdict(player, got["answer_id"], f"{rid}-v", verdict,
                                 "crimson" if verdict == "wrong" else None)


async def test_overview_days_reach_and_scores(service, db, clock: FakeClock):
    ann = await service.upsert_player(11, "Ann")
    bob = await service.upsert_player(22, "Bob")
    await play_one_image(service, ann, "a1")          # Ann: session 1, reaches picture 2
    clock.advance(2 * DAY_S)
    await service.start_or_resume(bob)                 # Bob: session 2 days later, picture 1
    over = await aq.overview(db)
    assert (over.players, over.sessions, over.finished_sessions) == (2, 2, 0)
    assert over.images_per_session == 1.5 and over.answers == 1 and over.flags == 1
    assert over.tainted_catches + over.false_alarms + over.finds == 1

    days = await aq.sessions_per_day(db, days=5, now_ms=clock.now)
    assert len(days) == 5 and sum(n for _, n in days) == 2
    assert days[-1][1] == 1 and days[-3][1] == 1      # today and two days ago
    assert sorted(await aq.images_reached_per_session(db)) == [1, 2]

    score = await aq.player_score(db, ann, now_ms=clock.now)
    assert score.sessions == 1 and score.total_points == 20 * over.tainted_catches - 10 * over.false_alarms
    assert (await aq.player_score(db, bob, now_ms=clock.now)).rank is None  # no points, no rank


async def test_find_mute_chat_and_referrer(service, db):
    pid = await service.upsert_player(33, "Cy")
    other = await service.upsert_player(44, "Di")
    async with db.read() as conn:
        key = (await conn.execute(select(players.c.player_key).where(players.c.id == pid))).scalar_one()
    assert (await aq.find_player(db, f"#{pid}")).id == pid
    assert (await aq.find_player(db, key[:10])).id == pid
    assert await aq.find_player(db, "abc") is None and await aq.find_player(db, "drop table") is None
    assert await aq.find_player(db, "3000000000") is None  # a Telegram id, beyond any player id
    assert await aq.set_muted(db, pid, True) and (await aq.find_player(db, str(pid))).muted
    assert not await aq.set_muted(db, 10_000, True)

    await aq.remember_chat(db, pid, 333, "first_ref")
    await aq.remember_chat(db, pid, 333, "second_ref")
    await aq.remember_chat(db, other, 444, "bad ref!")  # outside the deep-link alphabet: dropped
    async with db.read() as conn:
        rows = dict((await conn.execute(select(players.c.id, players.c.referrer))).all())
    assert rows == {pid: "first_ref", other: None}
    assert await aq.broadcast_chat_ids(db) == [333, 444]


async def test_pools_report_accuracy_and_judgements(service, db):
    pid = await service.upsert_player(55, "Ed")
    for i in range(3):
        await play_one_image(service, pid, f"p{i}", verdict="correct" if i % 2 else "wrong")
    rows = await aq.pools(db)
    assert [r.pool for r in rows] == ["test"]
    assert rows[0].images == 20 and rows[0].reliable == 10 and abs(rows[0].measured_accuracy - 0.75) < 1e-9
