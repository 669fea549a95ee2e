"""Webhook mode: updates arrive as HTTP POSTs on the real aiohttp app."""
from __future__ import annotations

from sqlalchemy import select

from game.tables import players
from tests.bot.conftest import PUBLIC_URL, WEBHOOK_SECRET, WEBHOOK_URL, new_user_id
from tests.bot.fake_bot_api import message_update


async def test_start_offers_the_mini_app_and_sets_webhook_and_menu(make_world):
    world = await make_world(webhook=True)
    hook = await world.fake.wait_for("setWebhook")
    assert hook.params["url"] == WEBHOOK_URL
    assert hook.params["secret_token"] == WEBHOOK_SECRET
    menu = await world.fake.wait_for("setChatMenuButton", lambda c: "chat_id" not in c.params)
    assert menu.params["menu_button"]["type"] == "web_app"
    assert menu.params["menu_button"]["web_app"]["url"] == PUBLIC_URL + "/"
    assert not world.fake.calls_to("getUpdates")  # no polling in webhook mode

    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/start")
    reply = await world.reply_to(user, "sendMessage", mark)
    button = reply.params["reply_markup"]["inline_keyboard"][0][0]
    assert button["web_app"]["url"] == PUBLIC_URL + "/"
    assert "GAP" in reply.params["text"]
    chat_menu = await world.reply_to(user, "setChatMenuButton", mark)
    assert chat_menu.params["menu_button"]["web_app"]["url"] == PUBLIC_URL + "/"


async def test_forged_or_missing_secret_is_refused_with_403(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    update = message_update(world.fake.next_update_id(), user, "/start")
    mark = world.mark()
    assert (await world.post_webhook(update, secret="not-the-secret")).status == 403
    assert (await world.post_webhook(update, secret=None)).status == 403
    assert (await world.post_webhook(update, secret=WEBHOOK_SECRET[:-1])).status == 403
    # Nothing was processed: no player, no reply. Then the genuine delivery works.
    async with world.components.db.read() as conn:
        assert (await conn.execute(select(players.c.id))).all() == []
    assert (await world.post_webhook(update)).status == 200
    await world.reply_to(user, "sendMessage", mark)
    assert len([c for c in world.fake.calls[mark:] if c.method == "sendMessage"]) == 1


async def test_webhook_rejects_bodies_that_are_not_updates(make_world):
    world = await make_world(webhook=True)
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    async with world.http.post(f"{world.url}/telegram/webhook", data=b"not json", headers=headers) as resp:
        assert resp.status == 400
    async with world.http.post(f"{world.url}/telegram/webhook", json=[1, 2], headers=headers) as resp:
        assert resp.status == 400


async def test_deep_link_referrer_and_chat_are_stored(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/start friend_77")
    await world.reply_to(user, "sendMessage", mark)
    mark = world.mark()
    await world.say(user, "/start someone_else")  # the first referrer wins
    await world.reply_to(user, "sendMessage", mark)
    async with world.components.db.read() as conn:
        rows = (await conn.execute(select(players.c.referrer, players.c.chat_id, players.c.player_key))).all()
    assert len(rows) == 1
    assert rows[0].referrer == "friend_77" and rows[0].chat_id == user
    assert str(user) not in rows[0].player_key  # stored under the keyed hash only


async def test_help_and_score_for_a_new_player(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/help")
    assert "/play" in (await world.reply_to(user, "sendMessage", mark)).params["text"]
    mark = world.mark()
    await world.say(user, "/score")
    text = (await world.reply_to(user, "sendMessage", mark)).params["text"]
    assert "Points: 0" in text and "not ranked yet" in text and "can't tell yet" in text
