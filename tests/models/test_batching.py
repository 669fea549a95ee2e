"""Micro-batching: batches form, a full queue refuses, timeouts and cancellations drop requests."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from models.base import ModelError, ModelOverloaded
from models.batching import MicroBatcher, ModelTimeout


class Recorder:
    """A batch function that records its batches; `gate` holds the worker to build a backlog."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    def __call__(self, items):
        self.gate.wait(10)
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if self.delay:
            time.sleep(self.delay)
        return [ValueError("bad item") if i < 0 else i * 10 for i in items]


async def test_concurrent_requests_share_one_batch_off_the_loop():
    rec = Recorder()
    mb = MicroBatcher(rec, max_batch=16, max_wait_ms=50, max_queue=100)
    results = await asyncio.gather(*(mb.submit(i) for i in range(16)))
    assert results == [i * 10 for i in range(16)]
    assert len(rec.batches) == 1 and len(rec.batches[0]) == 16
    assert rec.threads and threading.main_thread().name not in rec.threads
    await mb.aclose()


async def test_batches_are_bounded():
    rec = Recorder()
    mb = MicroBatcher(rec, max_batch=4, max_wait_ms=20, max_queue=100)
    await asyncio.gather(*(mb.submit(i) for i in range(10)))
    assert max(len(b) for b in rec.batches) <= 4
    assert sum(len(b) for b in rec.batches) == 10
    await mb.aclose()


async def test_item_error_reaches_only_its_caller():
    mb = MicroBatcher(Recorder(), max_batch=8, max_wait_ms=20)
    ok, bad = await asyncio.gather(mb.submit(2), mb.submit(-1), return_exceptions=True)
    assert ok == 20 and isinstance(bad, ValueError)
    await mb.aclose()


async def test_full_queue_raises_overloaded_with_retry_hint():
    rec = Recorder()
    rec.gate.clear()  # the worker blocks on the first batch
    mb = MicroBatcher(rec, max_batch=2, max_wait_ms=1, max_queue=3, timeout_s=10)
    first = asyncio.ensure_future(mb.submit(0))
    await asyncio.sleep(0.05)  # first batch taken by the (blocked) worker
    waiting = [asyncio.ensure_future(mb.submit(i)) for i in range(1, 4)]
    await asyncio.sleep(0.01)
    with pytest.raises(ModelOverloaded) as err:
        await mb.submit(99)
    assert err.value.retry_after >= 1.0
    rec.gate.set()
    assert await first == 0
    assert await asyncio.gather(*waiting) == [10, 20, 30]
    await mb.aclose()


async def test_timeout_and_the_timed_out_request_is_dropped():
    rec = Recorder()
    rec.gate.clear()
    mb = MicroBatcher(rec, max_batch=1, max_wait_ms=1, max_queue=10, timeout_s=0.2)
    blocker = asyncio.ensure_future(mb.submit(1))
    await asyncio.sleep(0.05)
    with pytest.raises(ModelTimeout):
        await mb.submit(2)  # waits behind the blocked batch and times out
    assert isinstance(ModelTimeout("x"), ModelError)
    rec.gate.set()
    with pytest.raises(ModelTimeout):
        await blocker  # also timed out: its caller got the error, the late result is discarded
    assert await mb.submit(3) == 30
    assert [2] not in rec.batches
    assert mb.stats.dropped >= 1
    await mb.aclose()


async def test_cancelled_request_never_reaches_the_model():
    rec = Recorder()
    rec.gate.clear()
    mb = MicroBatcher(rec, max_batch=1, max_wait_ms=1, max_queue=10, timeout_s=10)
    blocker = asyncio.ensure_future(mb.submit(1))
    await asyncio.sleep(0.05)
    victim = asyncio.ensure_future(mb.submit(7))
    await asyncio.sleep(0.01)
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    rec.gate.set()
    assert await blocker == 10
    assert await mb.submit(8) == 80
    assert [7] not in rec.batches
    await mb.aclose()


async def test_closed_batcher_refuses():
    mb = MicroBatcher(Recorder(), max_batch=2)
    assert await mb.submit(1) == 10
    await mb.aclose()
    with pytest.raises(ModelError):
        await mb.submit(2)


def test_a_batcher_survives_a_new_event_loop():
    mb = MicroBatcher(Recorder(), max_batch=4, max_wait_ms=1)
    assert asyncio.run(mb.submit(1)) == 10
    assert asyncio.run(mb.submit(2)) == 20
    asyncio.run(mb.aclose())
