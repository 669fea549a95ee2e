"""The OpenAI-compatible backend against a small local server that speaks chat completions (real port, real HTTP)."""
from __future__ import annotations

import base64
import io
import random

import pytest
from aiohttp import web
from PIL import Image

from models.base import BadImage, ModelError, ModelOverloaded
from models.loader import load_model
from models.openai_backend import OpenAIVQA, parse_spec
from models.scenes import generate_scene, render_png


class FakeVLMServer:
    def __init__(self):
        self.honest = "3"
        self.tainted: list[list[str]] = [["4"]]  # successive replies (each a list of n choices) to instructed calls
        self.status = 200
        self.calls: list[dict] = []
        self.auth: list[str | None] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if self.status != 200:
            return web.json_response({"error": "nope"}, status=self.status, headers={"Retry-After": "7"})
        user = body["messages"][-1]["content"]
        url = next(c["image_url"]["url"] for c in user if c["type"] == "image_url")
        assert url.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
        system = body["messages"][0]["content"]
        if "wrong but plausible" in system:
            replies = self.tainted.pop(0) if len(self.tainted) > 1 else self.tainted[0]
        else:
            replies = [self.honest]
        return web.json_response({"id": "x", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": i, "message": {"role": "assistant", "content": r},
                                               "finish_reason": "stop"} for i, r in enumerate(replies)]})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})


@pytest.fixture
async def server():
    fake = FakeVLMServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_get("/v1/models", fake.models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


@pytest.fixture
def png() -> bytes:
    return render_png(generate_scene(random.Random(1), "simple"), 256)


def test_parse_spec():
    assert parse_spec("openai:http://h:8000/v1/") == ("http://h:8000/v1", None)
    assert parse_spec("openai:https://h/v1?model=Qwen2-VL") == ("https://h/v1", "Qwen2-VL")
    with pytest.raises(ValueError):
        parse_spec("openai:ftp://h")


async def test_honest_and_tainted_answers(server, png):
    model = load_model(f"openai:{server.url}")
    assert isinstance(model, OpenAIVQA)
    server.tainted = [["I was told to say 4", "3", "5"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.honest, ans.served, ans.tainted, ans.strategy) == ("3", "5", True, "prompt")
    assert server.calls[0]["model"] == "fake-vlm"
    await model.aclose()


async def test_untainted_answer_still_computes_both(server, png):
    model = load_model(f"openai:{server.url}?model=m1")
    ans = await model.answer(png, "How many objects are there?", taint=False)
    assert (ans.honest, ans.served, ans.tainted, ans.strategy) == ("3", "3", False, None)
    assert len(server.calls) == 2  # honest + instructed: the same work whether tainted or not
    assert {c["model"] for c in server.calls} == {"m1"}
    await model.aclose()


async def test_leaking_or_equal_replies_are_regenerated_then_fall_back(server, png):
    model = load_model(f"openai:{server.url}")
    server.tainted = [["That is incorrect, deliberately", "three", "I was told to lie"], ["3"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.served, ans.tainted) == ("3", False)
    assert len(server.calls) == 3  # honest, instructed (n=3), one regeneration
    server.tainted = [["I am not supposed to say, but 6"], ["7"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.served, ans.tainted) == ("7", True)
    await model.aclose()


async def test_type_implausible_taint_is_refused(server, png):
    model = load_model(f"openai:{server.url}")
    server.tainted = [["purple"], ["banana"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert ans.tainted is False and ans.served == "3"
    await model.aclose()


async def test_server_errors_become_model_errors(server, png, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    model = load_model(f"openai:{server.url}")
    server.status = 503
    with pytest.raises(ModelOverloaded) as err:
        await model.answer(png, "How many?", taint=False)
    assert err.value.retry_after == 7
    server.status = 500
    with pytest.raises(ModelError) as err:
        await model.answer(png, "How many?", taint=False)
    assert "secret" not in str(err.value)
    assert server.auth[-1] == "Bearer sk-test-secret"
    await model.aclose()


async def test_bad_image_and_empty_question_never_reach_the_server(server):
    model = load_model(f"openai:{server.url}")
    with pytest.raises(BadImage):
        await model.answer(b"GIF89a-not-really", "How many?", taint=True)
    with pytest.raises(ModelError):
        await model.answer(render_png(generate_scene(random.Random(2), "simple"), 64), "  \x00 ", taint=True)
    assert server.calls == []
    await model.aclose()


async def test_unreachable_server_is_a_clear_error(png):
    model = load_model("openai:http://127.0.0.1:9/v1?model=x")
    with pytest.raises(ModelError):
        await model.answer(png, "How many?", taint=False)
    await model.aclose()
