"""The describe round over the real HTTP API (SPEC §3.5): POST /api/describe serves an
image with known content and a server-side deadline, POST /api/describe/{task_id}
stores the description with the time taken, other players rate it and a confirmed
description pays its writer once. Bad input gets a clear error and stores nothing."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from game.description_tables import describe_tasks, description_ratings, descriptions
from game.rules import DESCRIPTION_MAX, DESCRIPTION_POINTS
from game.tables import images, points_ledger
from gap.commands.images import generate_pool
from tests.webapp.conftest import auth_header
from tests.webapp.documented import assert_documented

pytestmark = pytest.mark.both_backends

ALICE = auth_header(4101, first_name="Alice")
BOB = auth_header(4102, first_name="Bob")
CAROL = auth_header(4103, first_name="Carol")


async def post(client, path, body, headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await client.post(path, data=data, headers={**headers, "Content-Type": "application/json"})


async def count(db, table) -> int:
    async with db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def open_task(client, headers) -> dict:
    resp = await client.post("/api/describe", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_describe_and_rate_over_http(client, db, clock):
    await generate_pool(db, 4, seed=11)
    task = await open_task(client, ALICE)
    assert set(task) == {"task_id", "status", "now_ms", "max_chars", "image"}
    assert_documented(task, "DescribeTask")
    assert task["max_chars"] == DESCRIPTION_MAX and task["image"]["seconds_left"] == 60.0
    assert (await open_task(client, ALICE))["task_id"] == task["task_id"]  # resumed, same deadline
    img = await client.get(task["image"]["url"])
    assert img.status == 200 and img.content_type == "image/png"
    async with db.read() as conn:  # only images with known content are served
        served = (await conn.execute(select(images.c.scene_json).join(
            describe_tasks, describe_tasks.c.image_id == images.c.id))).scalar_one()
    assert served is not None

    clock.advance(12.5)
    path = f"/api/describe/{task['task_id']}"
    text = "  A big red star at the top left; three shapes in all — ☆ ünïcode.  "
    first = await post(client, path, {"request_id": "d1", "text": text}, ALICE)
    assert first.status == 200
    got = await first.json()
    assert got["status"] == "recorded" and got["seconds"] == 12.5
    assert_documented(got, "DescriptionRecorded")
    again = await post(client, path, {"request_id": "d1", "text": text}, ALICE)   # retry: replayed
    assert again.status == 200 and await again.json() == got
    twice = await post(client, path, {"request_id": "d2", "text": "another"}, ALICE)
    assert twice.status == 409 and (await twice.json())["error"]["code"] == "conflict"
    async with db.read() as conn:
        row = (await conn.execute(select(descriptions))).one()
    assert (row.source, row.text, row.seconds, row.points) == ("crowd", text.strip(), 12.5, 0)
    assert (await open_task(client, ALICE))["task_id"] != task["task_id"]  # the next image, a new task

    # peer rating: not one's own; two fitting ratings confirm and pay once
    assert (await client.get("/api/descriptions/next", headers=ALICE)).status == 404
    shown = await (await client.get("/api/descriptions/next", headers=BOB)).json()
    assert shown == {"description_id": got["description_id"], "text": text.strip(),
                     "image": {"image_id": task["image"]["image_id"], "url": task["image"]["url"]}}
    assert_documented(shown, "DescriptionToRate")
    rate = f"/api/descriptions/{got['description_id']}/rating"
    own = await post(client, rate, {"request_id": "r0", "fits": True}, ALICE)
    assert own.status == 404
    bad = await post(client, rate, {"request_id": "r1", "fits": "yes"}, BOB)
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid"
    rated = await post(client, rate, {"request_id": "r1", "fits": True}, BOB)
    assert rated.status == 200
    assert_documented(await rated.json(), "RatingRecorded")
    assert (await post(client, rate, {"request_id": "r2", "fits": True}, BOB)).status == 409
    assert (await count(db, points_ledger)) == 0
    assert (await post(client, rate, {"request_id": "r1", "fits": True}, CAROL)).status == 200
    assert (await client.get("/api/descriptions/next", headers=CAROL)).status == 404  # decided: not shown
    async with db.read() as conn:
        paid = (await conn.execute(select(points_ledger.c.player_id, points_ledger.c.reason,
                                          points_ledger.c.points))).all()
    assert [(r.reason, r.points) for r in paid] == [("description", DESCRIPTION_POINTS)]
    board = await (await client.get("/api/leaderboard?period=all", headers=ALICE)).json()
    assert board["me"]["points"] == DESCRIPTION_POINTS
    assert await count(db, description_ratings) == 2


@pytest.mark.parametrize("text, code", [
    ("", "invalid"), ("   \n\t ", "invalid"), ("x" * (DESCRIPTION_MAX + 1), "invalid"),
    ("a red\x00star", "invalid"), ("\u200b\u200b", "invalid"), (42, "invalid"), (None, "invalid"),
])
async def test_bad_descriptions_are_refused_and_nothing_is_stored(client, db, text, code):
    await generate_pool(db, 2, seed=3)
    task = await open_task(client, ALICE)
    resp = await post(client, f"/api/describe/{task['task_id']}", {"request_id": "bad", "text": text}, ALICE)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == code
    assert await count(db, descriptions) == 0
    ok = await post(client, f"/api/describe/{task['task_id']}", {"request_id": "bad", "text": "a blue circle"}, ALICE)
    assert ok.status == 200  # the refused request id was not burnt either


async def test_late_foreign_and_malformed_requests_store_nothing(client, db, clock):
    await generate_pool(db, 3, seed=5)
    alice = await open_task(client, ALICE)
    # another player's task: the image was not shown to Bob -> like an unknown id
    foreign = await post(client, f"/api/describe/{alice['task_id']}", {"request_id": "b1", "text": "red"}, BOB)
    unknown = await post(client, "/api/describe/0123456789abcdef0123456789abcdef",
                         {"request_id": "b2", "text": "red"}, BOB)
    weird = await post(client, "/api/describe/..%2F..", {"request_id": "b3", "text": "red"}, BOB)
    assert foreign.status == unknown.status == 404 and weird.status == 404
    assert (await foreign.json())["error"] == (await unknown.json())["error"]
    malformed = await client.post(f"/api/describe/{alice['task_id']}", data=b"{not json", headers=ALICE)
    assert malformed.status == 400
    no_auth = await client.post(f"/api/describe/{alice['task_id']}", data=b"{}")
    assert no_auth.status == 401
    huge = await post(client, f"/api/describe/{alice['task_id']}", {"request_id": "h", "text": "x" * 70_000}, ALICE)
    assert huge.status == 413
    clock.advance(60)  # the deadline instant itself is late
    late = await post(client, f"/api/describe/{alice['task_id']}", {"request_id": "a1", "text": "a red star"}, ALICE)
    assert late.status == 409 and (await late.json())["error"]["code"] == "expired"
    assert await count(db, descriptions) == 0
    fresh = await open_task(client, ALICE)
    assert fresh["task_id"] != alice["task_id"] and fresh["image"]["seconds_left"] == 60.0


async def test_no_image_with_known_content_is_a_clear_503(client, db):
    resp = await client.post("/api/describe", headers=ALICE)   # the seeded pool has no scene graphs
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "unavailable"
    assert await count(db, describe_tasks) == 0


async def test_concurrent_confirming_ratings_pay_once(client, db):
    await generate_pool(db, 2, seed=7)
    task = await open_task(client, ALICE)
    got = await (await post(client, f"/api/describe/{task['task_id']}", {"request_id": "d", "text": "a red star"},
                            ALICE)).json()
    rate = f"/api/descriptions/{got['description_id']}/rating"
    raters = [auth_header(4200 + i, first_name=f"R{i}") for i in range(4)]
    responses = await asyncio.gather(*(post(client, rate, {"request_id": "r", "fits": True}, h) for h in raters))
    assert [r.status for r in responses] == [200] * 4
    async with db.read() as conn:
        paid = (await conn.execute(select(points_ledger.c.points)
                                   .where(points_ledger.c.reason == "description"))).scalars().all()
        stored = (await conn.execute(select(descriptions.c.points))).scalar_one()
    assert paid == [DESCRIPTION_POINTS] and stored == DESCRIPTION_POINTS
    assert await count(db, description_ratings) == 4
