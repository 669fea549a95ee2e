"""/healthz follows the model (SPEC §5.2): `gap serve`'s wiring probes the model at start-up,
answers 503 naming the last model error while it fails, and 200 again once it answers —
here with GAP_MODEL=openai: pointing at a model worker that is down, then up."""
from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gap.app import COMPONENTS_KEY, build_app
from models.base import BadImage, ModelError
from models.fake import FixedLatencyModel
from models.health import MonitoredModel
from models.openai_server import create_model_server
from settings import Settings
from tests.conftest import TEST_BOT_TOKEN, FakeClock, seed_images
from tests.webapp.conftest import auth_header


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_healthz_reports_a_model_server_that_is_down_then_up(db, db_url):
    await seed_images(db)
    port = free_port()
    settings = Settings(bot_token=None, database_url=db_url, model=f"openai:http://127.0.0.1:{port}/v1",
                        player_hash_key="test-key", model_timeout_s=0.5, openai_connect_timeout_s=0.2)
    app = await build_app(settings, bot_token=TEST_BOT_TOKEN)  # the start-up probe fails: it serves anyway
    options = app[COMPONENTS_KEY].model.current.inner.options
    assert (options.timeout_s, options.connect_timeout_s, options.request_timeout_s) == (0.5, 0.2, 20.0)
    worker = None
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["error"]["code"] == "model_unavailable"
        assert "did not answer" in body["error"]["message"] and body["model"]["ready"] is False
        sid = (await (await http.post("/api/sessions", headers=auth_header(5))).json())["session_id"]
        resp = await http.post(f"/api/sessions/{sid}/questions", headers=auth_header(5),
                               json={"request_id": "r1", "text": "How many circles?"})
        assert resp.status == 502 and (await resp.json())["error"]["code"] == "model_error"

        fake = MonitoredModel(FixedLatencyModel(latency_ms=0))
        worker = web.AppRunner(create_model_server(fake, "fake"))
        await worker.setup()
        await web.TCPSite(worker, "127.0.0.1", port).start()
        app[COMPONENTS_KEY].model.current.reprobe_s = 0  # probe again at once instead of 10 s later
        resp = await http.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok" and body["model_state"]["ready"] is True
        assert "did not answer" in body["model_state"]["last_error"]  # kept for the operator
        resp = await http.post(f"/api/sessions/{sid}/questions", headers=auth_header(5),
                               json={"request_id": "r2", "text": "How many circles?"})
        assert resp.status == 200 and (await resp.json())["answer"]
    await worker.cleanup()


class Flaky(FixedLatencyModel):
    def __init__(self):
        super().__init__(latency_ms=0)
        self.error: Exception | None = None
        self.calls = 0

    async def answer(self, image, question, taint):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return await super().answer(image, question, taint)


@pytest.fixture
def png() -> bytes:
    from tests.conftest import solid_png

    return solid_png(1)


async def test_answers_decide_health_and_probes_are_rate_limited(png):
    clock = FakeClock()
    inner = Flaky()
    model = MonitoredModel(inner, reprobe_s=10, clock=lambda: clock.now / 1000)
    assert (await model.health()).checked is False and model.ready  # nothing seen yet
    assert await model.probe() and (await model.health()).ready
    inner.error = BadImage("not an image")
    with pytest.raises(BadImage):  # the request's fault: the model is fine
        await model.answer(png, "How many?", False)
    assert model.ready
    inner.error = ModelError("the model failed to answer")
    with pytest.raises(ModelError):
        await model.answer(png, "How many?", False)
    calls = inner.calls
    state = await model.health()
    assert not state.ready and state.last_error == "ModelError: the model failed to answer"
    assert inner.calls == calls  # probed less than reprobe_s ago: no new probe
    clock.advance(10)
    assert not (await model.health()).ready and inner.calls == calls + 1  # probed again, still failing
    inner.error = None
    clock.advance(5)
    assert not (await model.health()).ready and inner.calls == calls + 1
    clock.advance(5)
    assert (await model.health()).ready and inner.calls == calls + 2


async def test_a_promoted_model_that_fails_its_probe_is_refused(db, db_url):
    """A round (SPEC §3.2) naming a model server that is down never replaces the working model."""
    from game import rounds

    await seed_images(db)
    settings = Settings(bot_token=None, database_url=db_url, model="fake:0", player_hash_key="test-key",
                        round_poll_seconds=0.05, model_timeout_s=0.3, openai_connect_timeout_s=0.1)
    app = await build_app(settings, bot_token=TEST_BOT_TOKEN)
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        down = await rounds.promote(db, f"openai:http://127.0.0.1:{free_port()}/v1?model=m", by="test", now_ms=1)
        for _ in range(200):
            if (await rounds.latest(db)).error:
                break
            await asyncio.sleep(0.05)
        latest = await rounds.latest(db)
        assert latest.number == down.number and "failed its start-up probe" in latest.error
        assert latest.model_id is None and app[COMPONENTS_KEY].model.model_id == "fake-fixed-latency-0ms"
        assert (await http.get("/healthz")).status == 200
