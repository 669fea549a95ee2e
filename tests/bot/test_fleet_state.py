"""Two web workers on one database (SQLite file and PostgreSQL), each with its own bot
runtime behind the same webhook: the bot's chat-side state is in the database, so an
update that reaches the other worker still knows it (SPEC §4.2)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from game.tables import answers
from tests.bot.conftest import ADMIN_ID, new_user_id
from tests.bot.test_play_in_chat import ask, buttons

pytestmark = pytest.mark.both_backends


async def test_the_tap_on_one_worker_and_the_correction_on_the_other(make_world, db_url):
    one = await make_world(webhook=True, database_url=db_url)
    two = await make_world(webhook=True, database_url=db_url)
    user = new_user_id()
    mark = one.mark()
    await one.say(user, "/play")
    await one.reply_to(user, "sendPhoto", mark)
    answer = await ask(one, user)
    mark = one.mark()
    await one.click(user, buttons(answer)["Wrong"], answer.result)  # the tap reaches worker one
    await one.reply_to(user, "sendMessage", mark, lambda c: "correct answer" in c.params["text"])

    mark = two.mark()
    await two.say(user, "a purple unicorn")  # the typed correction reaches worker two
    thanks = await two.reply_to(user, "sendMessage", mark)
    assert "noted" in thanks.params["text"]
    async with two.components.db.read() as conn:
        rows = (await conn.execute(select(answers.c.verdict, answers.c.correction))).all()
    assert [(r.verdict, r.correction) for r in rows] == [("wrong", "a purple unicorn")]


async def test_a_broadcast_confirmed_on_the_other_worker_is_sent_once(make_world, db_url):
    one = await make_world(webhook=True, database_url=db_url)
    two = await make_world(webhook=True, database_url=db_url)
    fan = new_user_id()
    mark = one.mark()
    await one.say(fan, "/start")
    await one.reply_to(fan, "sendMessage", mark)

    mark = one.mark()
    await one.say(ADMIN_ID, "/broadcast Hello from the fleet")
    confirm = await one.reply_to(ADMIN_ID, "sendMessage", mark)
    send = confirm.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    mark = two.mark()
    await two.click(ADMIN_ID, send, confirm.result)  # confirmed on worker two
    report = await two.reply_to(ADMIN_ID, "sendMessage", mark, lambda c: c.params["text"].startswith("Broadcast done"))
    assert report.params["text"] == "Broadcast done: 1 delivered, 0 failed."
    mark = one.mark()
    await one.click(ADMIN_ID, send, confirm.result)  # a second tap, on worker one: nothing is sent again
    ack = await one.fake.wait_for("answerCallbackQuery", after=mark)
    assert "already" in ack.params["text"]
    sent = [c for world in (one, two) for c in world.fake.calls if c.params.get("text") == "Hello from the fleet"]
    assert len(sent) == 1
