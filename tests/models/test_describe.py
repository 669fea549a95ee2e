"""Honest model descriptions (SPEC §3.5): the embedded VQA model's description is
composed from its own honest answers; an OpenAI-compatible endpoint describes and
rewrites in its own words (a local chat-completions server on a real port)."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from models.base import ModelError
from models.describe import (
    COLOR_QUESTION,
    COUNT_QUESTION,
    DESCRIBE_INSTRUCTION,
    REWRITE_INSTRUCTION,
    SHAPE_QUESTION,
    can_rewrite,
    describe_image,
)
from models.loader import load_model
from models.scenes import COLORS, SHAPES, normalize_answer, render_png, scene_from_seed
from settings import EMBEDDED_MODEL_DIR


async def test_embedded_model_describes_with_its_honest_answers():
    model = load_model(str(EMBEDDED_MODEL_DIR))
    try:
        counts_right = 0
        for i in range(6):
            scene = scene_from_seed("heldout", i, "simple")
            png = render_png(scene, 384)
            questions = ([COUNT_QUESTION] + [COLOR_QUESTION.format(color=c) for c in COLORS]
                         + [SHAPE_QUESTION.format(shape=s) for s in SHAPES])
            got, *answers = await asyncio.gather(describe_image(model, png),
                                                 *(model.answer(png, q, False) for q in questions))
            said = [normalize_answer(a.honest) for a in answers]
            count = answers[0].honest
            colors = [c for c, a in zip(COLORS, said[1:1 + len(COLORS)]) if a == "yes"]
            shapes = [s for s, a in zip(SHAPES, said[1 + len(COLORS):]) if a == "yes"]
            assert got.text == (f"There are {count} objects. Colours: {', '.join(colors) or 'none I can tell'}; "
                                f"shapes: {', '.join(shapes) or 'none I can tell'}.")
            assert got.model_id == model.model_id and got.compute_seconds > 0
            counts_right += normalize_answer(count) == normalize_answer(str(len(scene.objects)))
        assert counts_right >= 4, "the embedded model should count simple scenes well"
        assert not can_rewrite(model)
    finally:
        await model.aclose()


class DescribingServer:
    """Chat completions: describes any image, rewrites any text; records the requests."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.reply = "A big red star at the top left and two small blue circles."

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}}]})


@pytest.fixture
async def endpoint():
    fake = DescribingServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.spec = f"openai:http://127.0.0.1:{runner.addresses[0][1]}/v1?model=vlm"
    yield fake
    await runner.cleanup()


async def test_openai_model_describes_and_rewrites_in_its_own_words(endpoint):
    model = load_model(endpoint.spec)
    try:
        png = render_png(scene_from_seed("pool", 3, "complex"), 256)
        got = await describe_image(model, png)
        assert got.text == endpoint.reply and got.compute_seconds > 0
        sent = endpoint.calls[-1]
        assert sent["messages"][0]["content"] == DESCRIBE_INSTRUCTION
        assert [c["type"] for c in sent["messages"][1]["content"]] == ["image_url", "text"]
        assert can_rewrite(model)
        endpoint.reply = "  Two blue\u0000 circles\nand a red star.  "
        rewritten = await model.rewrite("2 blu circels + red star")
        assert rewritten.text == "Two blue circles and a red star."   # one clean line
        sent = endpoint.calls[-1]
        assert sent["messages"][0]["content"] == REWRITE_INSTRUCTION
        assert sent["messages"][1]["content"] == [{"type": "text", "text": "2 blu circels + red star"}]
        endpoint.reply = "   "
        with pytest.raises(ModelError):
            await model.rewrite("anything")
    finally:
        await model.aclose()


