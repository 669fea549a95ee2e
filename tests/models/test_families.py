"""Popular VLM families as GAP_MODEL=DIR (SPEC §4.2), each a tiny random-weight model built here
from transformers' own classes (lab.tiny_families): they load through the product's loader,
answer a batch of mixed images exactly as one by one, taint by decoding and by instruction, and
serve a whole game session over HTTP."""
from __future__ import annotations

import asyncio
import io
import random
import shutil

import aiohttp
import pytest
from PIL import Image

from lab.local_server import running_server
from lab.tiny_families import FAMILIES
from models.loader import load_model
from models.scenes import CANT_TELL, normalize_answer
from models.taint import plausible_answers, reveals_instruction
from settings import load_settings
from tests.webapp.conftest import auth_header

TOKEN = "123456:FAMILY-token-for-tests"
QUESTIONS = ["How many circles are there?", "What colour is the square?", "Is there a red star?",
             "Is the circle on the left or the right?"]


def _encoded(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def mixed_images() -> list[bytes]:
    """16 images of every awkward kind: tiny, huge, slivers, non-square, grayscale, RGBA, palette, JPEG."""
    rng = random.Random(7)

    def noise(w: int, h: int) -> Image.Image:
        return Image.frombytes("RGB", (w, h), bytes(rng.randrange(256) for _ in range(w * h * 3)))

    big = noise(64, 48).resize((1600, 1200))
    return [
        _encoded(noise(1, 1)), _encoded(noise(5, 3)), _encoded(big, "JPEG"), _encoded(noise(300, 40)),
        _encoded(noise(3, 700)), _encoded(noise(1024, 2)), _encoded(noise(64, 64).convert("L")),
        _encoded(noise(40, 90).convert("RGBA")), _encoded(noise(77, 33).convert("P")),
        _encoded(noise(20, 20).convert("LA")), _encoded(noise(512, 384), "JPEG"), _encoded(noise(31, 17)),
        _encoded(noise(8, 8).convert("L"), "JPEG"), _encoded(noise(200, 201)), _encoded(noise(16, 64).convert("RGBA")),
        _encoded(noise(333, 100).convert("CMYK"), "JPEG"),
    ]


def _assert_decode_taint(question: str, ans) -> None:
    """A tainted answer differs from the honest one and has its type (or the question's)."""
    assert ans.tainted and ans.strategy == "decode", ans
    assert normalize_answer(ans.served) != normalize_answer(ans.honest)
    assert normalize_answer(ans.served) in {normalize_answer(v) for v in plausible_answers(question, ans.honest)}


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_a_batch_of_mixed_images_answers_as_one_by_one(family, family_dir):
    model = load_model(str(family_dir(family)), max_batch=16, max_wait_ms=50, timeout_s=120)
    try:
        images = mixed_images()
        questions = [QUESTIONS[i % 4] for i in range(16)]
        taint = [i % 2 == 1 for i in range(16)]
        batched = await asyncio.gather(*(model.answer(im, q, t) for im, q, t in zip(images, questions, taint)))
        assert model.batcher.stats.sizes[16] == 1  # one batch of all sixteen
        model.batcher.max_wait = 0  # one by one: nothing to wait for
        single = [await model.answer(im, q, t) for im, q, t in zip(images, questions, taint)]
        assert model.batcher.stats.sizes[1] == 16
        assert [(a.honest, a.served) for a in batched] == [(a.honest, a.served) for a in single]
        for a, q, t in zip(batched, questions, taint):
            assert a.served and a.model_id == model.model_id
            if not t:
                assert a.served == a.honest and not a.tainted
            elif normalize_answer(a.honest) != normalize_answer(CANT_TELL):
                _assert_decode_taint(q, a)
        assert sum(a.tainted for a in batched) >= 6
    finally:
        await model.aclose()


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_prompt_taint_runs_through_the_family_prompt(family, family_dir):
    """The instruction goes through the family's own prompt; a model that cannot follow it (random
    weights) gets the decode taint instead, never a leak or an honest answer marked tainted."""
    model = load_model(str(family_dir(family)), strategy="prompt", max_batch=4, max_wait_ms=20, timeout_s=120)
    try:
        answers = await asyncio.gather(*(model.answer(im, q, True) for im, q in zip(mixed_images()[:4], QUESTIONS)))
        for q, a in zip(QUESTIONS, answers):
            assert not reveals_instruction(a.served)
            if a.tainted:
                assert a.strategy in ("prompt", "decode")
                assert normalize_answer(a.served) != normalize_answer(a.honest)
        assert any(a.tainted for a in answers)
    finally:
        await model.aclose()


@pytest.fixture(scope="module")
def game_db(tmp_path_factory):
    """One migrated database with a generated pool, copied for each family's game."""
    from tests.data.game_pool import make_game

    path = tmp_path_factory.mktemp("family-game")
    asyncio.run(make_game(path))
    return path / "sim.sqlite3"


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_a_game_session_over_http(family, family_dir, game_db, tmp_path):
    db_file = tmp_path / "game.sqlite3"
    shutil.copy(game_db, db_file)
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{db_file}", bot_token=TOKEN, bot_enabled=False,
                             model=str(family_dir(family)), taint_prob=1.0)
    headers = auth_header(4242, token=TOKEN)
    async with running_server(settings) as url, aiohttp.ClientSession(headers=headers) as http:
        state = await (await http.post(f"{url}/api/sessions")).json()
        for n in range(10):
            sid = state["session_id"]
            r = await http.post(f"{url}/api/sessions/{sid}/questions",
                                json={"request_id": f"q{n}", "text": QUESTIONS[n % 4]})
            assert r.status == 200, await r.text()
            answer = await r.json()
            assert answer["answer"]
            r = await http.post(f"{url}/api/answers/{answer['answer_id']}/verdict",
                                json={"request_id": f"v{n}", "verdict": "wrong", "correction": "something else"})
            assert r.status == 200, await r.text()
            state = await r.json()
        assert state["status"] == "finished"
        summary = await (await http.get(f"{url}/api/sessions/{sid}/summary")).json()
    assert len(summary["images"]) == 10 and sum(i["tainted"] for i in summary["images"]) == 5
    answers = [a for i in summary["images"] for a in i["answers"]]
    assert any(a["tainted"] for a in answers)  # taint_prob 1: the tainted images' answers, where one exists
    assert not any(a["tainted"] for i in summary["images"] if not i["tainted"] for a in i["answers"])
