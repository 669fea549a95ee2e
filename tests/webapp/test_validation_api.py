"""Peer validation over the real HTTP API (SPEC §3.3): GET /api/validations/next and
POST /api/validations/{find_id} with the same auth, error envelope, idempotency and
bad-input handling as the rest of the API; the summary and leaderboard show the bonus."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from game.tables import points_ledger, requests, validations
from tests.webapp.conftest import auth_header

pytestmark = pytest.mark.both_backends

ALICE = auth_header(3101, first_name="Alice")
BOB = auth_header(3102, first_name="Bob")
CAROL = auth_header(3103, first_name="Carol")


async def post(client, path, body, headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await client.post(path, data=data, headers={**headers, "Content-Type": "application/json"})


async def play_all_wrong(client, headers) -> str:
    """A whole session over HTTP, every first answer judged Wrong with a correction."""
    state = await (await client.post("/api/sessions", headers=headers)).json()
    sid = state["session_id"]
    for i in range(10):
        got = await (await post(client, f"/api/sessions/{sid}/questions",
                                {"request_id": f"a{i}", "text": f"How many stars in picture {i}?"}, headers)).json()
        state = await (await post(client, f"/api/answers/{got['answer_id']}/verdict",
                                  {"request_id": f"v{i}", "verdict": "wrong", "correction": f"{i} stars"},
                                  headers)).json()
    assert state["status"] == "finished"
    return sid


async def counts(db) -> tuple[int, int, int]:
    async with db.read() as conn:
        return tuple([(await conn.execute(select(func.count()).select_from(t))).scalar_one()
                      for t in (validations, requests, points_ledger)])


async def test_validation_flow_over_http(client, db):
    sid = await play_all_wrong(client, ALICE)
    assert (await client.get("/api/validations/next", headers=ALICE)).status == 404   # own finds: none
    resp = await client.get("/api/validations/next", headers=BOB)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    find = await resp.json()
    assert set(find) == {"find_id", "image", "question", "answer", "correction"}
    assert set(find["image"]) == {"image_id", "url"}
    img = await client.get(find["image"]["url"])
    assert img.status == 200 and img.content_type.startswith("image/")
    summary = await (await client.get(f"/api/sessions/{sid}/summary", headers=ALICE)).json()
    by_id = {a["answer_id"]: (img_["tainted"], a) for img_ in summary["images"] for a in img_["answers"]}
    tainted, answer = by_id[find["find_id"]]
    assert not tainted and answer["validation"] == "pending" and answer["bonus"] == 0
    assert (find["question"], find["answer"], find["correction"]) == (
        answer["question"], answer["answer"], answer["correction"])
    total_before = summary["total_points"]

    path = f"/api/validations/{find['find_id']}"
    first = await post(client, path, {"request_id": "bob-1", "agrees": True}, BOB)
    assert first.status == 200
    assert await first.json() == {"status": "recorded", "find_id": find["find_id"], "agrees": True}
    again = await post(client, path, {"request_id": "bob-1", "agrees": True}, BOB)     # retry: replayed
    assert again.status == 200 and await again.json() == await first.json()
    twice = await post(client, path, {"request_id": "bob-2", "agrees": False}, BOB)    # second vote: refused
    assert twice.status == 409 and (await twice.json())["error"]["code"] == "conflict"
    own = await post(client, path, {"request_id": "alice-1", "agrees": True}, ALICE)   # own find: like unknown
    unknown = await post(client, "/api/validations/0123456789abcdef0123456789abcdef",
                         {"request_id": "alice-2", "agrees": True}, ALICE)
    assert own.status == unknown.status == 404
    assert (await own.json())["error"] == (await unknown.json())["error"]
    assert (await counts(db))[0] == 1

    carol = await post(client, path, {"request_id": "carol-1", "agrees": True}, CAROL)
    assert carol.status == 200
    summary = await (await client.get(f"/api/sessions/{sid}/summary", headers=ALICE)).json()
    answer = {a["answer_id"]: a for i in summary["images"] for a in i["answers"]}[find["find_id"]]
    assert answer["validation"] == "confirmed" and answer["bonus"] == 20
    assert summary["total_points"] == total_before + 20 == sum(i["points"] for i in summary["images"])
    board = await (await client.get("/api/leaderboard?period=week", headers=ALICE)).json()
    assert board["me"]["points"] == summary["total_points"]
    next_for_carol = await (await client.get("/api/validations/next", headers=CAROL)).json()
    assert next_for_carol["find_id"] != find["find_id"]                               # decided: not offered


async def test_validation_bad_inputs_store_nothing(client, db):
    await play_all_wrong(client, ALICE)
    find = await (await client.get("/api/validations/next", headers=BOB)).json()
    path = f"/api/validations/{find['find_id']}"
    before = await counts(db)
    cases = [
        ({"request_id": "b1", "agrees": "yes"}, 400),
        ({"request_id": "b2", "agrees": 1}, 400),
        ({"request_id": "b3", "agrees": None}, 400),
        ({"request_id": "b4"}, 400),
        ({"agrees": True}, 400),
        ({"request_id": 7, "agrees": True}, 400),
        ({"request_id": "x" * 129, "agrees": True}, 400),
        ([True], 400),
        ("not json", 400),
        ('"a string"', 400),
        ({"request_id": "b9", "agrees": True, "pad": "x" * (70 * 1024)}, 413),
    ]
    for body, status in cases:
        resp = await post(client, path, body, BOB)
        assert resp.status == status, (body if not isinstance(body, dict) or "pad" not in body else "big", resp.status)
        error = (await resp.json())["error"]
        assert set(error) == {"code", "message"} and error["message"]
    for unknown in ("/api/validations/nope", "/api/validations/" + "f" * 200, "/api/validations/next"):
        resp = await post(client, unknown, {"request_id": "u1", "agrees": True}, BOB)
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    for headers in ({}, {"Authorization": "tma forged"}):
        assert (await client.get("/api/validations/next", headers=headers)).status == 401
        resp = await post(client, path, {"request_id": "n1", "agrees": True}, headers)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    assert (await client.get(f"{path}", headers=BOB)).status == 405
    assert await counts(db) == before


async def test_find_payload_never_mentions_taint(client, db):
    """The find a validator sees has no field about tainting, and its image URL is the
    same opaque scheme as in play."""
    await play_all_wrong(client, ALICE)
    raw = await (await client.get("/api/validations/next", headers=BOB)).text()
    assert "taint" not in raw.lower() and "pool" not in raw.lower()
    find = json.loads(raw)
    assert find["image"]["url"].startswith("/img/") and len(find["image"]["url"]) == len("/img/") + 32
