"""Abuse limits and bans over a real server and a real database (SQLite file and PostgreSQL):
429 + Retry-After, nothing stored when refused, shared by several workers, per origin."""
from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from game import admin_queries
from sqlalchemy import insert

from game.db import Database
from game.errors import Conflict
from game.tables import answers, points_ledger, rate_limits
from game.limits import Limits, Rate, refusal, tx_guarded, tx_hit
from game.service import GameService
from tests.webapp.conftest import auth_header, make_app
from tests.webapp.test_api import snapshot

pytestmark = pytest.mark.both_backends

ALICE = auth_header(1111, first_name="Alice")
BOB = auth_header(2222, first_name="Bob")


def limited(service: GameService, **limits) -> GameService:
    """The suite's service (seeded pools, fake clock) with these limits."""
    service.limits = Limits(**limits)
    return service


async def post(client, path: str, body: dict, headers=ALICE):
    return await client.post(path, data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("text,rate", [("30/60", Rate(30, 60)), (" 20 / 1h ", Rate(20, 3600)),
                                       ("5/10m", Rate(5, 600)), ("0/60", Rate(0, 60))])
def test_rates_parse(text, rate):
    assert Rate.parse(text) == rate
    assert Rate.parse(text).enabled == (rate.count > 0)


@pytest.mark.parametrize("text", ["", "30", "30/0", "-1/60", "a/b", "30/60d", "1/2/3"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError):
        Rate.parse(text)


async def test_question_limit_answers_429_with_retry_after_and_stores_nothing(service, db, model, clock, settings):
    clock.now = clock.now - clock.now % 60_000 + 15_000  # 15 s into a minute window: 45 s left
    service = limited(service, player={"question": Rate(3, 60)})
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
        last = None
        for i in range(3):
            asked = await (await post(client, f"/api/sessions/{sid}/questions",
                                      {"request_id": f"q{i}", "text": "What is it?"})).json()
            last = asked
            resp = await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                              {"request_id": f"v{i}", "verdict": "correct"})
            assert resp.status == 200
        before = await snapshot(db)
        refused = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q3", "text": "And now?"})
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "45"
        body = await refused.json()
        assert body["error"]["code"] == "rate_limited" and body["error"]["retry_after"] == 45
        assert "45 s" in body["error"]["message"]
        assert await snapshot(db) == before
        # a retried question that was already answered is replayed, not refused
        replay = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q2", "text": "What is it?"})
        assert replay.status == 200 and (await replay.json()) == last
        # Bob has his own allowance
        bob_sid = (await (await client.post("/api/sessions", headers=BOB)).json())["session_id"]
        assert (await post(client, f"/api/sessions/{bob_sid}/questions", {"request_id": "b", "text": "Hm?"},
                           BOB)).status == 200
        clock.advance(30)
        again = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q4", "text": "And now?"})
        assert again.status == 429 and again.headers["Retry-After"] == "15"
        clock.advance(15)  # a new window
        assert (await post(client, f"/api/sessions/{sid}/questions",
                           {"request_id": "q5", "text": "And now?"})).status == 200


async def test_verdict_and_session_limits(service, db, model, clock, settings):
    service = limited(service, player={"verdict": Rate(1, 60), "session": Rate(1, 3600)})
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
        # resuming the active session is not a new start
        assert (await client.post("/api/sessions", headers=ALICE)).status == 200
        ids = []
        for i in range(2):
            asked = await (await post(client, f"/api/sessions/{sid}/questions",
                                      {"request_id": f"q{i}", "text": "What?"})).json()
            ids.append(asked["answer_id"])
            verdict = await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                                 {"request_id": f"v{i}", "verdict": "correct"})
            if i == 0:
                assert verdict.status == 200
        assert verdict.status == 429 and int(verdict.headers["Retry-After"]) >= 1
        async with db.read() as conn:
            rows = (await conn.execute(select(answers.c.verdict).where(answers.c.id == ids[1]))).all()
            # ...but the attempt counted (in the verdict's own transaction), so a flood stays refused
            hits = (await conn.execute(select(rate_limits.c.hits).where(rate_limits.c.bucket.like("verdict:p:%")))).all()
        assert rows == [(None,)]  # the refused verdict was not stored
        assert hits == [(2,)]
        for i in range(10):  # the session ends by timeouts; a new one is over the session-start limit
            clock.advance(121)
            await client.get("/api/sessions/current", headers=ALICE)
        started = await client.post("/api/sessions", headers=ALICE)
        assert started.status == 429 and (await started.json())["error"]["code"] == "rate_limited"


async def test_origin_limit_counts_every_account_of_one_address(service, db, model, clock, settings):
    service = limited(service, origin={"session": Rate(2, 3600)})
    trusting = settings.model_copy(update={"trust_forwarded_for": True})
    async with TestClient(TestServer(make_app(service, trusting, model), host="127.0.0.1")) as client:
        far = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"}  # the proxy appended the last one
        statuses = [(await client.post("/api/sessions", headers={**auth_header(9000 + u), **far})).status
                    for u in range(3)]
        assert statuses == [200, 200, 429]
        other = {"X-Forwarded-For": "203.0.113.8"}
        assert (await client.post("/api/sessions", headers={**auth_header(9100), **other})).status == 200
        v6 = [(await client.post("/api/sessions", headers={**auth_header(9200 + u),
                                                            "X-Forwarded-For": f"2001:db8::{u + 1}"})).status
              for u in range(3)]
        assert v6 == [200, 200, 429]  # one /64
        # loopback (a local tool, or an untrusted proxy) is never limited
        local = [(await client.post("/api/sessions", headers=auth_header(9300 + u))).status for u in range(3)]
        assert local == [200, 200, 200]
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        # without GAP_TRUST_FORWARDED_FOR the header is ignored: a client cannot pick its bucket
        assert (await client.post("/api/sessions", headers={**auth_header(9400), **far})).status == 200


async def test_limits_hold_across_workers(db_url, clock):
    """Two workers (two engines on one database) hit one bucket concurrently: exactly `count` pass."""
    workers = [Database(db_url), Database(db_url)]
    rate = Rate(7, 60)
    try:
        async def hit(i: int):
            return await workers[i % 2].run_write(tx_hit, [("question:p:1", rate)], clock())

        results = await asyncio.gather(*(hit(i) for i in range(20)))
    finally:
        for w in workers:
            await w.dispose()
    passed = [r for r in results if refusal(r, "questions") is None]
    assert len(passed) == 7
    assert sorted(r[0][0] for r in results) == list(range(1, 21))  # every hit counted once


async def test_guarded_writes_hold_across_workers(db_url, clock):
    """A request's own write behind its limit hit, in one transaction (what a verdict does):
    across two workers exactly `count` writes run, and every attempt is counted."""
    workers = [Database(db_url), Database(db_url)]
    rate, now = Rate(7, 60), clock()

    def write(conn):  # stands for the request's write: counted in a bucket of its own
        return tx_hit(conn, [("done", Rate(1000, 60))], now)[0][0]

    try:
        results = await asyncio.gather(*(workers[i % 2].run_write(tx_guarded, 1, [("verdict:p:1", rate)], now, write)
                                         for i in range(20)))
        async with workers[0].read() as conn:
            rows = dict((await conn.execute(select(rate_limits.c.bucket, rate_limits.c.hits))).all())
    finally:
        for w in workers:
            await w.dispose()
    written = sorted(value for _, value in results if value is not None)
    assert written == list(range(1, 8))
    assert all(refusal(counts, "verdicts") is not None for counts, value in results if value is None)
    assert rows == {"verdict:p:1": 20, "done": 7}


async def test_a_failed_guarded_write_takes_its_hit_back(db, clock):
    """A write that fails (a conflict, a duplicate request) rolls back its hit with it, so the
    retry or replay that follows is counted once."""
    def failing(conn):
        raise Conflict("a concurrent request changed this session; reload the state")

    with pytest.raises(Conflict):
        await db.run_write(tx_guarded, 1, [("verdict:p:1", Rate(5, 60))], clock(), failing)
    counts, value = await db.run_write(tx_guarded, 1, [("verdict:p:1", Rate(5, 60))], clock(), lambda conn: "ok")
    assert value == "ok" and counts[0][0] == 1


async def test_banned_player_cannot_play_or_score(service, db, model, clock, settings):
    service = limited(service)
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
        asked = await (await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q", "text": "Hm?"})).json()
        player = await admin_queries.find_player(db, "1")
        assert player is not None
        assert await admin_queries.set_banned(db, player.id, "spam", clock()) is True
        refused = [await client.post("/api/sessions", headers=ALICE),
                   await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                              {"request_id": "v", "verdict": "correct"})]
        await admin_queries.set_banned(db, player.id, None, clock())  # unban: the verdict now counts
        assert (await post(client, f"/api/answers/{asked['answer_id']}/verdict",
                           {"request_id": "v", "verdict": "correct"})).status == 200
        await admin_queries.set_banned(db, player.id, "spam again", clock())
        refused.append(await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q2", "text": "Hm?"}))
        for resp in refused:
            assert resp.status == 403
            body = await resp.json()
            assert body["error"]["code"] == "banned" and "banned" in body["error"]["message"]
        assert await admin_queries.set_banned(db, player.id, None, clock()) is True
        assert (await post(client, f"/api/sessions/{sid}/questions", {"request_id": "q2", "text": "Hm?"})).status == 200
        async with db.write() as conn:  # Alice has points on the board...
            await conn.execute(insert(points_ledger).values(player_id=player.id, answer_id=asked["answer_id"],
                                                            reason="find_bonus", points=20, created_at=clock()))
        service._boards.clear()
        board = await (await client.get("/api/leaderboard?period=all", headers=BOB)).json()
        assert [p["name"] for p in board["players"]] == ["Alice"]
        await admin_queries.set_banned(db, player.id, "", clock())  # ...until banned (no reason given)
        service._boards.clear()
        board = await (await client.get("/api/leaderboard?period=all", headers=BOB)).json()
        assert board["players"] == []


async def session_reliability(db, session_id: str) -> list[bool]:
    """Per position, whether the session's image is in the reliable pool."""
    from sqlalchemy import select

    from game.tables import images, session_images
    async with db.read() as conn:
        rows = (await conn.execute(select(images.c.reliable).select_from(
            session_images.join(images, images.c.id == session_images.c.image_id))
            .where(session_images.c.session_id == session_id).order_by(session_images.c.position))).all()
    return [bool(r[0]) for r in rows]


async def play_out(client, clock, headers) -> None:
    for _ in range(10):  # every image times out: the session finishes
        clock.advance(121)
        await client.get("/api/sessions/current", headers=headers)


async def test_new_accounts_play_gold_only_sessions(service, db, model, clock, settings):
    service.limits = Limits(gate_new_minutes=30)
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        first = await (await client.post("/api/sessions", headers=ALICE)).json()
        gold = await session_reliability(db, first["session_id"])
        assert gold == [True] * 10
        await play_out(client, clock, ALICE)
        clock.advance(30 * 60)  # Alice is no longer new
        later = await (await client.post("/api/sessions", headers=ALICE)).json()
        assert await session_reliability(db, later["session_id"]) != [True] * 10
        summary = await (await client.get(f"/api/sessions/{first['session_id']}/summary", headers=ALICE)).json()
        assert sum(image["tainted"] for image in summary["images"]) == 5  # still the 5/5 split (SPEC §1.1)


async def test_many_accounts_from_one_network_play_gold_only(service, db, model, clock, settings):
    service.limits = Limits(gate_network_accounts=3)
    trusting = settings.model_copy(update={"trust_forwarded_for": True})
    async with TestClient(TestServer(make_app(service, trusting, model), host="127.0.0.1")) as client:
        async def start(user: int, address: str) -> list[bool]:
            state = await (await client.post("/api/sessions", headers={**auth_header(user),
                                                                       "X-Forwarded-For": address})).json()
            return await session_reliability(db, state["session_id"])

        farm = [await start(7000 + i, f"203.0.113.{10 + i}") for i in range(4)]
        home = await start(7100, "198.51.100.1")
    assert farm[0] != [True] * 10 and farm[1] != [True] * 10
    assert farm[2] == [True] * 10 and farm[3] == [True] * 10  # the third and later accounts of one /24
    assert home != [True] * 10
