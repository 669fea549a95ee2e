"""Held-out accuracy per question type (`gap model-eval`).

Why a fixed held-out set: numbers must be comparable across checkpoints (the
shipped one, a LoRA-fine-tuned one) and never measured on training images.
Scenes come from the "heldout" seed range (training skips their fingerprints);
each question type walks the same scenes in order, skipping scenes on which
the type cannot be asked, so every checkpoint sees the same questions. Images
go through the serving path: a 384-pixel PNG decoded by the backend.
"""
from __future__ import annotations

import asyncio
import random
from typing import Callable

from models.base import VQAModel
from models.scenes import EVAL_TYPES, QA, NoQuestion, Scene, render_png, sample_question, scene_from_seed
from models.taint import says

COMPLEXITIES = ("simple", "complex")
TYPES = EVAL_TYPES + ("other",)


def heldout_items(complexity: str, qtype: str, n: int, max_scenes: int = 50_000) -> list[tuple[int, QA]]:
    """(scene index, question) pairs for one type: the first `n` held-out scenes that support it."""
    items: list[tuple[int, QA]] = []
    for i in range(max_scenes):
        if len(items) >= n:
            break
        scene = _scene(complexity, i)
        try:
            qa = sample_question(scene, random.Random(f"eval:{complexity}:{qtype}:{i}"), qtype)
        except NoQuestion:
            continue
        items.append((i, qa))
    return items


_SCENES: dict[tuple[str, int], Scene] = {}


def _scene(complexity: str, i: int) -> Scene:
    key = (complexity, i)
    if key not in _SCENES:
        _SCENES[key] = scene_from_seed("heldout", i, complexity)
    return _SCENES[key]


async def evaluate(model: VQAModel, n: int = 1000, types: tuple[str, ...] = TYPES,
                   complexities: tuple[str, ...] = COMPLEXITIES, concurrency: int = 64,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """{"simple": {qtype: accuracy}, "complex": {...}} over `n` held-out questions per type (honest answers)."""
    plan = [(c, t, i, qa) for c in complexities for t in types for i, qa in heldout_items(c, t, n)]
    pngs: dict[tuple[str, int], bytes] = {}
    correct: dict[tuple[str, str], list[bool]] = {}
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(c: str, t: str, i: int, qa: QA) -> None:
        nonlocal done
        async with sem:
            key = (c, i)
            if key not in pngs:
                pngs[key] = await asyncio.to_thread(render_png, _scene(c, i), 384)
            # a model failure (ModelError) ends the evaluation: counting failures as wrong answers made
            # a dead model server read as an accuracy of 0 %
            ans = await model.answer(pngs[key], qa.question, taint=False)
            ok = says(qa.question, ans.honest, qa.answer)
            correct.setdefault((c, t), []).append(ok)
            done += 1
            if progress:
                progress(done, len(plan))

    # scene by scene, so each PNG is rendered once and requests batch together
    plan.sort(key=lambda p: (p[0], p[2]))
    await asyncio.gather(*(one(*p) for p in plan))
    return {c: {t: round(sum(v) / len(v), 4) for t in types if (v := correct.get((c, t)))} for c in complexities}


def mean_standard_error(by_type: dict[str, float], n_per_type: int) -> float:
    """Standard error of a mean of per-type accuracies, each over `n_per_type` questions (binomial):
    what a difference between two checkpoints' means has to beat."""
    if not by_type:
        return 0.0
    return sum(p * (1 - p) / n_per_type for p in by_type.values()) ** 0.5 / len(by_type)


def format_table(result: dict[str, dict[str, float]]) -> str:
    cols = list(result)
    types = [t for t in TYPES if any(t in result[c] for c in cols)]
    lines = [f"{'question type':<22}" + "".join(f"{c:>10}" for c in cols)]
    for t in types:
        lines.append(f"{t:<22}" + "".join(f"{result[c].get(t, float('nan')) * 100:>9.1f}%" for c in cols))
    means = {c: sum(result[c].values()) / max(1, len(result[c])) for c in cols}
    lines.append(f"{'mean':<22}" + "".join(f"{means[c] * 100:>9.1f}%" for c in cols))
    return "\n".join(lines)


async def evaluate_paraphrases(model: VQAModel, per_frame: int = 20, complexity: str = "simple", seed: int = 0,
                               concurrency: int = 64, progress: Callable[[int, int], None] | None = None) -> dict:
    """The held-out paraphrase score (models.paraphrases): accuracy per category, per frame and overall,
    and the share of well-formed answers (one of the model's answer forms), over `per_frame` questions a
    frame; wrong examples are (question, answer, truth)."""
    from models.paraphrases import CATEGORIES, correct, heldout_items, well_formed

    items = heldout_items(per_frame, complexity, seed)
    pngs: dict[int, bytes] = {}
    rows: list[tuple[str, bool, bool, str, str, str, str]] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(item) -> None:
        async with sem:
            if item.scene_index not in pngs:
                pngs[item.scene_index] = await asyncio.to_thread(
                    render_png, scene_from_seed("heldout", item.scene_index, complexity), 384)
            ans = await model.answer(pngs[item.scene_index], item.question, taint=False)
            rows.append((item.category, correct(item.question, ans.honest, item.answer), well_formed(ans.honest),
                         item.question, ans.honest, item.answer, item.frame))
            if progress:
                progress(len(rows), len(items))

    await asyncio.gather(*(one(it) for it in items))
    by_cat = {c: [r[1] for r in rows if r[0] == c] for c in CATEGORIES}
    return {"complexity": complexity, "n": len(rows),
            "categories": {c: round(sum(v) / len(v), 4) for c, v in by_cat.items() if v},
            "all": round(sum(r[1] for r in rows) / max(1, len(rows)), 4),
            "well_formed": round(sum(r[2] for r in rows) / max(1, len(rows)), 4),
            "frames": {f: round(sum(r[1] for r in rows if r[6] == f) / n, 4)
                       for f in dict.fromkeys(it.frame for it in items)
                       if (n := sum(1 for r in rows if r[6] == f))},
            "malformed_examples": sorted({r[4] for r in rows if not r[2]})[:10],
            "wrong_examples": [[r[3], r[4], r[5]] for r in rows if not r[1]][:15]}


def format_paraphrases(result: dict) -> str:
    lines = [f"held-out paraphrases ({result['complexity']} scenes, {result['n']} questions)"]
    for c, v in result["categories"].items():
        lines.append(f"{c:<22}{v * 100:>9.1f}%")
    lines.append(f"{'all':<22}{result['all'] * 100:>9.1f}%")
    lines.append(f"{'well-formed answers':<22}{result['well_formed'] * 100:>9.1f}%")
    return "\n".join(lines)
