"""Whether the model works, for `/healthz` and the model worker's `/health` (SPEC §5.2).

Why: a server whose every answer fails must not report itself healthy — a
load balancer would keep sending players to it. `MonitoredModel` wraps any
VQAModel: it probes the model with one real question at start-up, remembers
the outcome of every answer (the player's own bad input and a full queue are
not model failures), and while the model fails it probes again, at most every
`reprobe_s` seconds, when asked for its health — so a model server that comes
back is noticed without player traffic.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from models.base import BadImage, BadQuestion, ModelAnswer, ModelError, ModelOverloaded, VQAModel

log = logging.getLogger(__name__)
PROBE_QUESTION = "How many objects are there?"


@lru_cache(maxsize=1)
def probe_image() -> bytes:
    """A small scene of the game's own kind: any VQA model must answer something about it."""
    import random

    from models.scenes import generate_scene, render_png

    return render_png(generate_scene(random.Random(0), "simple"), 96)


@dataclass(frozen=True)
class ModelHealth:
    ready: bool            # False only when the last probe or answer failed
    checked: bool          # a probe or an answer has been seen
    last_error: str | None  # the latest model failure (kept after recovery, for the operator)
    failing_since: float | None  # monotonic time of the first failure of the current streak

    def as_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "checked": self.checked, "last_error": self.last_error}


class MonitoredModel:
    """A VQAModel that records whether the model it wraps answers (see module docstring)."""

    def __init__(self, model: VQAModel, *, reprobe_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.inner = model
        self.reprobe_s = reprobe_s
        self._clock = clock
        self._ready: bool | None = None
        self._last_error: str | None = None
        self._failing_since: float | None = None
        self._last_probe = float("-inf")
        self._probing: asyncio.Future | None = None

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def __getattr__(self, name: str) -> Any:  # the backend's own attributes (batcher, strategy, ...)
        return getattr(self.inner, name)

    @property
    def ready(self) -> bool:
        return self._ready is not False

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        try:
            ans = await self.inner.answer(image, question, taint)
        except (BadImage, BadQuestion, ModelOverloaded):
            raise  # the request's fault, or a busy model: not a failure of the model
        except ModelError as exc:
            self._failed(exc)
            raise
        self._succeeded()
        return ans

    async def probe(self) -> bool:
        """Ask the model one question now (concurrent callers share one probe); True when it answered."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe_once())
        return await asyncio.shield(self._probing)

    async def _probe_once(self) -> bool:
        self._last_probe = self._clock()
        try:
            await self.inner.answer(probe_image(), PROBE_QUESTION, False)
        except ModelError as exc:  # includes a BadImage: the probe image is valid, so the model is at fault
            self._failed(exc)
            return False
        self._succeeded()
        return True

    async def health(self, wait_s: float = 2.0) -> ModelHealth:
        """The model's state; while it fails, probe again first (at most every `reprobe_s` seconds),
        waiting at most `wait_s` for the probe (a health check must answer quickly; a slow probe
        goes on and its outcome shows in a later check)."""
        if self._ready is False and self._clock() - self._last_probe >= self.reprobe_s:
            try:
                await asyncio.wait_for(self.probe(), timeout=wait_s)  # probe() is shielded: it goes on
            except TimeoutError:
                pass
        return ModelHealth(ready=self.ready, checked=self._ready is not None, last_error=self._last_error,
                           failing_since=self._failing_since)

    def _failed(self, exc: ModelError) -> None:
        if self._ready is not False:
            log.warning("the model fails: %s", exc)
            self._failing_since = self._clock()
        self._ready = False
        self._last_error = f"{type(exc).__name__}: {exc}"[:500]

    def _succeeded(self) -> None:
        if self._ready is False:
            log.info("the model answers again")
        self._ready, self._failing_since = True, None

    async def aclose(self) -> None:
        if self._probing is not None and not self._probing.done():
            self._probing.cancel()
        await self.inner.aclose()
