"""The JSON API over a real local HTTP server and a real migrated database (SQLite file and PostgreSQL)."""
from __future__ import annotations

import json
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from game.tables import answers, players, points_ledger, requests, session_images, sessions
from models.base import ModelAnswer, ModelOverloaded
from tests.webapp.conftest import auth_header, make_app

pytestmark = pytest.mark.both_backends

ALICE = auth_header(1111, first_name="Alice")
BOB = auth_header(2222, first_name="Bob")


async def snapshot(db) -> tuple[int, ...]:
    """Row counts and the judged/ended state: 'nothing stored' means this does not change."""
    async with db.read() as conn:
        out = []
        for table in (answers, requests, points_ledger, sessions, players):
            out.append((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        out.append((await conn.execute(select(func.count()).select_from(answers)
                                       .where(answers.c.verdict.is_not(None)))).scalar_one())
        out.append((await conn.execute(select(func.count()).select_from(session_images)
                                       .where(session_images.c.ended_at.is_not(None)))).scalar_one())
    return tuple(out)


async def post(client, path, body, headers=ALICE):
    return await client.post(path, data=json.dumps(body) if not isinstance(body, (bytes, str)) else body,
                             headers={**headers, "Content-Type": "application/json"})


async def test_full_session_over_http(client, db):
    resp = await client.post("/api/sessions", headers=ALICE)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    state = await resp.json()
    sid = state["session_id"]
    assert set(state) == {"session_id", "status", "now_ms", "image"}
    assert set(state["image"]) == {"index", "total", "image_id", "url", "deadline_ms", "seconds_left", "answers"}
    assert state["image"]["url"] == f"/img/{state['image']['image_id']}"
    img = await client.get(state["image"]["url"])
    assert img.status == 200 and img.content_type == "image/jpeg" and "immutable" in img.headers["Cache-Control"]
    assert (await client.get(state["image"]["url"], headers={"If-None-Match": img.headers["ETag"]})).status == 304
    summary = await client.get(f"/api/sessions/{sid}/summary", headers=ALICE)
    assert summary.status == 409 and (await summary.json())["error"]["code"] == "conflict"
    for i in range(10):
        asked = await post(client, f"/api/sessions/{sid}/questions", {"request_id": f"a{i}", "text": "How many?"})
        assert asked.status == 200, await asked.text()
        got = await asked.json()
        assert set(got) == {"answer_id", "answer"}
        judged = await post(client, f"/api/answers/{got['answer_id']}/verdict",
                            {"request_id": f"v{i}", "verdict": "wrong", "correction": "twelve"})
        assert judged.status == 200
        state = await judged.json()
    assert state["status"] == "finished"
    summary = await client.get(f"/api/sessions/{sid}/summary", headers=ALICE)
    body = await summary.json()
    assert summary.status == 200 and len(body["images"]) == 10 and sum(i["tainted"] for i in body["images"]) == 5
    assert body["total_points"] == sum(i["points"] for i in body["images"])
    board = await (await client.get("/api/leaderboard?period=all", headers=ALICE)).json()
    assert board["me"]["points"] == body["total_points"] or (body["total_points"] == 0 and board["me"] is None)
    assert (await client.get("/api/sessions/current", headers=ALICE)).status == 404


async def test_unauthenticated_requests_get_401(client, db):
    now = int(time.time())
    cases = [
        {},
        {"Authorization": "Bearer abc"},
        {"Authorization": "tma garbage"},
        {"Authorization": ALICE["Authorization"].replace("Alice", "Mallory")},
        auth_header(1111, token="999:another-bot"),
        auth_header(1111, auth_date=now - 7200),  # older than init_data_max_age=3600
    ]
    before = await snapshot(db)
    for headers in cases:
        for method, path in (("POST", "/api/sessions"), ("GET", "/api/sessions/current"),
                             ("GET", "/api/leaderboard")):
            resp = await client.request(method, path, headers=headers)
            assert resp.status == 401, (headers, path)
            body = await resp.json()
            assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
    assert await snapshot(db) == before


async def test_bad_inputs_store_nothing(client, db):
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    sid = state["session_id"]
    got = await (await post(client, f"/api/sessions/{sid}/questions", {"request_id": "ok", "text": "What colour?"})).json()
    before = await snapshot(db)
    q = f"/api/sessions/{sid}/questions"
    v = f"/api/answers/{got['answer_id']}/verdict"
    cases = [
        (q, {"request_id": "b1", "text": ""}, 400),
        (q, {"request_id": "b2", "text": "   \t "}, 400),
        (q, {"request_id": "b3", "text": "x" * 301}, 400),
        (q, {"request_id": "b4", "text": "\x00\x01\x02"}, 400),
        (q, {"request_id": "b5", "text": 12}, 400),
        (q, {"request_id": 5, "text": "fine?"}, 400),
        (q, {"text": "fine?"}, 400),
        (q, [1, 2], 400),
        (q, b"{not json", 400),
        (q, {"request_id": "b6", "text": "x" * (70 * 1024)}, 413),
        (v, {"request_id": "b7", "verdict": "wrong"}, 400),
        (v, {"request_id": "b8", "verdict": "wrong", "correction": ""}, 400),
        (v, {"request_id": "b9", "verdict": "wrong", "correction": "y" * 201}, 400),
        (v, {"request_id": "b10", "verdict": "wrong", "correction": "\x1b\x1b"}, 400),
        (v, {"request_id": "b11", "verdict": "maybe"}, 400),
        (v, {"request_id": "b12", "verdict": True}, 400),
        (v, {"request_id": "b13", "verdict": "wrong", "correction": ["list"]}, 400),
        (f"/api/sessions/{'0' * 32}/questions", {"request_id": "b14", "text": "ok?"}, 404),
        (f"/api/answers/{'0' * 32}/verdict", {"request_id": "b15", "verdict": "correct"}, 404),
        (q, {"request_id": "b16", "text": "second question before judging"}, 409),
    ]
    for path, body, status in cases:
        resp = await post(client, path, body)
        assert resp.status == status, (path, body if not isinstance(body, dict) else list(body), await resp.text())
        err = (await resp.json())["error"]
        assert err["code"] and err["message"]
    assert await snapshot(db) == before
    assert (await client.get("/api/leaderboard?period=year", headers=ALICE)).status == 400


async def test_idempotent_retries_over_http(client, db):
    sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
    first = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "r1", "text": "How many circles?"})
    second = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "r1", "text": "How many circles?"})
    assert await first.json() == await second.json()
    aid = (await first.json())["answer_id"]
    v1 = await (await post(client, f"/api/answers/{aid}/verdict",
                           {"request_id": "r2", "verdict": "wrong", "correction": "13"})).json()
    after_first = await snapshot(db)
    v2 = await (await post(client, f"/api/answers/{aid}/verdict",
                           {"request_id": "r2", "verdict": "wrong", "correction": "13"})).json()
    assert v1["image"]["deadline_ms"] == v2["image"]["deadline_ms"] and v1["image"]["index"] == 1
    assert await snapshot(db) == after_first
    again = await post(client, f"/api/answers/{aid}/verdict", {"request_id": "r3", "verdict": "correct"})
    assert again.status == 409 and await snapshot(db) == after_first


async def test_other_players_get_404_without_leak(client, db):
    sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
    aid = (await (await post(client, f"/api/sessions/{sid}/questions",
                             {"request_id": "x", "text": "What shape?"})).json())["answer_id"]
    before = await snapshot(db)
    theirs = [
        await post(client, f"/api/sessions/{sid}/questions", {"request_id": "y", "text": "What shape?"}, BOB),
        await post(client, f"/api/answers/{aid}/verdict", {"request_id": "z", "verdict": "correct"}, BOB),
        await client.get(f"/api/sessions/{sid}/summary", headers=BOB),
    ]
    unknown = [
        await post(client, f"/api/sessions/{'f' * 32}/questions", {"request_id": "y2", "text": "What shape?"}, BOB),
        await post(client, f"/api/answers/{'f' * 32}/verdict", {"request_id": "z2", "verdict": "correct"}, BOB),
        await client.get(f"/api/sessions/{'f' * 32}/summary", headers=BOB),
    ]
    for mine, missing in zip(theirs, unknown):
        assert mine.status == missing.status == 404
        assert await mine.json() == await missing.json()  # identical: existence does not leak
    assert (await snapshot(db))[:3] == before[:3]  # (Bob becomes a player, nothing else changes)


async def test_deadline_409_and_session_advances(client, db, clock):
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    sid = state["session_id"]
    got = await (await post(client, f"/api/sessions/{sid}/questions", {"request_id": "a", "text": "Colour?"})).json()
    clock.advance(121)
    late = await post(client, f"/api/answers/{got['answer_id']}/verdict",
                      {"request_id": "b", "verdict": "wrong", "correction": "crimson"})
    assert late.status == 409 and (await late.json())["error"]["code"] == "expired"
    now = await (await client.get("/api/sessions/current", headers=ALICE)).json()
    assert now["image"]["index"] == 1 and now["image"]["deadline_ms"] == clock.now + 120_000
    clock.advance(200)
    late_q = await post(client, f"/api/sessions/{sid}/questions", {"request_id": "c", "text": "Colour?"})
    assert late_q.status == 409
    async with db.read() as conn:
        ends = (await conn.execute(select(session_images.c.end_reason).order_by(session_images.c.position))).scalars().all()
        assert ends[:2] == ["timeout", "timeout"]
        assert (await conn.execute(select(func.count()).select_from(answers))).scalar_one() == 1


async def test_state_json_same_for_tainted_and_untainted(client, db):
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    sid = state["session_id"]
    async with db.read() as conn:
        plan = (await conn.execute(select(session_images.c.tainted).where(session_images.c.session_id == sid)
                                   .order_by(session_images.c.position))).scalars().all()

    def keys(obj, prefix=""):
        if isinstance(obj, dict):
            return {k2 for k, v in obj.items() for k2 in {prefix + k} | keys(v, prefix + k + ".")}
        if isinstance(obj, list):
            return {k for v in obj for k in keys(v, prefix + "[].")}
        return set()

    seen = {True: [], False: []}
    for i in range(10):
        a1 = await (await post(client, f"/api/sessions/{sid}/questions", {"request_id": f"a{i}", "text": "Shape?"})).json()
        mid = await (await post(client, f"/api/answers/{a1['answer_id']}/verdict",
                                {"request_id": f"c{i}", "verdict": "correct"})).json()
        a2 = await (await post(client, f"/api/sessions/{sid}/questions", {"request_id": f"b{i}", "text": "Colour?"})).json()
        seen[plan[i]].append((frozenset(keys(state)), frozenset(keys(mid)), frozenset(a1), frozenset(a2)))
        assert mid["image"]["url"].startswith("/img/") and len(mid["image"]["url"]) == len("/img/") + 32
        state = await (await post(client, f"/api/answers/{a2['answer_id']}/verdict",
                                  {"request_id": f"w{i}", "verdict": "wrong", "correction": "x"})).json()
        assert not ({"points", "score", "tainted", "total_points"} & keys(state))
    assert set(seen[True]) == set(seen[False]) and len(set(seen[True])) == 1


async def test_overloaded_model_gives_503_retry_after(service, settings, db):
    class Busy:
        model_id = "busy"

        async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
            raise ModelOverloaded(retry_after=2.4)

        async def aclose(self) -> None:
            return None

    service.model = Busy()
    app = make_app(service, settings, service.model)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        sid = (await (await http.post("/api/sessions", headers=ALICE)).json())["session_id"]
        before = await snapshot(db)
        resp = await post(http, f"/api/sessions/{sid}/questions", {"request_id": "r", "text": "How many?"})
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        assert (await resp.json())["error"]["code"] == "model_overloaded"
        assert await snapshot(db) == before


async def test_healthz_images_and_unknown_routes(client, service, db, tmp_path):
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    assert (await client.get("/img/" + "0" * 32)).status == 404
    missing = await client.get("/api/nothing-here", headers=ALICE)
    assert missing.status == 404 and "error" in await missing.json()
    wrong_method = await client.delete("/api/sessions", headers=ALICE)
    assert wrong_method.status == 405 and "error" in await wrong_method.json()
    from game.db import Database

    unmigrated = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
    service.db, migrated = unmigrated, service.db
    try:
        resp = await client.get("/healthz")
        assert resp.status == 503 and (await resp.json())["error"]["code"] == "database_unavailable"
    finally:
        service.db = migrated
        await unmigrated.dispose()
    assert (await client.get("/healthz")).status == 200


async def test_model_failures_store_nothing(service, settings, db):
    from models.base import ModelError

    class Broken:
        model_id = "broken"

        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
            raise self.exc

        async def aclose(self) -> None:
            return None

    for exc, status, code in ((ModelError("cannot read the image"), 502, "model_error"),
                              (RuntimeError("a bug"), 500, "internal")):
        service.model = Broken(exc)
        async with TestClient(TestServer(make_app(service, settings, service.model), host="127.0.0.1")) as http:
            sid = (await (await http.post("/api/sessions", headers=ALICE)).json())["session_id"]
            before = await snapshot(db)
            resp = await post(http, f"/api/sessions/{sid}/questions", {"request_id": "r", "text": "How many?"})
            body = await resp.json()
            assert resp.status == status and body["error"]["code"] == code
            assert "a bug" not in json.dumps(body)
            assert await snapshot(db) == before


@pytest.mark.parametrize("rewrite", [str, str.upper, lambda a: f"  {a}!! ", lambda a: {"3": "three"}.get(a, a)])
async def test_a_correction_that_says_the_answer_again_is_refused_and_nothing_is_stored(client, db, rewrite):
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    got = await (await post(client, f"/api/sessions/{state['session_id']}/questions",
                            {"request_id": "q1", "text": "How many circles are there?"})).json()
    before = await snapshot(db)
    resp = await post(client, f"/api/answers/{got['answer_id']}/verdict",
                      {"request_id": "v1", "verdict": "wrong", "correction": rewrite(got["answer"])})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "correction_same_as_answer" and "same as the AI's answer" in error["message"]
    assert await snapshot(db) == before
    # the player can still judge the same answer with a real correction
    fixed = await post(client, f"/api/answers/{got['answer_id']}/verdict",
                       {"request_id": "v2", "verdict": "wrong", "correction": "a different answer"})
    assert fixed.status == 200, await fixed.text()


async def test_each_answer_stores_its_question_type(client, db):
    state = await (await client.post("/api/sessions", headers=ALICE)).json()
    for rid, text in [("c", "How many stars are there?"), ("k", "What colour is the square?")]:
        got = await (await post(client, f"/api/sessions/{state['session_id']}/questions",
                                {"request_id": rid, "text": text})).json()
        await post(client, f"/api/answers/{got['answer_id']}/verdict", {"request_id": rid + "v", "verdict": "correct"})
    async with db.read() as conn:
        stored = (await conn.execute(select(answers.c.question, answers.c.question_type))).all()
    assert sorted((r.question, r.question_type) for r in stored) == [
        ("How many stars are there?", "count"), ("What colour is the square?", "color")]
