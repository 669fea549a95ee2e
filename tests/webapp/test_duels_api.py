"""The duel API on a real server over a real migrated SQLite file (SPEC §3.4)."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import TEST_BOT_TOKEN
from tests.game.duel_support import duel_service, item_truth, other, seed_scene_images
from tests.webapp.conftest import auth_header
from tests.webapp.documented import assert_documented
from webapp.app import create_app
from webapp.duels_api import setup_duels


@pytest.fixture
async def duels(db, clock):
    await seed_scene_images(db)
    return duel_service(db, clock)


@pytest.fixture
async def http(service, settings, model, duels):
    app = create_app(service, settings, model, bot_token=TEST_BOT_TOKEN, extra_setup=[setup_duels(duels)])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def error_of(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


async def test_needs_telegram_auth(http):
    await error_of(await http.post("/api/duels"), 401)
    await error_of(await http.get("/api/duels/current"), 401)


async def test_a_batch_over_http(http, db, clock):
    me = auth_header(501, first_name="Duellist")
    resp = await http.get("/api/duels/current", headers=me)
    assert (await resp.json())["status"] == "idle"
    assert_documented(await resp.json(), "DuelState")
    state = await (await http.post("/api/duels", headers=me)).json()
    assert_documented(state, "DuelState")
    item = state["item"]
    for side in ("left", "right"):
        if item["kind"] == "caption":
            img = await http.get(item[side]["url"])
            assert img.status == 200 and img.content_type == "image/png"
            assert (await img.read()).startswith(b"\x89PNG")
        else:
            assert item["image_url"].startswith("/img/") and item[side]["text"]
    await error_of(await http.get("/duel-img/" + "0" * 32), 404)
    while state["status"] == "playing":
        item = state["item"]
        clock.advance(2)
        truth = await item_truth(db, item["item_id"])
        body = {"request_id": "rq" + item["item_id"], "choice": truth["right"]}
        resp = await http.post(f"/api/duels/items/{item['item_id']}/choice", json=body, headers=me)
        assert resp.status == 200
        state = await resp.json()
        assert_documented(state, "DuelState")
        again = await http.post(f"/api/duels/items/{item['item_id']}/choice", json=body, headers=me)
        assert again.status == 200                      # a retried submit replays
    assert state["status"] == "finished" and state["result"]["points"] > 0
    board = await (await http.get("/api/leaderboard?period=all", headers=me)).json()
    assert board["me"]["points"] == state["result"]["points"]   # duel points count once
    tut = await http.post("/api/duels/tutorial", headers=me)
    assert (await tut.json()) == {"tutorial_done": True}
    assert (await (await http.get("/api/duels/current", headers=me)).json())["tutorial_done"] is True


async def test_bad_input_gets_clear_errors(http, db, clock):
    me, you = auth_header(502), auth_header(503)
    mine = (await (await http.post("/api/duels", headers=me)).json())["item"]
    yours = (await (await http.post("/api/duels", headers=you)).json())["item"]
    url = f"/api/duels/items/{mine['item_id']}/choice"
    err = await error_of(await http.post(url, json={"request_id": "a", "choice": "left"}, headers=me), 409)
    assert err["code"] == "too_fast" and "too fast" in err["message"]
    clock.advance(2)
    err = await error_of(await http.post(url, json={"request_id": "b", "choice": "tie"}, headers=me), 400)
    assert "no ties" in err["message"]
    await error_of(await http.post(url, data=b"{not json", headers=me), 400)
    await error_of(await http.post(url, json=["left"], headers=me), 400)
    await error_of(await http.post(url, json={"choice": "left"}, headers=me), 400)
    await error_of(await http.post(url, data=b"x" * 70_000, headers=me), 413)
    err = await error_of(await http.post(f"/api/duels/items/{yours['item_id']}/choice",
                                         json={"request_id": "c", "choice": "left"}, headers=me), 404)
    assert err["code"] == "not_found"
    await error_of(await http.post("/api/duels/items/%E2%9C%93/choice", json={"request_id": "d", "choice": "left"},
                                   headers=me), 404)
    assert (await http.post(url, json={"request_id": "e", "choice": "left"}, headers=me)).status == 200
    err = await error_of(await http.post(url, json={"request_id": "f", "choice": "right"}, headers=me), 409)
    assert "already chosen" in err["message"]


async def test_removed_players_get_the_message(http, db, clock):
    me = auth_header(504)
    for _ in range(6):
        state = await (await http.post("/api/duels", headers=me)).json()
        if "error" in state:
            break
        while state["status"] == "playing":
            item = state["item"]
            clock.advance(2)
            truth = await item_truth(db, item["item_id"])
            resp = await http.post(f"/api/duels/items/{item['item_id']}/choice",
                                   json={"request_id": "r" + item["item_id"], "choice": other(truth["right"])},
                                   headers=me)
            state = await resp.json()
        if state["status"] == "removed":
            break
    assert state["status"] == "removed" and "closed" in state["message"]
    assert_documented(state, "DuelState")
    err = await error_of(await http.post("/api/duels", headers=me), 409)
    assert err["code"] == "removed" and "closed" in err["message"]
    board = await (await http.get("/api/leaderboard?period=all", headers=me)).json()
    assert board["me"] is None                          # never earned a point
