"""SwappableModel (model rounds, SPEC §3.2): a swap drops no request and closes the old model once idle."""
from __future__ import annotations

import asyncio

from models.base import ModelAnswer
from models.swap import SwappableModel


class SlowModel:
    """Answers after `release` is set; records whether it was closed while still answering."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.release = asyncio.Event()
        self.in_flight = 0
        self.closed_while_busy = False
        self.closed = False

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        self.in_flight += 1
        try:
            await self.release.wait()
            return ModelAnswer(question, question, False, None, self.model_id, 1.0)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed_while_busy |= self.in_flight > 0
        self.closed = True


async def test_swap_routes_new_questions_and_lets_old_ones_finish():
    old, new = SlowModel("old"), SlowModel("new")
    model = SwappableModel(old, "old-spec")
    before = [asyncio.create_task(model.answer(b"", f"q{i}", False)) for i in range(3)]
    await asyncio.sleep(0)
    assert old.in_flight == 3
    assert await model.swap(new, "new-spec") is old
    assert model.model_id == "new" and model.spec == "new-spec"
    after = asyncio.create_task(model.answer(b"", "late", False))
    await asyncio.sleep(0)
    assert new.in_flight == 1 and old.in_flight == 3 and not old.closed  # busy: not closed yet
    old.release.set()
    assert [a.model_id for a in await asyncio.gather(*before)] == ["old"] * 3
    new.release.set()
    assert (await after).model_id == "new"
    await asyncio.sleep(0.01)
    assert old.closed and not old.closed_while_busy and not new.closed
    await model.aclose()
    assert new.closed


async def test_an_idle_model_is_closed_at_once_and_aclose_closes_everything():
    old, new = SlowModel("old"), SlowModel("new")
    model = SwappableModel(old)
    await model.swap(new)
    await asyncio.sleep(0.01)
    assert old.closed
    await model.aclose()
    assert new.closed


async def test_attributes_of_the_current_backend_show_through():
    inner = SlowModel("m")
    inner.queue_depth = 7  # type: ignore[attr-defined]
    assert SwappableModel(inner).queue_depth == 7
