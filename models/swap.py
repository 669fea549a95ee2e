"""A model that can be replaced while it serves (model rounds, SPEC §3.2).

Why a wrapper: the game holds one model for its whole life; promoting a fine-tuned
adapter must not restart the server nor drop a question in flight. New questions go
to the new model the moment it is swapped in; questions already inside the old one
finish there, and the old one is closed once the last of them has returned.
"""
from __future__ import annotations

import asyncio
import inspect
import logging

from models.base import ModelAnswer, VQAModel

log = logging.getLogger("gap.model")


class SwappableModel:
    """Delegates to the current model; `swap(new)` retires the old one without dropping requests."""

    def __init__(self, model: VQAModel, spec: str | None = None) -> None:
        self._current = model
        self.spec = spec
        self._in_flight: dict[int, int] = {}
        self._retired: dict[int, VQAModel] = {}
        self._closing: set[asyncio.Task] = set()

    def __getattr__(self, name: str):
        """Anything else a backend offers (queue depth, batch sizes…) is the current model's."""
        return getattr(self._current, name)

    @property
    def current(self) -> VQAModel:
        return self._current

    @property
    def model_id(self) -> str:
        return self._current.model_id

    async def ready(self) -> bool:
        """Whatever the current model says (healthz); a model without `ready` is ready once built."""
        ready = getattr(self._current, "ready", True)
        if callable(ready):
            ready = ready()
        if inspect.isawaitable(ready):
            ready = await ready
        return bool(ready)

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        model = self._current
        key = id(model)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            return await model.answer(image, question, taint)
        finally:
            self._in_flight[key] -= 1
            if self._in_flight[key] == 0:
                del self._in_flight[key]
                if key in self._retired:
                    self._close_later(self._retired.pop(key))

    async def swap(self, model: VQAModel, spec: str | None = None) -> VQAModel:
        """Serve `model` from now on; the old one closes when its last answer returns. Returns the old one."""
        old, self._current, self.spec = self._current, model, spec
        if old is model:
            return old
        log.info("model swapped: %s → %s", old.model_id, model.model_id)
        if self._in_flight.get(id(old)):
            self._retired[id(old)] = old
        else:
            self._close_later(old)
        return old

    def _close_later(self, model: VQAModel) -> None:
        task = asyncio.get_running_loop().create_task(model.aclose(), name="gap-model-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the current model, any retired one and wait for closes in progress."""
        models = [self._current, *self._retired.values()]
        self._retired.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
        for model in models:
            await model.aclose()
