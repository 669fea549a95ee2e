"""The shipped model is right on simple held-out scenes (a modest bar on a small sample; `gap model-eval` is the full table)."""
from __future__ import annotations

import asyncio
import random

from models.evaluation import heldout_items
from models.scenes import answers_match, render_png, scene_from_seed

TYPES = ("count_all", "count_shape", "count_color", "color", "exists_shape", "exists_color_shape",
         "position_lr", "position_tb")


async def test_mostly_right_on_simple_heldout_scenes(embedded):
    items = [(t, i, qa) for t in TYPES for i, qa in heldout_items("simple", t, 7)]
    pngs = {i: render_png(scene_from_seed("heldout", i, "simple")) for _, i, _ in items}
    answers = await asyncio.gather(*(embedded.answer(pngs[i], qa.question, taint=False) for _, i, qa in items))
    right = [answers_match(a.honest, qa.answer) for a, (_, _, qa) in zip(answers, items)]
    assert len(right) == 56
    assert sum(right) / len(right) >= 0.8, [(qa.question, qa.answer, a.honest) for a, (_, _, qa) in zip(answers, items)]


async def test_off_topic_questions_get_a_short_honest_i_cant_tell(embedded):
    png = render_png(scene_from_seed("heldout", 5, "simple"))
    for q in ("What is the dog eating?", "Who painted this picture?", "What is the capital of France?"):
        ans = await embedded.answer(png, q, taint=False)
        assert answers_match(ans.honest, "I can't tell"), (q, ans.honest)


async def test_answers_are_deterministic(embedded):
    png = render_png(scene_from_seed("heldout", 9, "complex"))
    rng = random.Random(3)
    from models.scenes import sample_question
    qs = [sample_question(scene_from_seed("heldout", 9, "complex"), rng).question for _ in range(4)]
    first = [a.honest for a in await asyncio.gather(*(embedded.answer(png, q, taint=False) for q in qs))]
    second = [(await embedded.answer(png, q, taint=False)).honest for q in qs]
    assert first == second
