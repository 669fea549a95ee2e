"""One leaderboard name for a player whichever way they come in (SPEC §1.4): the
Mini App (signed initData, real HTTP) and the bot (updates through the fake Bot
API) apply the same rule to the same Telegram user, so neither overwrites the
other's name."""
from __future__ import annotations

from sqlalchemy import select

from game import tables as T
from game.players import derive_hash_key, display_name, player_key
from tests.bot.conftest import new_user_id
from tests.conftest import TEST_BOT_TOKEN
from webapp.auth import sign_init_data


async def _stored_name(world, user_id: int) -> str | None:
    key = player_key(derive_hash_key(None, TEST_BOT_TOKEN), user_id)  # no GAP_PLAYER_HASH_KEY in these worlds
    async with world.components.db.read() as conn:
        return (await conn.execute(select(T.players.c.display_name)
                                   .where(T.players.c.player_key == key))).scalar_one()


async def _via_mini_app(world, telegram_user: dict) -> None:
    auth = {"Authorization": "tma " + sign_init_data(TEST_BOT_TOKEN, telegram_user)}
    async with world.http.post(f"{world.url}/api/sessions", headers=auth) as resp:
        assert resp.status == 200, await resp.text()


async def _via_bot(world, telegram_user: dict) -> None:
    mark = world.mark()
    await world.say(telegram_user["id"], "/start", **{"from": {"is_bot": False, **telegram_user}})
    await world.reply_to(telegram_user["id"], "sendMessage", mark)


async def test_mini_app_and_bot_keep_one_name(make_world):
    world = await make_world()
    full = {"id": new_user_id(), "first_name": "Ann", "last_name": "Lee", "username": "ann_l"}
    await _via_mini_app(world, full)
    assert await _stored_name(world, full["id"]) == "Ann Lee"
    await _via_bot(world, full)
    assert await _stored_name(world, full["id"]) == "Ann Lee"  # the bot used to write "@ann_l"
    await _via_mini_app(world, full)
    assert await _stored_name(world, full["id"]) == "Ann Lee"

    # the other order, and a user with a username only (blank first name)
    handle = {"id": new_user_id(), "first_name": " ", "username": "bo_k"}
    await _via_bot(world, handle)
    assert await _stored_name(world, handle["id"]) == "@bo_k"
    await _via_mini_app(world, handle)
    assert await _stored_name(world, handle["id"]) == "@bo_k"  # initData carries the username too


def test_the_rule():
    assert display_name("Ann", "Lee", "ann_l") == "Ann Lee"
    assert display_name("Ann", None, None) == "Ann"
    assert display_name("", "", "@ann_l") == "@ann_l"
    assert display_name(None, None, None) is None and display_name("  ", " ", "") is None
