"""/duel opens the Mini App on its Duels screen; the admin's /stats reports duels (SPEC §3.4)."""
from __future__ import annotations

import io

from PIL import Image

from bot.handlers.duels import duels_url
from tests.bot.conftest import ADMIN_ID, PUBLIC_URL, new_user_id
from tests.game.duel_support import duel_service, item_truth


def test_duels_url_keeps_the_page_and_adds_the_mode():
    assert duels_url("https://gap.example.com/") == "https://gap.example.com/?mode=duels"
    assert duels_url("https://gap.example.com") == "https://gap.example.com/?mode=duels"
    assert duels_url("https://x.org/app?v=2") == "https://x.org/app?v=2&mode=duels"


async def test_duel_command_and_stats(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/duel")
    reply = await world.reply_to(user, "sendMessage", mark)
    button = reply.params["reply_markup"]["inline_keyboard"][0][0]
    assert button["web_app"]["url"] == PUBLIC_URL + "/?mode=duels"
    assert "Duels" in reply.params["text"]

    # a batch played through the duel service, then the admin's numbers
    clock = type("C", (), {"now": 1_790_000_000_000, "__call__": lambda self: self.now})()
    duels = duel_service(world.components.db, clock)
    player = await world.components.service.upsert_player(user)
    state = await duels.start(player)
    while state["status"] == "playing":
        clock.now += 2500
        truth = await item_truth(world.components.db, state["item"]["item_id"])
        state = await duels.choose(player, state["item"]["item_id"], "r" + state["item"]["item_id"], truth["right"])
    mark = world.mark()
    await world.say(ADMIN_ID, "/stats")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert "Duels: 5 choices by 1 players, 0 removed; 0 too-fast taps refused" in text
    assert "median 2.5 s per duel" in text
    photo = await world.reply_to(ADMIN_ID, "sendPhoto", mark)
    img = Image.open(io.BytesIO(photo.files["photo"].data))
    assert img.format == "PNG" and img.size[0] >= 1500
