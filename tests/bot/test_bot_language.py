"""The bot speaks the player's language (Telegram's language_code), English otherwise."""
from __future__ import annotations

import re

from tests.bot.conftest import PUBLIC_URL, World, new_user_id
from tests.bot.fake_bot_api import callback_update, message_update, user

ALLOWED = {"GAP", "Ann"}  # names; commands (/play) and the model's answers are stripped first


def russian(user_id: int) -> dict:
    return {**user(user_id), "language_code": "ru-RU"}


async def say_ru(world: World, user_id: int, text: str) -> None:
    update = message_update(world.fake.next_update_id(), user_id, text)
    update["message"]["from"] = russian(user_id)
    await world.deliver(update)


async def click_ru(world: World, user_id: int, data: str, message: dict) -> None:
    update = callback_update(world.fake.next_update_id(), user_id, data, message)
    update["callback_query"]["from"] = russian(user_id)
    await world.deliver(update)


def english_words(text: str, answers: list[str]) -> set[str]:
    for answer in answers:
        text = text.replace(answer, "")
    text = re.sub(r"/\w+|https?://\S+", "", text)
    return set(re.findall(r"[A-Za-z]{2,}", text)) - ALLOWED


async def test_a_russian_player_reads_russian_only(make_world):
    world = await make_world(webhook=True)
    ru = new_user_id()
    mark = world.mark()
    await say_ru(world, ru, "/start")
    start = await world.reply_to(ru, "sendMessage", mark)
    assert start.params["text"].startswith("Привет, Ann!")
    button = start.params["reply_markup"]["inline_keyboard"][0][0]
    assert button["text"] == "▶️ Играть в GAP" and button["web_app"]["url"] == PUBLIC_URL + "/?lang=ru"

    await say_ru(world, ru, "/help")
    await say_ru(world, ru, "/frobnicate")
    mark_play = world.mark()
    await say_ru(world, ru, "/play")
    photo = await world.reply_to(ru, "sendPhoto", mark_play)
    assert photo.params["caption"].startswith("Картинка 1 из 10 · ")
    await say_ru(world, ru, "Какого цвета круг?")
    answer = await world.reply_to(ru, "sendMessage", mark_play, lambda c: "inline_keyboard" in
                                  str(c.params.get("reply_markup")))
    assert answer.params["text"].startswith("ИИ: ")
    model_answer = answer.params["text"].split("\n")[0][len("ИИ: "):]
    row = answer.params["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in row] == ["✅ Верно", "❌ Неверно"]
    mark = world.mark()
    await click_ru(world, ru, row[1]["callback_data"], answer.result)
    prompt = await world.reply_to(ru, "sendMessage", mark, lambda c: "force_reply" in str(c.params.get("reply_markup")))
    assert prompt.params["text"].startswith("Какой ответ правильный?")
    mark = world.mark()
    await say_ru(world, ru, "синий")
    await world.reply_to(ru, "sendPhoto", mark)
    await say_ru(world, ru, "/score")
    await world.reply_to(ru, "sendMessage", mark, lambda c: c.params["text"].startswith("Ваш счёт"))

    sent = [c for c in world.fake.calls if str(c.params.get("chat_id")) == str(ru)
            and c.method in ("sendMessage", "sendPhoto", "editMessageText")]
    texts = [c.params.get("text") or c.params.get("caption") or "" for c in sent]
    assert len(texts) >= 9
    leftovers = {text: english_words(text, [model_answer]) for text in texts}
    assert {t: w for t, w in leftovers.items() if w} == {}
    callbacks = [c.params.get("text", "") for c in world.fake.calls if c.method == "answerCallbackQuery"
                 and c.params.get("text")]
    assert "Записал: неверно" in callbacks


async def test_other_languages_fall_back_to_english_and_commands_are_set_per_language(make_world):
    world = await make_world(webhook=True)
    de = new_user_id()
    update = message_update(world.fake.next_update_id(), de, "/help")
    update["message"]["from"] = {**user(de), "language_code": "de"}
    mark = world.mark()
    await world.deliver(update)
    assert (await world.reply_to(de, "sendMessage", mark)).params["text"].startswith("How to play GAP:")
    commands = await world.fake.wait_for("setMyCommands", lambda c: c.params.get("language_code") == "ru")
    assert "Открыть игру" in str(commands.params["commands"])
