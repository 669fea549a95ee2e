"""Micro-batching of model calls, off the event loop.

Why: a generate call on 16 questions costs little more than on one, and the
model must never block the event loop that serves the game. Requests wait in
a bounded queue (full -> ModelOverloaded with a retry hint, i.e. HTTP 503 +
Retry-After); a single worker thread runs one batch at a time (at most
`max_batch` requests, collected for at most `max_wait_ms` after the first one
arrives while the worker is idle); each request has a timeout, and a request
whose caller gave up (timeout or task cancellation) is dropped before it
reaches the model.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

from models.base import ModelError, ModelOverloaded

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class ModelTimeout(ModelError):
    """The request did not get an answer within its timeout."""


@dataclass
class _Pending(Generic[T]):
    item: T
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    dropped: int = 0
    sizes: collections.Counter = field(default_factory=collections.Counter)


class MicroBatcher(Generic[T, R]):
    """Collects concurrent `submit(item)` calls into calls of `fn(items) -> results` on a worker thread.

    `fn` returns one result per item, in order; a result that is an Exception
    instance is raised to that item's caller only.
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R | BaseException]], *, max_batch: int = 16,
                 max_wait_ms: float = 5.0, max_queue: int = 256, timeout_s: float = 30.0, name: str = "model"):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be positive")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.stats = BatchStats()
        self._queue: collections.deque[_Pending[T]] = collections.deque()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-worker")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._batch_seconds = 0.05  # running estimate, for the retry hint

    # ------------------------------------------------------------------ public
    async def submit(self, item: T) -> R:
        if self._closed:
            raise ModelError("the model is shutting down")
        self._ensure_worker()
        if len(self._queue) >= self.max_queue:
            batches_ahead = len(self._queue) / self.max_batch + 1
            raise ModelOverloaded(retry_after=max(1.0, round(batches_ahead * self._batch_seconds, 1)))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, fut))
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()
            raise ModelTimeout(f"the model did not answer within {self.timeout_s:g} s") from None
        except asyncio.CancelledError:
            fut.cancel()  # the worker skips it if it has not started yet
            raise

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def aclose(self) -> None:
        self._closed = True
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if self._task is not None and self._loop is current:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        while self._queue:
            p = self._queue.popleft()
            if not p.future.done() and self._loop is current:
                p.future.set_exception(ModelError("the model is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ worker
    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            # first use, or a new event loop (e.g. a second asyncio.run): requests of the old loop are void
            while self._queue:
                self._queue.popleft().future.cancel()
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="micro-batcher")

    def _take(self) -> list[_Pending[T]]:
        batch: list[_Pending[T]] = []
        while self._queue and len(batch) < self.max_batch:
            p = self._queue.popleft()
            if p.future.done():  # timed out or cancelled while waiting
                self.stats.dropped += 1
                continue
            batch.append(p)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            # let a burst fill the batch, but never wait longer than max_wait
            deadline = loop.time() + self.max_wait
            while len(self._queue) < self.max_batch and loop.time() < deadline:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
            batch = self._take()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # the whole batch failed: every caller gets a safe error
                log.exception("model batch failed")
                results = [ModelError("the model failed to answer") if not isinstance(exc, ModelError) else exc] * len(batch)
            elapsed = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * elapsed
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes[len(batch)] += 1
            for p, res in zip(batch, results):
                if p.future.done():
                    continue
                if isinstance(res, BaseException):
                    p.future.set_exception(res)
                else:
                    p.future.set_result(res)
