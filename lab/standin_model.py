"""A stand-in VQA model with a *set* accuracy per scene complexity (and, optionally, per
question family), for checking the evaluation maths and the players' learning at scale
without depending on how well the embedded model happens to be trained
(`gap experiment --standin [--standin-weak color=0.2]`).

It answers only questions registered by the simulator in the same process (the
ground truth of a template question on an image); the honest answer is right with
the configured probability (deterministic per image and question) and otherwise a
wrong answer of the same type; a tainted answer is another answer of that type.
The game, the API, the players and the evaluation are the real ones; only the
model's behaviour is dialled in.
"""
from __future__ import annotations

import hashlib
import random

from models.base import ModelAnswer
from models.question_types import FAMILY
from models.scenes import CANT_TELL, answer_vocabulary, normalize_answer


class StandInModel:
    model_id = "standin"

    def __init__(self, accuracy: dict[str, float], seed: int = 0, family_accuracy: dict[str, float] | None = None):
        """`accuracy` per complexity; `family_accuracy` overrides it for the question families it names
        (a model weak at, say, colours on every scene: what learning players should find)."""
        self.accuracy = accuracy
        self.family_accuracy = family_accuracy or {}
        self.seed = seed
        self._truth: dict[tuple[str, str], tuple[str, str, str]] = {}

    def register(self, image_sha: str, question: str, truth: str, qtype: str, complexity: str) -> None:
        self._truth[(image_sha, question.strip())] = (truth, qtype, complexity)

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        sha = hashlib.sha256(image).hexdigest()
        truth, qtype, complexity = self._truth.get((sha, question.strip()), (CANT_TELL, "other", "complex"))
        vocab = answer_vocabulary(qtype) or [CANT_TELL]
        rng = random.Random(f"{self.seed}:{sha}:{question}")
        wrong = [v for v in vocab if normalize_answer(v) != normalize_answer(truth)]
        p = self.family_accuracy.get(FAMILY.get(qtype, "other"), self.accuracy.get(complexity, 0.5))
        honest = truth if (rng.random() < p or not wrong) else rng.choice(wrong)
        served, tainted = honest, False
        if taint:
            others = [v for v in vocab if normalize_answer(v) != normalize_answer(honest)]
            if others:
                served, tainted = rng.choice(others), True
        return ModelAnswer(honest=honest, served=served, tainted=tainted, strategy="decode" if tainted else None,
                           model_id=self.model_id, latency_ms=1.0)

    async def aclose(self) -> None:
        return None
