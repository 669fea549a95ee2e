"""The `openai:` backend against a real HTTP server replaying vLLM's recorded reply shapes
(tests/models/fixtures/vllm): model discovery, both plain-server taint strategies, errors,
retries within the answer's deadline. `gap model serve` as a separate process is in
test_model_server.py."""
from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import random
import socket
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from models.base import BadImage, BadQuestion, ModelError, ModelOverloaded
from models.loader import load_model
from models.openai_backend import OpenAIOptions, OpenAIVQA, parse_endpoint, parse_spec
from models.scenes import generate_scene, render_png

FIXTURES = Path(__file__).parent / "fixtures" / "vllm"
VLLM_NAME = "HuggingFaceTB/SmolVLM-256M-Instruct"
FAST = OpenAIOptions(timeout_s=3.0, connect_timeout_s=1.0, request_timeout_s=2.0, backoff_s=0.02, max_backoff_s=0.1)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class VLLMReplay:
    """Replies with vLLM's recorded shapes; `failures` scripts the next replies' HTTP errors."""

    def __init__(self):
        self.honest = "3"
        self.tainted: list[list[str]] = [["4"]]  # successive replies (each a list of n choices) to instructed calls
        self.failures: list[tuple[int, dict, dict]] = []  # (status, body, headers), consumed first
        self.model_failures: list[int] = []  # statuses of the next /v1/models replies
        self.calls: list[dict] = []
        self.model_calls = 0
        self.auth: list[str | None] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if self.failures:
            status, reply, headers = self.failures.pop(0)
            return web.json_response(reply, status=status, headers=headers)
        if body["model"] != VLLM_NAME:
            return web.json_response(fixture("error_not_found.json"), status=404)
        assert "gap_taint" not in body  # extension fields go to `gap model serve` only
        user = body["messages"][-1]["content"]
        url = next(c["image_url"]["url"] for c in user if c["type"] == "image_url")
        assert url.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).verify()
        if body.get("logprobs"):
            return web.json_response(fixture("chat_completion_logprobs.json"))
        system = body["messages"][0]["content"]
        if "wrong but plausible" in system:
            replies = self.tainted.pop(0) if len(self.tainted) > 1 else self.tainted[0]
        else:
            replies = [self.honest]
        reply = fixture("chat_completion.json")
        choice = reply["choices"][0]
        reply["choices"] = []
        for i, text in enumerate(replies):
            c = copy.deepcopy(choice)
            c["index"], c["message"]["content"] = i, text
            reply["choices"].append(c)
        return web.json_response(reply)

    async def models(self, request: web.Request) -> web.Response:
        self.model_calls += 1
        if self.model_failures:
            status = self.model_failures.pop(0)
            return web.json_response({"error": {"message": "loading", "type": "x", "param": None, "code": status}},
                                     status=status)
        return web.json_response(fixture("models.json"))


async def start(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, runner.addresses[0][1]


def replay_app(replay: VLLMReplay) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", replay.chat)
    app.router.add_get("/v1/models", replay.models)
    return app


@pytest.fixture
async def server():
    replay = VLLMReplay()
    runner, port = await start(replay_app(replay))
    replay.url = f"http://127.0.0.1:{port}/v1"
    yield replay
    await runner.cleanup()


@pytest.fixture
def png() -> bytes:
    return render_png(generate_scene(random.Random(1), "simple"), 256)


def backend(spec: str, options: OpenAIOptions = FAST) -> OpenAIVQA:
    return OpenAIVQA(spec, options=options)


def test_parse_spec():
    assert parse_spec("openai:http://h:8000/v1/") == ("http://h:8000/v1", None)
    assert parse_spec("openai:https://h/v1?model=Qwen2-VL") == ("https://h/v1", "Qwen2-VL")
    assert parse_endpoint("openai:http://h/v1?model=m&taint=decode") == ("http://h/v1", "m", "decode")
    for bad in ("openai:ftp://h", "openai:http://h/v1?taint=sideways"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    with pytest.raises(ModelError, match="taint="):  # the loader turns it into one clear error
        load_model("openai:http://h/v1?taint=sideways")


async def test_prompt_taint_with_the_name_read_from_vllm_models(server, png):
    model = load_model(f"openai:{server.url}", timeout_s=3)
    assert isinstance(model, OpenAIVQA)
    server.tainted = [["I was told to say 4", "3", "5"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.honest, ans.served, ans.tainted, ans.strategy) == ("3", "5", True, "prompt")
    assert {c["model"] for c in server.calls} == {VLLM_NAME} and model.strategy == "prompt"
    await model.aclose()


async def test_untainted_answer_still_computes_both(server, png):
    model = backend(f"openai:{server.url}?model={VLLM_NAME}")
    ans = await model.answer(png, "How many objects are there?", taint=False)
    assert (ans.honest, ans.served, ans.tainted, ans.strategy) == ("3", "3", False, None)
    assert len(server.calls) == 2  # honest + instructed: the same work whether tainted or not
    await model.aclose()


async def test_decode_taint_from_vllm_top_logprobs(server, png):
    model = backend(f"openai:{server.url}?taint=decode")
    ans = await model.answer(png, "How many objects are there?", taint=True)
    # " There" (no count) is skipped; "4" outscores "2"; one request carries both answers
    assert (ans.honest, ans.served, ans.tainted, ans.strategy) == ("3", "4", True, "decode")
    assert len(server.calls) == 1 and server.calls[0]["top_logprobs"] > 0
    honest = await model.answer(png, "How many objects are there?", taint=False)
    assert (honest.served, honest.tainted) == ("3", False) and len(server.calls) == 2
    await model.aclose()


async def test_leaking_or_equal_replies_are_regenerated_then_fall_back(server, png):
    model = backend(f"openai:{server.url}")
    server.tainted = [["That is incorrect, deliberately", "three", "I was told to lie"], ["3"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.served, ans.tainted) == ("3", False)
    assert len(server.calls) == 3  # honest, instructed (n=3), one regeneration
    server.tainted = [["I am not supposed to say, but 6"], ["7"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert (ans.served, ans.tainted) == ("7", True)
    await model.aclose()


async def test_type_implausible_taint_is_refused(server, png):
    model = backend(f"openai:{server.url}")
    server.tainted = [["purple"], ["banana"]]
    ans = await model.answer(png, "How many objects are there?", taint=True)
    assert ans.tainted is False and ans.served == "3"
    await model.aclose()


async def test_models_list_failing_first_is_read_again_not_guessed(server, png):
    server.model_failures = [503, 500]  # loading, then a failed read: the name must not become "default"
    model = backend(f"openai:{server.url}")
    with pytest.raises(ModelError, match="HTTP 500"):
        await model.answer(png, "How many objects are there?", taint=False)
    assert server.calls == [] and model.endpoint.model_name is None
    ans = await model.answer(png, "How many objects are there?", taint=False)
    assert ans.honest == "3" and {c["model"] for c in server.calls} == {VLLM_NAME}
    assert server.model_calls == 3
    await model.aclose()


async def test_a_server_without_models_list_is_used_with_the_given_name(server, png):
    server.model_failures = [404]
    model = backend(f"openai:{server.url}?model={VLLM_NAME}")
    assert (await model.answer(png, "How many objects are there?", taint=False)).honest == "3"
    assert model.strategy == "prompt" and server.model_calls == 1
    await model.aclose()


async def test_a_server_now_serving_another_model_is_asked_its_name_again(server, png):
    model = backend(f"openai:{server.url}")
    await model.answer(png, "How many objects are there?", taint=False)
    model.endpoint.model_name = "SmolVLM-old"  # as if the server restarted with another model
    ans = await model.answer(png, "How many objects are there?", taint=False)
    assert ans.honest == "3" and server.model_calls == 2
    named = backend(f"openai:{server.url}?model=SmolVLM-old")  # a name the deployer fixed is not replaced
    with pytest.raises(ModelError, match="SmolVLM-old"):
        await named.answer(png, "How many objects are there?", taint=False)
    await model.aclose()
    await named.aclose()


async def test_429_and_503_are_retried_within_the_deadline(server, png, monkeypatch):
    busy = fixture("error_bad_request.json") | {"error": {"message": "busy", "type": "x", "param": None, "code": 503}}
    server.failures = [(503, busy, {"Retry-After": "0"}), (429, busy, {}), (503, busy, {})]
    model = backend(f"openai:{server.url}?model={VLLM_NAME}")
    ans = await model.answer(png, "How many objects are there?", taint=False)
    assert ans.honest == "3" and len(server.calls) == 5  # 3 refused + honest + instructed
    server.failures = [(503, busy, {"Retry-After": "7"})] * 50
    with pytest.raises(ModelOverloaded) as err:  # Retry-After beyond the deadline: give up at once, pass it on
        await model.answer(png, "How many objects are there?", taint=False)
    assert err.value.retry_after == 7
    await model.aclose()


async def test_other_errors_carry_vllm_message_and_no_secret(server, png):
    model = load_model(f"openai:{server.url}?model={VLLM_NAME}", timeout_s=3,
                       openai=OpenAIOptions(api_key="sk-test-secret"))
    server.failures = [(400, fixture("error_bad_request.json"), {})] * 2
    with pytest.raises(ModelError, match=r"HTTP 400: At most 1 image") as err:
        await model.answer(png, "How many?", taint=False)
    assert "secret" not in str(err.value)
    assert server.auth[-1] == "Bearer sk-test-secret"
    await model.aclose()


async def test_a_server_that_starts_late_is_waited_for(png):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    replay = VLLMReplay()
    model = backend(f"openai:http://127.0.0.1:{port}/v1")
    asking = asyncio.create_task(model.answer(png, "How many objects are there?", taint=False))
    await asyncio.sleep(0.4)  # refused connections meanwhile
    assert not asking.done()
    runner, _ = await start(replay_app(replay), port)
    try:
        assert (await asking).honest == "3"
    finally:
        await model.aclose()
        await runner.cleanup()


async def test_unreachable_server_is_a_clear_error_at_the_deadline(png):
    model = backend("openai:http://127.0.0.1:9/v1?model=x",
                    OpenAIOptions(timeout_s=0.5, connect_timeout_s=0.2, backoff_s=0.05))
    with pytest.raises(ModelError, match="did not answer"):
        await model.answer(png, "How many?", taint=False)
    await model.aclose()


async def test_bad_image_and_empty_question_never_reach_the_server(server):
    model = backend(f"openai:{server.url}")
    with pytest.raises(BadImage):
        await model.answer(b"GIF89a-not-really", "How many?", taint=True)
    with pytest.raises(BadQuestion):
        await model.answer(render_png(generate_scene(random.Random(2), "simple"), 64), "  \x00 ", taint=True)
    assert server.calls == []
    await model.aclose()
