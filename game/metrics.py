"""What the game does, counted for operators (Prometheus; README "Metrics").

Why a registry per service instead of prometheus-client's global one: tests and
`gap demo` build several apps in one process, and each must count only its
own events. A web worker is one process, so Prometheus scrapes every worker
and sums them (the Grafana dashboard in `deploy/grafana/` does).

Events are counted after their transaction committed, so a rolled-back
request or a replayed idempotent submit (SPEC §1.1) is never counted twice.
The model's queue depth and batch sizes are read at scrape time from its
micro-batcher when it has one (models/batching.py), so `models/` stays
unaware of metrics.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ModelCollector(Collector):
    """Queue depth and batch-size histogram of the model's micro-batcher, read when scraped."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def collect(self) -> Iterator[Metric]:
        batcher = getattr(self.model, "batcher", None)
        queued = getattr(batcher, "queued", 0) if batcher is not None else 0
        depth = GaugeMetricFamily("gap_model_queue_depth", "Questions waiting for the model's next batch")
        depth.add_metric([], float(queued))
        yield depth
        sizes = getattr(getattr(batcher, "stats", None), "sizes", None) or {}
        buckets = [(str(float(bound)), sum(n for size, n in sizes.items() if size <= bound))
                   for bound in BATCH_BUCKETS]
        buckets.append(("+Inf", sum(sizes.values())))
        total = float(sum(size * n for size, n in sizes.items()))
        hist = HistogramMetricFamily("gap_model_batch_size", "Questions per model batch")
        hist.add_metric([], buckets, total)
        yield hist


class GameMetrics:
    """The game's counters and gauges in their own registry; the service calls the
    `record_*` methods after each committed event."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_started = Counter("gap_sessions_started", "Sessions created", registry=r)
        self.sessions_finished = Counter("gap_sessions_finished", "Sessions finished, by how the last image ended",
                                         ["reason"], registry=r)
        self.answers = Counter("gap_answers", "Model answers served to players", registry=r)
        self.answer_latency = Histogram("gap_answer_latency_seconds", "Model time per answered question",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("gap_verdicts", "Verdicts on answers", ["verdict"], registry=r)
        self.finds = Counter("gap_finds", "Wrong verdicts on untainted images (SPEC §1.3 finds)", registry=r)
        self.pool = Gauge("gap_images", "Images in the pool; reliable = the pool tainted images come from",
                          ["pool"], registry=r)
        for reason in ("wrong", "timeout"):
            self.sessions_finished.labels(reason)
        for verdict in ("correct", "wrong"):
            self.verdicts.labels(verdict)
        self._model: ModelCollector | None = None

    def watch_model(self, model: Any) -> None:
        """Expose the queue depth and batch sizes of `model` (replacing a model watched before)."""
        if self._model is not None:
            self.registry.unregister(self._model)
        self._model = ModelCollector(model)
        self.registry.register(self._model)

    def record_session_started(self) -> None:
        self.sessions_started.inc()

    def record_session_finished(self, reason: str) -> None:
        self.sessions_finished.labels(reason).inc()

    def record_answer(self, latency_ms: float) -> None:
        self.answers.inc()
        self.answer_latency.observe(max(0.0, latency_ms) / 1000.0)

    def record_verdict(self, verdict: str, find: bool) -> None:
        self.verdicts.labels(verdict).inc()
        if find:
            self.finds.inc()

    def set_pool_sizes(self, reliable: int, total: int) -> None:
        self.pool.labels("reliable").set(reliable)
        self.pool.labels("all").set(total)
