"""Admin commands against a server with real game data; refusals for everyone else."""
from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

from PIL import Image
from sqlalchemy import select, update

from bot.handlers.common import NOT_AVAILABLE
from game.evaluation_store import SETTLE_MS
from game.tables import answers, players, session_images
from tests.bot.conftest import ADMIN_ID, TEST_BOT_TOKEN, WEBHOOK_SECRET, World, new_user_id

ADMIN_COMMANDS = ["/stats", "/pool", "/compare", "/export", "/export vqa 0.5", "/mute 1", "/unmute 1", "/ban 1", "/unban 1",
                  "/broadcast hello all", "/promote fake:1", "/rounds",
                  "/settings"]


async def play_sessions(world: World, telegram_id: int, sessions: int) -> int:
    """A careful player, through the real GameService: flags every tainted answer and
    reports a 'mistake' on every untainted picture (finds). Returns the player id."""
    service = world.components.service
    player = await service.upsert_player(telegram_id, "Careful")
    for s in range(sessions):
        state = await service.start_or_resume(player)
        step = 0
        while state["status"] == "playing":
            step += 1
            got = await service.ask(player, state["session_id"], f"sim-{s}-{step}-q", "What colour is the circle?")
            async with service.db.read() as conn:
                row = (await conn.execute(select(answers.c.tainted, session_images.c.tainted.label("image_tainted"))
                                          .select_from(answers.join(session_images,
                                                                    answers.c.session_image_id == session_images.c.id))
                                          .where(answers.c.id == got["answer_id"]))).one()
            verdict = "wrong" if row.tainted or not row.image_tainted else "correct"
            state = await service.verdict(player, got["answer_id"], f"sim-{s}-{step}-v", verdict,
                                          "chartreuse" if verdict == "wrong" else None)
    return player


async def test_non_admins_get_the_same_polite_refusal_as_unknown_commands(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    for text in ADMIN_COMMANDS + ["/frobnicate"]:
        mark = world.mark()
        await world.say(user, text)
        reply = await world.reply_to(user, "sendMessage", mark)
        assert reply.params["text"] == NOT_AVAILABLE, text
    assert not world.fake.calls_to("sendPhoto") and not world.fake.calls_to("sendDocument")
    async with world.components.db.read() as conn:  # nothing was muted by the refused /mute
        assert not (await conn.execute(select(players.c.id).where(players.c.muted.is_(True)))).all()


async def test_stats_sends_numbers_and_a_png(make_world):
    world = await make_world(webhook=True, taint_prob=1.0)
    await play_sessions(world, 5001, 1)
    mark = world.mark()
    await world.say(ADMIN_ID, "/stats")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert "Players: 1 (0 muted)" in text
    assert "Sessions: 1 (1 finished), 10.0 images per session" in text
    assert "caught deliberate mistakes: 5" in text and "finds on untainted images: 5" in text
    assert "Exportable at θ=0.8:" in text and "n/a" not in text
    assert "• test: 10 of 20 reliable (measured (other) 10/20)" in text
    photo = await world.reply_to(ADMIN_ID, "sendPhoto", mark)
    data = photo.files["photo"].data
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    img = Image.open(io.BytesIO(data))
    img.verify()
    assert img.format == "PNG" and img.size[0] > 600


async def test_pool_reports_pools_and_accuracy(make_world):
    world = await make_world(webhook=True)
    mark = world.mark()
    await world.say(ADMIN_ID, "/pool")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert "test: 20 images, 10 in the reliable pool; model accuracy 75%" in text


async def test_export_sends_a_zip_document_with_the_training_data(make_world):
    world = await make_world(webhook=True, taint_prob=1.0)
    await play_sessions(world, 5002, 2)  # 10 tainted catches: past the gold gate
    await asyncio.sleep(SETTLE_MS / 1000 + 0.2)  # the evaluation leaves the last 2 s of verdicts for its next run
    mark = world.mark()
    await world.say(ADMIN_ID, "/export vqa 0")
    doc = await world.reply_to(ADMIN_ID, "sendDocument", mark, timeout=60)
    upload = doc.files["document"]
    assert upload.filename.endswith(".zip") and "vqa" in upload.filename
    count = int(doc.params["caption"].split(": ")[1].split()[0])
    assert count == 10  # every find of the trusted player at θ=0
    assert doc.params["caption"].endswith("; 0 skipped (correction the same as the answer)")
    with zipfile.ZipFile(io.BytesIO(upload.data)) as zf:
        lines = zf.read("train.jsonl").decode().splitlines()
        assert len(lines) == count
        first = json.loads(lines[0])
        assert first["correct_answer"] == "chartreuse" and first["question"] == "What colour is the circle?"
        assert "README.md" in zf.namelist() and any(n.startswith("images/") for n in zf.namelist())

    mark = world.mark()  # with confirmations (answers judged correct; the exporter's own test checks which)
    await world.say(ADMIN_ID, "/export confirmed vqa 0")
    doc = await world.reply_to(ADMIN_ID, "sendDocument", mark, timeout=60)
    assert "with confirmations" in doc.params["caption"] and "-confirmed-" in doc.files["document"].filename
    assert int(doc.params["caption"].split(": ")[1].split()[0]) >= count

    # strata=: only the images of those pool strata (these test images have none: nothing passes)
    mark = world.mark()
    await world.say(ADMIN_ID, "/export vqa 0 strata=simple,simple:dark")
    doc = await world.reply_to(ADMIN_ID, "sendDocument", mark, timeout=60)
    assert " of the strata simple,simple:dark: 0 items" in doc.params["caption"]
    assert "-simple-simple-dark-" in doc.files["document"].filename
    mark = world.mark()
    await world.say(ADMIN_ID, "/export strata=simple;drop")
    assert "not a stratum name" in (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]

    # a find stored before verdicts refused a correction equal to the answer: exported? no — counted
    async with world.components.db.write() as conn:
        await conn.execute(update(answers).where(answers.c.id == first["id"]).values(
            correction=answers.c.served_answer + "."))
    mark = world.mark()
    await world.say(ADMIN_ID, "/export vqa 0")
    doc = await world.reply_to(ADMIN_ID, "sendDocument", mark, timeout=60)
    assert doc.params["caption"].endswith(f": {count - 1} items; 1 skipped (correction the same as the answer)")

    world.runtime.deps.max_document_bytes = 100  # an operator's limit smaller than this export
    mark = world.mark()
    await world.say(ADMIN_ID, "/export dpo 0")
    too_large = (await world.reply_to(ADMIN_ID, "sendMessage", mark, timeout=60)).params["text"]
    assert "too large to send" in too_large
    path = Path(too_large.rsplit(" at ", 1)[1])
    assert path.is_absolute()
    with zipfile.ZipFile(path) as zf:
        assert len(zf.read("train.jsonl").decode().splitlines()) == count - 1   # the same pair skipped

    mark = world.mark()
    await world.say(ADMIN_ID, "/export parquet")
    usage = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert usage.startswith("Usage: /export") and "parquet" in usage


async def test_mute_and_unmute_a_player(make_world):
    world = await make_world(webhook=True)
    user = new_user_id()
    mark = world.mark()
    await world.say(user, "/score")
    text = (await world.reply_to(user, "sendMessage", mark)).params["text"]
    number = text.split("player #")[1].split(")")[0]

    async def muted() -> bool:
        async with world.components.db.read() as conn:
            return bool((await conn.execute(select(players.c.muted).where(players.c.id == int(number)))).scalar_one())

    mark = world.mark()
    await world.say(ADMIN_ID, f"/mute #{number}")
    assert "is now muted" in (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert await muted()
    mark = world.mark()
    await world.say(ADMIN_ID, f"/unmute {number}")
    assert "is now unmuted" in (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert not await muted()
    for bad in ("/mute", "/mute 99999", "/mute zz!"):
        mark = world.mark()
        await world.say(ADMIN_ID, bad)
        reply = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
        assert reply.startswith(("Usage: /mute", "No single player")), bad


async def test_broadcast_asks_for_confirmation_then_reports_delivery(make_world):
    world = await make_world(webhook=True)
    fans = [new_user_id() for _ in range(3)]
    for fan in fans:
        mark = world.mark()
        await world.say(fan, "/start")
        await world.reply_to(fan, "sendMessage", mark)
    world.fake.blocked_chats.add(fans[2])  # this one blocked the bot

    mark = world.mark()
    await world.say(ADMIN_ID, "/broadcast New pictures today!")
    confirm = await world.reply_to(ADMIN_ID, "sendMessage", mark)
    assert "Send this to 3 players?" in confirm.params["text"]
    assert not [c for c in world.fake.calls[mark:] if c.params.get("text") == "New pictures today!"]
    send_button = confirm.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    mark = world.mark()
    await world.click(ADMIN_ID, send_button, confirm.result)
    report = await world.reply_to(ADMIN_ID, "sendMessage", mark, lambda c: c.params["text"].startswith("Broadcast done"))
    assert report.params["text"] == "Broadcast done: 2 delivered, 1 failed."
    got = sorted(int(c.params["chat_id"]) for c in world.fake.calls[mark:] if c.params.get("text") == "New pictures today!")
    assert got == sorted(fans)  # all three attempted, the blocked one failed

    mark = world.mark()
    await world.click(ADMIN_ID, send_button, confirm.result)  # a second tap sends nothing again
    ack = await world.fake.wait_for("answerCallbackQuery", after=mark)
    assert "already" in ack.params["text"]

    mark = world.mark()
    await world.say(ADMIN_ID, "/broadcast Never mind")
    confirm = await world.reply_to(ADMIN_ID, "sendMessage", mark)
    cancel = confirm.params["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    mark = world.mark()
    await world.click(ADMIN_ID, cancel, confirm.result)
    edit = await world.fake.wait_for("editMessageText", after=mark)
    assert edit.params["text"] == "Broadcast cancelled."
    assert not [c for c in world.fake.calls if c.params.get("text") == "Never mind"]


async def test_settings_show_the_configuration_without_secrets(make_world):
    world = await make_world(webhook=True)
    mark = world.mark()
    await world.say(ADMIN_ID, "/settings")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert "bot_token = ***" in text and "webhook_secret = ***" in text and "image_seconds = 120.0" in text
    assert TEST_BOT_TOKEN not in text and TEST_BOT_TOKEN.split(":")[1] not in text and WEBHOOK_SECRET not in text


async def test_stats_shows_each_way_into_the_reliable_pool(make_world):
    """Declared, annotated-measured, crowd-measured and unknown images of a photo folder, as /stats shows them."""
    from game.evaluation_tables import crowd_counts
    from game.images import prepare_image, store_image
    from game.tables import images
    from tests.conftest import solid_png

    world = await make_world(webhook=True)
    db = world.components.db
    judge = await play_sessions(world, new_user_id(), 1)   # before the photos exist: never served one
    ids = [(await store_image(db, prepare_image(solid_png(200 + i, 40)), pool="imported:photos"))[0] for i in range(6)]
    async with db.write() as conn:
        await conn.execute(update(images).where(images.c.id == ids[0]).values(declared_reliable=True, reliable=True))
        await conn.execute(update(images).where(images.c.id.in_(ids[1:3])).values(
            annotations_json='{"file": "a.jpg", "qa": [{"question": "Is it red?", "answers": ["yes"]}]}'))
        await conn.execute(update(images).where(images.c.id == ids[1]).values(model_accuracy=1.0, reliable=True))
        await conn.execute(update(images).where(images.c.id == ids[2]).values(model_accuracy=0.4))
    # The crowd: a careful player's 400 Correct verdicts on honest answers of ids[3] (written straight
    # into the evidence table; tests/game/test_crowd_reliability.py plays them), judged with the
    # player's (s, f) from the session above by the evaluation that /stats runs.
    async with db.write() as conn:
        await conn.execute(crowd_counts.insert().values(image_id=ids[3], player_id=judge, n_correct=400, n_wrong=0))
    await asyncio.sleep(SETTLE_MS / 1000 + 0.2)  # the evaluation leaves the last 2 s of verdicts for its next run
    mark = world.mark()
    await world.say(ADMIN_ID, "/stats")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert ("• imported:photos: 3 of 6 reliable (declared 1/1, measured (annotations) 1/2, crowd-measured 1/1, "
            "unknown 0/2)") in text
    assert "• test: 10 of 20 reliable" in text
    assert "• reliable pool: declared 1/1, measured (scene graph) 0/0, measured (annotations) 1/2, " in text


async def test_promote_starts_a_model_round_that_the_server_follows(make_world):
    world = await make_world(webhook=True, round_poll_seconds=0.05)
    await play_sessions(world, new_user_id(), 1)  # answers by the first model
    mark = world.mark()
    await world.say(ADMIN_ID, "/promote")
    assert (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"].startswith("Usage: /promote")
    mark = world.mark()
    await world.say(ADMIN_ID, "/promote fake:3")
    reply = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert reply.startswith("Round 1: fake:3 recorded")
    for _ in range(200):
        if world.components.model.model_id == "fake-fixed-latency-3ms":
            break
        await asyncio.sleep(0.05)
    assert world.components.model.model_id == "fake-fixed-latency-3ms"  # swapped without a restart
    await play_sessions(world, new_user_id(), 1)  # answers by the promoted model
    mark = world.mark()
    await world.say(ADMIN_ID, "/rounds")
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"]
    assert "Round 1: fake:3 — serving fake-fixed-latency-3ms" in text
    assert "round 0 · fake-fixed-latency-0ms: " in text and "round 1 · fake-fixed-latency-3ms: " in text
    assert "finds per player-minute" in text and "error rate" in text


async def test_compare_sends_the_model_or_crowd_table_and_chart(make_world):
    """/compare (SPEC §3.5): players describe through the real service, the model describes the same
    images, and the admin gets the per-attribute comparison and its chart; bad arguments get the usage."""
    from game.compare_run import describe_missing
    from gap.commands.images import generate_pool

    world = await make_world(webhook=True)
    service = world.components.service
    await generate_pool(world.components.db, 12, seed=8)
    for p in range(3):
        player = await service.upsert_player(7100 + p, f"Describer {p}")
        for i in range(4):
            task = await service.describe_task(player)
            await service.describe(player, task["task_id"], f"d{p}-{i}", f"a shape, picture {p}-{i}")
    assert await describe_missing(world.components.db, service.model) == 12
    mark = world.mark()
    await world.say(ADMIN_ID, "/compare 2")
    # a few hundred small forests: generous on a loaded CI machine
    text = (await world.reply_to(ADMIN_ID, "sendMessage", mark, timeout=180)).params["text"]
    assert text.startswith("Model or crowd? (12 images, 2 splits, model fake-fixed-latency-0ms)")
    assert "• largest_color: crowd " in text and "Cost per crowd description: 0.0000 (12 descriptions)" in text
    photo = await world.reply_to(ADMIN_ID, "sendPhoto", mark, timeout=60)
    assert photo.files["photo"].data.startswith(b"\x89PNG\r\n\x1a\n")
    for bad in ("/compare 1", "/compare lots", "/compare 3 4"):
        mark = world.mark()
        await world.say(ADMIN_ID, bad)
        assert (await world.reply_to(ADMIN_ID, "sendMessage", mark)).params["text"].startswith("Usage: /compare")
