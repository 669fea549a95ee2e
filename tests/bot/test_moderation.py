"""/ban and /unban, and the per-chat update limit, through the local fake Bot API."""
from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.handlers.guard import BANNED_TEXT, too_fast_text
from game.tables import answers, players, rate_limits
from tests.bot.conftest import ADMIN_ID, World, new_user_id
from tests.bot.test_play_in_chat import ask


async def admin_says(world: World, text: str) -> str:
    mark = world.mark()
    await world.say(ADMIN_ID, text)
    return (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]


async def test_ban_stops_play_and_unban_restores_it(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/play")
    await world.reply_to(user, "sendPhoto", mark)

    reply = await admin_says(world, f"/ban tg:{user} spamming the model")
    assert "is banned: spamming the model" in reply
    async with world.components.db.read() as conn:
        row = (await conn.execute(select(players.c.banned_at, players.c.ban_reason)
                                  .where(players.c.player_key == world.components.service.player_key_for(user)))).one()
    assert row.banned_at is not None and row.ban_reason == "spamming the model"

    for text in ("/play", "What colour is the square?", "/score"):
        mark = world.mark()
        await world.say(user, text)
        assert (await world.reply_to(user, "sendMessage", mark)).params["text"] == BANNED_TEXT, text
    async with world.components.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(answers))).scalar_one() == 0

    assert "no longer banned" in await admin_says(world, f"/unban tg:{user}")
    answer = await ask(world, user)  # the session is still there; the question is answered
    assert answer.params["text"].startswith("AI: ")


async def test_ban_usage_and_unknown_players(make_world):
    world = await make_world(webhook=True)
    assert (await admin_says(world, "/ban")).startswith("Usage: /ban")
    assert (await admin_says(world, "/unban")).startswith("Usage: /unban")
    assert (await admin_says(world, "/ban tg:123456789")).startswith("No single player")
    assert (await admin_says(world, "/ban #99999")).startswith("No single player")


async def test_non_admins_cannot_ban(make_world):
    world = await make_world(webhook=True)
    user, victim = new_user_id(), new_user_id()
    await world.components.service.upsert_player(victim, "Victim")
    mark = world.mark()
    await world.say(user, f"/ban tg:{victim}")
    reply = await world.reply_to(user, "sendMessage", mark)
    assert "not something I can do" in reply.params["text"]
    async with world.components.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(players)
                                   .where(players.c.banned_at.is_not(None)))).scalar_one() == 0


async def test_updates_over_the_chat_limit_are_dropped_with_one_notice(make_world):
    world = await make_world(webhook=True, limit_chat_updates="3/1h")
    user = new_user_id()
    mark = world.mark()
    for _ in range(6):
        await world.say(user, "/help")
    db = world.components.db
    for _ in range(200):  # until the sixth update was counted (updates of one chat run in order)
        async with db.read() as conn:
            hits = (await conn.execute(select(func.sum(rate_limits.c.hits))
                                       .where(rate_limits.c.bucket == f"update:c:{user}"))).scalar()
        if hits == 6:
            break
        await asyncio.sleep(0.05)
    assert hits == 6
    notice = await world.reply_to(user, "sendMessage", mark, lambda c: "too fast" in c.params["text"])
    texts = [c.params["text"] for c in world.fake.calls[mark:]
             if c.method == "sendMessage" and str(c.params.get("chat_id")) == str(user)]
    assert len(texts) == 4 and texts[:3] == [texts[0]] * 3 and "How to play GAP" in texts[0]
    seconds = int(notice.params["text"].split("wait ")[1].split(" s")[0])
    assert 0 < seconds <= 3600 and notice.params["text"] == too_fast_text(None, seconds)
    # admins are never limited
    for _ in range(4):
        await admin_says(world, "/help")
