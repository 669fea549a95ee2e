"""Model rounds over the real server (SPEC §3.2): a promotion hot-swaps the serving model while
players keep asking — no restart, no failed request — and every answer records the model that gave it."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from game import rounds
from game.tables import answers
from gap.app import COMPONENTS_KEY, build_app
from settings import Settings
from tests.conftest import TEST_BOT_TOKEN, seed_images
from tests.webapp.conftest import auth_header

pytestmark = pytest.mark.both_backends


async def _serve(settings: Settings):
    app = await build_app(settings)
    await seed_images(app[COMPONENTS_KEY].db, total=20, reliable=10)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return app, runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def _play(http: aiohttp.ClientSession, url: str, user: int, questions: int, pause: float,
                stop: asyncio.Event | None = None) -> list[int]:
    """One player asking and judging Correct (until `stop`, at most `questions`); returns every HTTP status."""
    headers = {**auth_header(user), "Content-Type": "application/json"}
    statuses = []
    async with http.post(f"{url}/api/sessions", headers=headers) as resp:
        statuses.append(resp.status)
        sid = (await resp.json())["session_id"]
    for i in range(questions):
        if stop is not None and stop.is_set():
            break
        async with http.post(f"{url}/api/sessions/{sid}/questions", headers=headers,
                             data=json.dumps({"request_id": f"q{user}-{i}", "text": f"How many stars? {i}"})) as resp:
            statuses.append(resp.status)
            answer_id = (await resp.json())["answer_id"]
        async with http.post(f"{url}/api/answers/{answer_id}/verdict", headers=headers,
                             data=json.dumps({"request_id": f"v{user}-{i}", "verdict": "correct"})) as resp:
            statuses.append(resp.status)
        await asyncio.sleep(pause)
    return statuses


async def _count_answers(db, model_id: str) -> int:
    async with db.read() as conn:
        return len((await conn.execute(select(answers.c.id).where(answers.c.model_id == model_id))).all())


async def _until(count, at_least: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await count() < at_least:
        assert asyncio.get_running_loop().time() < deadline, "the game stopped answering"
        await asyncio.sleep(0.02)


async def test_a_promotion_swaps_the_model_under_load_without_a_failed_request(db_url: str):
    settings = Settings(bot_token=TEST_BOT_TOKEN, bot_enabled=False, database_url=db_url, model="fake:30", round_poll_seconds=0.05,
                        init_data_max_age=3600)
    app, runner, url = await _serve(settings)
    db = app[COMPONENTS_KEY].db
    try:
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as http:
            players = [asyncio.create_task(_play(http, url, 500 + p, 500, 0.02, stop)) for p in range(8)]
            await _until(lambda: _count_answers(db, "fake-fixed-latency-30ms"), 16)
            first = await rounds.promote(db, "fake:1", by="test", now_ms=1)
            await _until(lambda: _count_answers(db, "fake-fixed-latency-1ms"), 16)
            stop.set()
            statuses = await asyncio.gather(*players)
        assert all(s == 200 for run in statuses for s in run), statuses
        async with db.read() as conn:
            ids = [r[0] for r in (await conn.execute(select(answers.c.model_id).order_by(answers.c.asked_at))).all()]
        assert len(ids) == sum(len(run) - 1 for run in statuses) // 2
        assert ids[0] == "fake-fixed-latency-30ms" and ids[-1] == "fake-fixed-latency-1ms"
        switch = ids.index("fake-fixed-latency-1ms")
        # once swapped, new questions go to the new model: only the questions already in flight then (one per
        # player at most; asked_at is taken before the model call) may still come back from the old one
        assert ids[switch:].count("fake-fixed-latency-30ms") <= 8
        assert ids[switch + 8:].count("fake-fixed-latency-30ms") == 0
        assert (await rounds.latest(db)) == rounds.Round(first.number, "fake:1", "test", 1,
                                                         "fake-fixed-latency-1ms", None)
        report = await rounds.round_report(db, theta=0.8)
        assert [(s.model_id, s.round) for s in report] == [("fake-fixed-latency-30ms", None),
                                                          ("fake-fixed-latency-1ms", first.number)]
        assert sum(s.questions for s in report) == len(ids) and all(s.player_minutes > 0 for s in report)

        # a round whose model does not load is recorded as failed and the running model stays
        broken = await rounds.promote(db, "/no/such/adapter", by="test", now_ms=2)
        for _ in range(100):
            if (await rounds.latest(db)).error:
                break
            await asyncio.sleep(0.05)
        latest = await rounds.latest(db)
        assert latest.number == broken.number and "no model directory" in latest.error and latest.model_id is None
        async with aiohttp.ClientSession() as http:
            assert set(await _play(http, url, 900, 2, 0)) == {200}
    finally:
        await runner.cleanup()


async def test_a_restarted_server_serves_the_latest_round(db_url: str):
    settings = Settings(bot_token=TEST_BOT_TOKEN, bot_enabled=False, database_url=db_url, model="fake:0",
                        init_data_max_age=3600)
    app, runner, url = await _serve(settings)
    await rounds.promote(app[COMPONENTS_KEY].db, "fake:2", by="test", now_ms=1)
    await runner.cleanup()
    app, runner, url = await _serve(settings)
    try:
        assert app[COMPONENTS_KEY].model.model_id == "fake-fixed-latency-2ms"
        assert (await rounds.latest(app[COMPONENTS_KEY].db)).model_id == "fake-fixed-latency-2ms"
    finally:
        await runner.cleanup()


def test_a_model_spec_is_checked():
    from game.errors import Invalid

    for bad in ["", "   ", "x" * 1001, "dir\x00name", 42, None]:
        with pytest.raises(Invalid):
            rounds.clean_spec(bad)
    assert rounds.clean_spec("  openai:http://gpu:8000/v1 ") == "openai:http://gpu:8000/v1"
