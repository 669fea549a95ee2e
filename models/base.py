"""The model interface the rest of the product depends on.

The game decides *whether* an answer is tainted; a backend decides *how*. The
honest answer is always computed, so a tainted answer costs the same time as an
honest one and the split cannot be read from latency (SPEC §1.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class ModelError(Exception):
    """The model could not answer (bad image, timeout, ...); message is safe to show."""


class ModelOverloaded(ModelError):
    """The request queue is full; the caller should retry after `retry_after` seconds."""

    def __init__(self, message: str = "the model is busy, try again shortly", retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class BadImage(ModelError):
    """The image bytes are not a decodable, acceptable image."""


class BadQuestion(ModelError):
    """The question is empty (after removing control characters and special tokens)."""


@dataclass(frozen=True)
class ModelAnswer:
    honest: str
    served: str
    tainted: bool          # True only when served differs from honest after normalisation
    strategy: str | None   # "decode" | "prompt" | None when not tainted
    model_id: str
    latency_ms: float


@runtime_checkable
class VQAModel(Protocol):
    model_id: str

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        """Answer `question` about the encoded `image`; when `taint`, serve a plausible wrong answer."""
        ...

    async def aclose(self) -> None:
        ...
