"""`gap model serve` (the model worker, SPEC §4.2) as a separate process with the shipped model,
reached by the `openai:` backend and by a plain OpenAI client over real HTTP; its health and
errors in vLLM's envelope. The game played through it is in tests/webapp/test_bench_api.py."""
from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from models.base import ModelError
from models.fake import FixedLatencyModel
from models.health import MonitoredModel
from models.loader import load_model
from models.openai_backend import OpenAIOptions, OpenAIVQA
from models.openai_server import create_model_server
from models.scenes import render_png, scene_from_seed
from settings import EMBEDDED_MODEL_DIR

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = ["How many objects are there?", "What color is the circle?", "Is there a square?",
             "How many triangles are there?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def worker():
    """`gap model serve` on the shipped model (decode taint), in its own process."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "GAP_TAINT_STRATEGY": "decode"}
    proc = subprocess.Popen([sys.executable, "-m", "gap.cli", "model", "serve", "--model", str(EMBEDDED_MODEL_DIR),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    sizes = [384, 200, 96, 640]
    return [render_png(scene_from_seed("heldout", i, "simple"), sizes[i % 4]) for i in range(8)]


async def test_worker_answers_like_the_local_backend_both_ways(worker, images, embedded):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{worker}/health") as resp:
            assert resp.status == 200 and (await resp.json())["ready"] is True
        async with http.get(f"{worker}/v1/models") as resp:
            card = (await resp.json())["data"][0]
    assert (card["id"], card["owned_by"], card["object"]) == ("model", "gap", "model")

    remote = load_model(f"openai:{worker}/v1", timeout_s=60)
    asks = [(images[i % 8], QUESTIONS[i % 4], i % 2 == 0) for i in range(16)]
    try:
        got = await asyncio.gather(*(remote.answer(img, q, t) for img, q, t in asks))  # one micro-batch there
        assert remote.strategy == "server"
    finally:
        await remote.aclose()
    want = await asyncio.gather(*(embedded.answer(img, q, t) for img, q, t in asks))
    assert [(a.honest, a.served, a.tainted, a.strategy) for a in got] == \
        [(a.honest, a.served, a.tainted, a.strategy) for a in want]
    assert sum(a.tainted for a in got) >= 6 and all(a.served != a.honest for a in got if a.tainted)
    assert not any(a.tainted for a, (_, _, t) in zip(got, asks) if not t)


async def test_plain_openai_clients_and_bad_requests(worker, images):
    data_url = "data:image/png;base64," + base64.b64encode(images[0]).decode()

    def body(parts, **extra):
        return {"model": "model", "messages": [{"role": "user", "content": parts}], **extra}

    good = [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": "How many objects are there?"}]
    async with aiohttp.ClientSession() as http:
        async def post(payload, raw: bytes | None = None):
            async with http.post(f"{worker}/v1/chat/completions", json=None if raw else payload, data=raw) as resp:
                return resp.status, await resp.json()

        status, reply = await post(body(good, n=2))  # no gap_taint: an honest answer, like any VLM server
        assert status == 200 and reply["object"] == "chat.completion" and len(reply["choices"]) == 2
        assert reply["choices"][0]["message"]["content"] == reply["gap"]["honest"] and not reply["gap"]["tainted"]
        tainted = (await post(body(good, gap_taint=True)))[1]
        assert tainted["gap"]["tainted"] and tainted["choices"][0]["message"]["content"] == tainted["gap"]["served"]

        remote_url = [{"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}, good[1]]
        cases = [
            (body(remote_url), 400, "data: URLs"),
            (body(good * 2), 400, "exactly one image"),
            (body([good[0], {"type": "text", "text": " \x00 "}]), 400, "empty"),
            (body([{"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}, good[1]]),
             400, "image"),
            (body(good, gap_taint="yes"), 400, "gap_taint"),
            (body(good) | {"model": "other"}, 404, "does not exist"),
            ({"messages": "hi"}, 400, "messages"),
        ]
        for payload, want_status, words in cases:
            status, reply = await post(payload)
            assert status == want_status and reply["error"]["code"] == want_status, payload
            assert words in reply["error"]["message"] and reply["error"]["type"].endswith("Error")
        status, reply = await post(None, raw=b"{not json")
        assert status == 400 and reply["error"]["type"] == "BadRequestError"


async def test_prompt_strategy_worker_and_its_health(images):
    """The other strategy, and /health following the model, on an in-process worker (a real port)."""
    local = MonitoredModel(load_model(str(EMBEDDED_MODEL_DIR), strategy="prompt", timeout_s=60))
    runner = web.AppRunner(create_model_server(local, "tiny"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    remote = OpenAIVQA(f"openai:{url}/v1", options=OpenAIOptions(timeout_s=60))
    try:
        assert await local.probe()
        ans = await remote.answer(images[1], "How many objects are there?", taint=True)
        direct = await local.inner.answer(images[1], "How many objects are there?", taint=True)
        assert (ans.honest, ans.served, ans.strategy) == (direct.honest, direct.served, direct.strategy)
        assert ans.tainted and ans.strategy in ("prompt", "decode")
    finally:
        await remote.aclose()
        await runner.cleanup()
        await local.aclose()


class Switchable(FixedLatencyModel):
    def __init__(self):
        super().__init__(latency_ms=0)
        self.broken = True

    async def answer(self, image, question, taint):
        if self.broken:
            raise ModelError("CUDA out of memory")
        return await super().answer(image, question, taint)


async def test_worker_health_follows_the_model_and_failures_are_500():
    inner = Switchable()
    model = MonitoredModel(inner, reprobe_s=0)
    assert not await model.probe()
    runner = web.AppRunner(create_model_server(model, "m"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    remote = OpenAIVQA(f"openai:{url}/v1", options=OpenAIOptions(timeout_s=5))
    png = render_png(scene_from_seed("heldout", 1, "simple"), 96)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/health") as resp:
                assert resp.status == 503 and "CUDA out of memory" in (await resp.json())["last_error"]
            with pytest.raises(ModelError, match="HTTP 500: CUDA out of memory"):
                await remote.answer(png, "How many objects are there?", taint=False)
            inner.broken = False
            async with http.get(f"{url}/health") as resp:  # probed again: the model answers
                assert resp.status == 200 and (await resp.json())["ready"] is True
        assert (await remote.answer(png, "How many objects are there?", taint=False)).honest
    finally:
        await remote.aclose()
        await runner.cleanup()
