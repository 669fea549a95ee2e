"""Odd input gets a short helpful reply or silence — never a traceback — and a
failing handler is logged with the update id while the player gets an apology."""
from __future__ import annotations

import logging

from bot.handlers.common import APOLOGY, NOT_AVAILABLE
from tests.bot.conftest import ADMIN_ID, World, new_user_id
from tests.bot.fake_bot_api import message_update

STICKER = {"file_id": "st1", "file_unique_id": "stu1", "type": "regular", "width": 512, "height": 512,
           "is_animated": False, "is_video": False}
PHOTO = [{"file_id": "ph1", "file_unique_id": "phu1", "width": 90, "height": 90}]


async def reply_text(world: World, user: int, text: str | None, **extra) -> str:
    mark = world.mark()
    await world.say(user, text, **extra)
    return (await world.reply_to(user, "sendMessage", mark)).params["text"]


async def test_stickers_photos_unknown_commands_and_long_text(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    assert "only understand text" in await reply_text(world, user, None, sticker=STICKER)
    assert "only understand text" in await reply_text(world, user, None, photo=PHOTO, caption="look")
    assert await reply_text(world, user, "/frobnicate now") == NOT_AVAILABLE
    assert "not in a game" in await reply_text(world, user, "what is this?")
    mark = world.mark()
    await world.say(user, "/play")
    await world.reply_to(user, "sendPhoto", mark)
    huge = "why " * 1000  # 4000 characters, Telegram's maximum is 4096
    assert "at most 300 characters" in await reply_text(world, user, huge)
    assert "must not be empty" not in await reply_text(world, user, "What shape is it?")


async def test_edited_messages_get_a_hint_and_are_not_replayed(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    update = message_update(world.fake.next_update_id(), user, "what colour?")
    original = update.pop("message")
    update["edited_message"] = dict(original, edit_date=original["date"] + 5)
    mark = world.mark()
    await world.deliver(update)
    hint = await world.reply_to(user, "sendMessage", mark)
    assert "edited messages" in hint.params["text"]
    assert not world.fake.calls_to("sendPhoto") and "not in a game" not in hint.params["text"]


async def test_group_chatter_is_ignored_and_group_commands_point_to_private_chat(make_world):
    world = await make_world(webhook=True)
    user, group = new_user_id(), -100123
    mark = world.mark()
    await world.say(user, "hello bot", chat_id=group, chat_type="supergroup")
    await world.say(user, "/play", chat_id=group, chat_type="supergroup")  # same chat: handled after the first
    hint = await world.fake.wait_for("sendMessage", lambda c: c.params["chat_id"] == group, after=mark)
    assert "t.me/gap_test_bot" in hint.params["text"]
    to_group = [c for c in world.fake.calls[mark:] if c.params.get("chat_id") == group]
    assert len(to_group) == 1  # the plain message got silence
    assert not [c for c in world.fake.calls[mark:] if c.method == "sendPhoto"]


async def test_bad_buttons_and_admin_bad_arguments(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    message = {"message_id": 5, "date": 1, "chat": {"id": user, "type": "private"}, "text": "AI: red"}
    mark = world.mark()
    await world.click(user, "v|c|0123456789abcdef0123456789abcdef", message)  # not this player's answer
    ack = await world.fake.wait_for("answerCallbackQuery", after=mark)
    assert ack.params["text"] == "No such answer."
    mark = world.mark()
    await world.click(user, "v|zzz", message)
    await world.fake.wait_for("answerCallbackQuery", after=mark)
    assert "Usage: /broadcast" in await reply_text(world, ADMIN_ID, "/broadcast")
    assert "Usage: /export" in await reply_text(world, ADMIN_ID, "/export 2.5")
    assert "Usage: /export" in await reply_text(world, ADMIN_ID, "/export vqa 0.5 extra")
    assert "Usage: /export" in await reply_text(world, ADMIN_ID, "/export vqa 0.5 confirmed extra")
    # the same refusal as an unknown command for a non-admin pressing an admin button
    mark = world.mark()
    await world.click(user, "b|y|deadbeef", message)
    ack = await world.fake.wait_for("answerCallbackQuery", after=mark)
    assert ack.params["text"] == NOT_AVAILABLE[:190]


async def test_a_failing_handler_is_logged_with_the_update_id_and_apologised_for(make_world, caplog):
    world = await make_world(webhook=True, fail_methods=("sendPhoto",))  # the Bot API refuses photos
    user = new_user_id()
    mark = world.mark()
    with caplog.at_level(logging.ERROR, logger="gap.bot"):
        update = await world.say(user, "/play")
        apology = await world.reply_to(user, "sendMessage", mark)
    assert apology.params["text"] == APOLOGY
    assert any(f"update {update['update_id']}" in r.getMessage() for r in caplog.records)
    assert "Traceback" not in apology.params["text"]
