"""`gap compare` and the bot's /compare as named steps (SPEC §3.5): describe the
crowd-described images with the model (honest), rewrite crowd descriptions where the
model can rewrite text, then compare the sources per attribute with their costs.

The two generating steps store each description as soon as it is made, so an
interrupted run loses nothing and a rerun continues where it stopped.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from game import descriptions as store
from game.attributes import image_attributes
from game.compare import AttributeRow, Doc, SourceComparison, SourceCost, crowd_cost, model_cost
from game.db import Database
from game.storage import new_id
from models.base import VQAModel
from models.describe import can_rewrite, describe_image

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CompareConfig:
    """The protocol's knobs (the study: 100 trials) and the prices behind the cost column."""

    trials: int = 100
    trees: int = 100
    seed: int = 0
    jobs: int = 1
    gpu_hour_price: float = 2.0
    point_value: float = 0.01


@dataclass
class CompareReport:
    """Everything the Markdown report, the chart and the bot's reply show."""

    model_id: str | None
    rows: list[AttributeRow]
    settings: list[tuple[str, str]]
    costs: list[SourceCost]
    images: int
    config: CompareConfig
    notes: list[str] = field(default_factory=list)


async def describe_missing(db: Database, model: VQAModel, progress: Progress | None = None) -> int:
    """Describe with `model` every crowd-described image it has not described yet; returns how many."""
    rows = await db.run_read(store.tx_descriptions)
    crowd = sorted({d.image_id for d in rows if d.source == "crowd"})
    done = {d.image_id for d in rows if d.source == "model" and d.model_id == model.model_id}
    todo = [i for i in crowd if i not in done]
    for n, image in enumerate(await db.run_read(store.tx_known_images, todo), start=1):
        got = await describe_image(model, image.content)
        await db.run_write(store.tx_store_generated, {
            "id": new_id(), "image_id": image.image_id, "source": "model", "model_id": got.model_id[:256],
            "based_on": None, "text": got.text, "seconds": got.compute_seconds, "created_at": int(time.time() * 1000)})
        if progress:
            progress(n, len(todo))
    return len(todo)


async def rewrite_missing(db: Database, model: VQAModel, progress: Progress | None = None) -> int:
    """Rewrite with `model` every crowd description it has not rewritten yet (only models that can)."""
    if not can_rewrite(model):
        return 0
    rows = await db.run_read(store.tx_descriptions)
    done = {d.based_on for d in rows if d.source == "rewrite" and d.model_id == model.model_id}
    todo = [d for d in rows if d.source == "crowd" and d.id not in done]
    for n, d in enumerate(todo, start=1):
        got = await model.rewrite(d.text)  # type: ignore[attr-defined]
        await db.run_write(store.tx_store_generated, {
            "id": new_id(), "image_id": d.image_id, "source": "rewrite", "model_id": got.model_id[:256],
            "based_on": d.id, "text": got.text, "seconds": got.compute_seconds, "created_at": int(time.time() * 1000)})
        if progress:
            progress(n, len(todo))
    return len(todo)


async def compare_sources(db: Database, config: CompareConfig, model_id: str | None = None,
                          progress: Progress | None = None) -> CompareReport:
    """The comparison over the stored descriptions: crowd ones, and the model's (those of
    `model_id`, else of the model with the most descriptions)."""
    rows = await db.run_read(store.tx_descriptions)
    generated = [d for d in rows if d.source in ("model", "rewrite")]
    if model_id is None and generated:
        ids = [d.model_id for d in generated if d.source == "model"] or [d.model_id for d in generated]
        model_id = max(set(ids), key=ids.count)
    kept = [d for d in rows if d.source == "crowd" or d.model_id == model_id]
    images = await db.run_read(store.tx_known_images, sorted({d.image_id for d in kept}), False)
    labels = {i.image_id: a for i in images if (a := image_attributes(i.scene_json, i.annotations_json))}
    docs = [Doc(d.image_id, d.source, d.text) for d in kept]
    comparison = SourceComparison(trials=config.trials, trees=config.trees, seed=config.seed, jobs=config.jobs,
                                  progress=progress)
    await asyncio.to_thread(comparison.fit, docs, labels)
    costs = [crowd_cost([d.points for d in kept if d.source == "crowd"],
                        [d.seconds for d in kept if d.source == "crowd"], config.point_value)]
    for source in ("model", "rewrite"):
        seconds = [d.seconds for d in kept if d.source == source]
        if seconds:
            costs.append(model_cost(source, seconds, config.gpu_hour_price))
    notes = []
    if not any(d.source == "model" for d in kept):
        notes.append("No model descriptions yet: `gap compare` describes the crowd-described images with the model.")
    if not any(d.source == "rewrite" for d in kept):
        notes.append("No rewritten crowd descriptions: only a model that rewrites text (an `openai:` model) makes them.")
    unlabelled = len({d.image_id for d in kept} - set(labels))
    if unlabelled:
        notes.append(f"{unlabelled} described images have no known attributes and are left out.")
    return CompareReport(model_id, comparison.rows_, comparison.settings_, costs, len(labels), config, notes)
