"""The API's error messages and the page in the player's language (real server)."""
from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from game.limits import Limits, Rate
from tests.webapp.conftest import auth_header, make_app

ALICE = auth_header(1111, first_name="Alice")


async def test_error_messages_follow_accept_language_and_codes_do_not(service, settings, model):
    service.limits = Limits(player={"session": Rate(1, 3600)})
    async with TestClient(TestServer(make_app(service, settings, model), host="127.0.0.1")) as client:
        sid = (await (await client.post("/api/sessions", headers=ALICE)).json())["session_id"]
        bodies = {}
        for lang in ("ru", "en", "de"):
            resp = await client.post(f"/api/sessions/{sid}/questions", data=json.dumps({"request_id": "r", "text": " "}),
                                     headers={**ALICE, "Content-Type": "application/json", "Accept-Language": lang})
            assert resp.status == 400
            bodies[lang] = (await resp.json())["error"]
        assert {b["code"] for b in bodies.values()} == {"invalid"}
        assert bodies["ru"]["message"] == "поле «вопрос» не может быть пустым"
        assert bodies["en"]["message"] == bodies["de"]["message"] == "question must not be empty"
        for _ in range(10):  # time out the session; a second one is over the limit: in Russian
            service.clock.advance(121)
            await client.get("/api/sessions/current", headers=ALICE)
        limited = await client.post("/api/sessions", headers={**ALICE, "Accept-Language": "ru-RU,ru;q=0.9"})
        assert limited.status == 429
        error = (await limited.json())["error"]
        assert error["message"] == f"слишком много новых игр; попробуйте снова через {error['retry_after']} с"


async def test_the_page_is_served_in_the_asked_language(client):
    ru = await client.get("/?lang=ru")
    assert ru.headers["Content-Language"] == "ru" and '<html lang="ru">' in await ru.text()
    browser_ru = await client.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert browser_ru.headers["Content-Language"] == "ru"
    for other in ({"Accept-Language": "fr"}, {}):
        resp = await client.get("/", headers=other)
        assert resp.headers["Content-Language"] == "en" and "Catch the model" in await resp.text()
    assert (await client.get("/?lang=xx")).headers["Content-Language"] == "en"
