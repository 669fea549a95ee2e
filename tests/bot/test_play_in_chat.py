"""Play in chat: the same GameService calls and the same stored rows as the Mini App."""
from __future__ import annotations

import asyncio
import io
import re

from PIL import Image
from sqlalchemy import func, select

from game.tables import answers, points_ledger, requests, sessions
from tests.bot.conftest import World, new_user_id
from tests.bot.fake_bot_api import Call

QUESTION = "What colour is the biggest shape?"


def buttons(call: Call) -> dict[str, str]:
    """{'Correct': callback_data, 'Wrong': callback_data} of an answer message."""
    row = call.params["reply_markup"]["inline_keyboard"][0]
    return {("Correct" if "Correct" in b["text"] else "Wrong"): b["callback_data"] for b in row}


async def ask(world: World, user: int, question: str = QUESTION) -> Call:
    mark = world.mark()
    await world.say(user, question)
    return await world.reply_to(user, "sendMessage", mark, lambda c: "reply_markup" in c.params
                                and "inline_keyboard" in c.params["reply_markup"])


async def play_and_tap_wrong(world: World, user: int) -> None:
    """/play, one question, then Wrong: the bot now waits for the typed correction."""
    mark = world.mark()
    await world.say(user, "/play")
    await world.reply_to(user, "sendPhoto", mark)
    answer = await ask(world, user)
    mark = world.mark()
    await world.click(user, buttons(answer)["Wrong"], answer.result)
    await world.reply_to(user, "sendMessage", mark, lambda c: "correct answer" in c.params["text"])


async def judge_wrong(world: World, user: int, answer: Call, correction: str) -> int:
    mark = world.mark()
    await world.click(user, buttons(answer)["Wrong"], answer.result)
    await world.fake.wait_for("answerCallbackQuery", after=mark)
    prompt = await world.reply_to(user, "sendMessage", mark, lambda c: "correct answer" in c.params["text"])
    assert prompt.params["reply_markup"]["force_reply"] is True
    mark = world.mark()
    await world.say(user, correction)
    await world.reply_to(user, "sendMessage", mark, lambda c: "noted" in c.params["text"])
    return mark


async def test_full_session_in_chat_over_long_polling(make_world):
    world = await make_world(webhook=False, image_seconds=120)
    await world.fake.wait_for("deleteWebhook")  # polling bootstrap
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/play")
    photo = await world.reply_to(user, "sendPhoto", mark)
    assert re.match(r"^Picture 1 of 10 · [12]:\d\d left", photo.params["caption"])
    Image.open(io.BytesIO(photo.files["photo"].data)).verify()  # a real image was uploaded

    # Correct keeps the picture: the edited message says so, and we may ask again.
    answer = await ask(world, user)
    assert answer.params["text"].startswith("AI: ")
    mark = world.mark()
    await world.click(user, buttons(answer)["Correct"], answer.result)
    edit = await world.fake.wait_for("editMessageText", after=mark)
    assert "correct" in edit.params["text"] and "reply_markup" not in edit.params

    for index in range(10):
        answer = await ask(world, user, f"{QUESTION} ({index})")
        mark = await judge_wrong(world, user, answer, f"blue {index}")
        if index < 9:
            nxt = await world.reply_to(user, "sendPhoto", mark)
            assert nxt.params["caption"].startswith(f"Picture {index + 2} of 10")
    summary = await world.reply_to(user, "sendMessage", mark, lambda c: c.params["text"].startswith("Game over!"))
    lines = [line for line in summary.params["text"].splitlines() if line.startswith("Picture ")]
    assert len(lines) == 10
    assert sum("told to mislead" in line for line in lines) == 5

    db = world.components.db
    async with db.read() as conn:
        rows = (await conn.execute(select(answers))).all()
        status = (await conn.execute(select(sessions.c.status))).scalars().all()
        request_ids = (await conn.execute(select(requests.c.request_id))).scalars().all()
        points = (await conn.execute(select(func.coalesce(func.sum(points_ledger.c.points), 0)))).scalar_one()
    assert status == ["finished"]
    assert len(rows) == 11 and all(r.verdict for r in rows)
    assert sorted(r.correction for r in rows if r.verdict == "wrong") == sorted(f"blue {i}" for i in range(10))
    assert all(rid.startswith("tg-") for rid in request_ids) and len(request_ids) == 22  # 11 asks, 11 verdicts
    assert f"You scored {points} points" in summary.params["text"]


async def test_redelivered_update_is_stored_once(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/play")
    await world.reply_to(user, "sendPhoto", mark)
    mark = world.mark()
    update = await world.say(user, QUESTION)
    await world.reply_to(user, "sendMessage", mark)
    mark = world.mark()
    await world.deliver(update)  # Telegram retries the same update
    reminder = await world.reply_to(user, "sendMessage", mark)
    assert reminder.params["text"].startswith("First tell me")
    async with world.components.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(answers))).scalar_one() == 1


async def test_bad_correction_keeps_waiting_and_time_out_moves_on(make_world):
    world = await make_world(webhook=True, image_seconds=2)
    user = new_user_id()
    await play_and_tap_wrong(world, user)
    mark = world.mark()
    await world.say(user, "x" * 250)  # corrections are 1–200 characters
    refusal = await world.reply_to(user, "sendMessage", mark)
    assert "at most 200" in refusal.params["text"]
    await asyncio.sleep(2.2)  # let the 2-second picture run out on the server
    mark = world.mark()
    await world.say(user, "red")
    late = await world.reply_to(user, "sendMessage", mark)
    assert "Time ran out" in late.params["text"]
    nxt = await world.reply_to(user, "sendPhoto", mark)
    assert nxt.params["caption"].startswith("Picture 2 of 10")
    async with world.components.db.read() as conn:
        assert (await conn.execute(select(answers.c.verdict))).scalars().all() == [None]


async def test_score_after_a_game_in_chat(make_world):
    world = await make_world(webhook=True, taint_prob=1.0)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/play")
    await world.reply_to(user, "sendPhoto", mark)
    for index in range(10):
        answer = await ask(world, user, f"{QUESTION} {index}")
        mark = await judge_wrong(world, user, answer, "turquoise")
    await world.reply_to(user, "sendMessage", mark, lambda c: c.params["text"].startswith("Game over!"))
    mark = world.mark()
    await world.say(user, "/score")
    text = (await world.reply_to(user, "sendMessage", mark)).params["text"]
    # q = 1: every answer on the 5 tainted pictures was tainted and caught (+20 each)
    assert "Points: 100 in total, 100 in the last 7 days" in text
    assert "Rank: #1" in text and "Games: 1" in text
    assert "Mistakes caught: 5; finds of real AI mistakes: 5" in text
    assert "Reliability: Excellent" in text  # 5 of 5 caught: posterior mean 6/7


async def test_owed_correction_survives_a_restart(make_world, tmp_path):
    """Wrong is tapped, the server restarts, then the correction arrives: it is stored as the verdict."""
    state_file = tmp_path / "bot-state.pickle"
    shared = dict(webhook=True, database_url=f"sqlite+aiosqlite:///{tmp_path / 'restart.sqlite3'}",
                  bot_state_file=str(state_file))
    first = await make_world(**shared)
    user = new_user_id()
    await play_and_tap_wrong(first, user)
    await first.runner.cleanup()  # the deploy restarts the process
    assert state_file.exists()

    second = await make_world(**shared)
    mark = second.mark()
    await second.say(user, "crimson")
    thanks = await second.reply_to(user, "sendMessage", mark)
    assert "noted" in thanks.params["text"]
    async with second.components.db.read() as conn:
        rows = (await conn.execute(select(answers.c.verdict, answers.c.correction))).all()
    assert [(r.verdict, r.correction) for r in rows] == [("wrong", "crimson")]
