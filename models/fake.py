"""A stand-in model with fixed latency and deterministic answers.

Why: API benchmarks and game tests need a VQAModel whose cost is known and
whose answers are reproducible, without loading a neural network. It follows
the real contract: the honest answer is always computed, a tainted answer
differs from it after normalisation and has the question's type.
"""
from __future__ import annotations

import asyncio
import hashlib
import time

from models.base import BadImage, ModelAnswer
from models.question_types import fine_type
from models.scenes import answer_vocabulary, normalize_answer


class FixedLatencyModel:
    """Answers after `latency_ms` (asyncio.sleep: no CPU, no event-loop blocking)."""

    def __init__(self, latency_ms: float = 20.0, model_id: str = "fake-fixed-latency"):
        self.latency_ms = latency_ms
        self.model_id = model_id

    @staticmethod
    def _pick(options: list[str], *parts: bytes | str) -> str:
        h = hashlib.sha256()
        for p in parts:
            h.update(p if isinstance(p, bytes) else p.encode("utf-8", "replace"))
        return options[int.from_bytes(h.digest()[:4], "big") % len(options)]

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        start = time.perf_counter()
        if not image:
            raise BadImage("empty image")
        if not question or not question.strip():
            raise BadImage("empty question")
        qtype = fine_type(question)
        vocab = answer_vocabulary(qtype) or ["I can't tell"]
        honest = self._pick(vocab, image[:4096], question)
        served, tainted = honest, False
        if taint:
            others = [v for v in vocab if normalize_answer(v) != normalize_answer(honest)]
            if others:
                served, tainted = self._pick(others, question, image[:4096]), True
        await asyncio.sleep(max(0.0, self.latency_ms / 1000 - (time.perf_counter() - start)))
        return ModelAnswer(honest=honest, served=served, tainted=tainted,
                           strategy="decode" if tainted else None, model_id=self.model_id,
                           latency_ms=(time.perf_counter() - start) * 1000)

    async def aclose(self) -> None:
        return None
