"""FixedLatencyModel follows the VQAModel contract; measure_accuracy scores a model against a scene's truth."""
from __future__ import annotations

import random

import pytest

from models.base import BadImage, ModelAnswer, VQAModel
from models.fake import FixedLatencyModel
from models.scenes import answer_vocabulary, measure_accuracy, normalize_answer, render_png, scene_from_seed


async def test_fixed_latency_model_contract():
    model = FixedLatencyModel(latency_ms=5)
    assert isinstance(model, VQAModel)
    png = render_png(scene_from_seed("pool", 1, "simple"), 64)
    a = await model.answer(png, "How many circles are there?", taint=False)
    b = await model.answer(png, "How many circles are there?", taint=True)
    assert isinstance(a, ModelAnswer) and a.served == a.honest and not a.tainted
    assert b.honest == a.honest and b.tainted and b.served != b.honest
    assert b.served in answer_vocabulary("count")
    assert a.latency_ms >= 5 and b.latency_ms >= 5
    with pytest.raises(BadImage):
        await model.answer(b"", "How many?", taint=False)
    await model.aclose()


class OracleModel:
    """Answers from the scene graph: right on everything measure_accuracy asks."""

    model_id = "oracle"

    def __init__(self, truth: dict[str, str]):
        self.truth = truth

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        ans = self.truth.get(question, "I can't tell")
        return ModelAnswer(ans, ans, False, None, self.model_id, 1.0)

    async def aclose(self) -> None:
        return None


async def test_measure_accuracy_scores_right_and_wrong_models():
    scene = scene_from_seed("pool", 7, "simple")
    png = render_png(scene, 64)
    from models.scenes import sample_question

    # record the questions measure_accuracy will ask (same rng seed), answer them correctly
    families = ["count", "color", "shape", "exists", "position"]
    rng = random.Random(4)
    truth = {}
    for i in range(8):
        try:
            qa = sample_question(scene, rng, families[i % 5])
        except Exception:
            qa = sample_question(scene, rng, "count")
        truth[qa.question] = qa.answer
    assert await measure_accuracy(OracleModel(truth), png, scene, random.Random(4), n=8) == 1.0
    wrong = {q: ("no" if normalize_answer(a) == "yes" else "7") for q, a in truth.items()}
    assert await measure_accuracy(OracleModel(wrong), png, scene, random.Random(4), n=8) < 0.5
