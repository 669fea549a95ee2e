"""Telegram trouble at start-up never takes the web app down: failures are logged
(without the token) and retried in the background."""
from __future__ import annotations

import asyncio
import logging
import socket
import time

from tests.bot.conftest import PUBLIC_URL, TEST_BOT_TOKEN, World, new_user_id
from webapp.auth import sign_init_data


def auth_header(user_id: int) -> dict[str, str]:
    """A Mini App request's Authorization header, signed with the test bot token."""
    init = sign_init_data(TEST_BOT_TOKEN, {"id": user_id, "first_name": "Tester"}, auth_date=int(time.time()))
    return {"Authorization": f"tma {init}"}


async def web_app_serves(world: World) -> None:
    async with world.http.get(f"{world.url}/healthz") as resp:
        assert resp.status == 200
    async with world.http.get(f"{world.url}/api/sessions/current", headers=auth_header(new_user_id())) as resp:
        assert resp.status == 404  # authenticated, served: "no active session"
    async with world.http.post(f"{world.url}/api/sessions", headers=auth_header(new_user_id())) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "playing"


async def test_menu_button_method_missing_is_retried_and_everything_else_works(make_world, caplog):
    caplog.set_level(logging.WARNING, logger="gap.bot")
    world = await make_world(webhook=True, fail_methods=("setChatMenuButton",))
    failed = await world.fake.wait_for("setChatMenuButton", lambda c: "chat_id" not in c.params)
    assert failed.result is None  # answered 404 "Not Found", like a Bot API server without the method
    await world.fake.wait_for("setWebhook")
    await web_app_serves(world)
    assert "setChatMenuButton" in world.runtime.pending_setup and not world.runtime.setup_done.is_set()

    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/start")  # the bot's other features work meanwhile
    reply = await world.reply_to(user, "sendMessage", mark)
    assert reply.params["reply_markup"]["inline_keyboard"][0][0]["web_app"]["url"] == PUBLIC_URL + "/"

    world.fake.fail_methods.clear()  # the server gained the method: the background retry succeeds
    await asyncio.wait_for(world.runtime.setup_done.wait(), 30)
    ok = [c for c in world.fake.calls_to("setChatMenuButton") if "chat_id" not in c.params and c.result is True]
    assert ok and ok[-1].params["menu_button"]["web_app"]["url"] == PUBLIC_URL + "/"
    assert any("setChatMenuButton failed" in r.getMessage() for r in caplog.records)


async def test_unreachable_bot_api_keeps_the_web_app_serving(make_world, caplog):
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a local port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    world = await make_world(webhook=False, api_url=f"http://127.0.0.1:{closed_port}/bot", wait_ready=False)
    await web_app_serves(world)
    async with world.http.get(f"{world.url}/") as resp:
        assert resp.status == 200
    for _ in range(100):  # the first getMe attempt has failed and been logged
        if any("getMe failed" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    assert any("getMe failed" in r.getMessage() for r in caplog.records)
    assert not world.runtime.ready.is_set()
    secret_part = TEST_BOT_TOKEN.split(":")[1]
    assert not [r for r in caplog.records if secret_part in r.getMessage()]  # no token in any log line


async def test_polling_bootstrap_and_start(make_world):
    world = await make_world(webhook=False)
    await world.fake.wait_for("deleteWebhook")
    assert not world.fake.calls_to("setWebhook")
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/start")  # served by getUpdates
    reply = await world.reply_to(user, "sendMessage", mark)
    assert reply.params["reply_markup"]["inline_keyboard"][0][0]["web_app"]["url"] == PUBLIC_URL + "/"
    async with world.http.post(f"{world.url}/telegram/webhook", json={"update_id": 1}) as resp:
        assert resp.status in (404, 405)  # no webhook route in polling mode


async def test_webhook_answers_503_until_the_bot_is_up_and_still_checks_the_secret(make_world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    world = await make_world(webhook=True, api_url=f"http://127.0.0.1:{closed_port}/bot", wait_ready=False)
    update = {"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}}}
    assert (await world.post_webhook(update, secret="forged")).status == 403
    assert (await world.post_webhook(update)).status == 503  # Telegram will redeliver later
    await web_app_serves(world)


async def test_bot_disabled_serves_the_mini_app_and_never_calls_telegram(make_world):
    """GAP_BOT_ENABLED=false (extra web workers, the local experiment): initData is still checked
    with the token, and not a single Bot API call is made."""
    from webapp.telegram import BOT_RUNTIME

    world = await make_world(webhook=False, wait_ready=False, bot_enabled=False)
    await web_app_serves(world)
    async with world.http.get(f"{world.url}/api/sessions/current") as resp:
        assert resp.status == 401
    await asyncio.sleep(0.5)
    assert BOT_RUNTIME not in world.app and world.fake.calls == []
