"""Honest image descriptions from any model (the model's side of "model or crowd?").

Why two ways: an instruction-following model (an `openai:` endpoint) describes a
picture in a sentence or two when asked, and can rewrite a person's description;
a VQA-only model such as the embedded one cannot caption, but it can answer
questions — so its description is composed from its honest answers to a fixed set
of template questions (how many objects, which colours, which shapes). A backend
that can describe says so by having `describe(image) -> Description` (and
`rewrite(text) -> Description`); the choice is made here, once, by what the backend
offers.

Descriptions are never tainted. `compute_seconds` is the measured time the model
worked on the description (for the questions, the wall time of their one batch), the
basis of its cost per description.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from models.base import VQAModel
from models.scenes import COLORS, SHAPES, normalize_answer

DESCRIBE_INSTRUCTION = (
    "Describe the picture in one or two sentences: which objects there are, their colours and shapes, "
    "how many there are and where they are. Plain text only.")
REWRITE_INSTRUCTION = (
    "Rewrite this description of a picture as one or two clear sentences. Keep every fact it states, "
    "add none, fix spelling. Reply with the rewritten description only.")

COUNT_QUESTION = "How many objects are there?"
COLOR_QUESTION = "Is there anything {color}?"
SHAPE_QUESTION = "Is there a {shape}?"


@dataclass(frozen=True)
class Description:
    """An honest description and what it cost to make."""

    text: str
    model_id: str
    compute_seconds: float


def can_rewrite(model: object) -> bool:
    """Whether the model can rewrite a description (only instruction-following backends can)."""
    return callable(getattr(model, "rewrite", None))


async def describe_image(model: VQAModel, image: bytes) -> Description:
    """An honest description of `image` by `model`: its own words when it can describe,
    else composed from its honest answers to the template questions."""
    own = getattr(model, "describe", None)
    if callable(own):
        return await own(image)
    return await describe_by_questions(model, image)


def _is_yes(answer: str) -> bool:
    return normalize_answer(answer) == "yes"


async def describe_by_questions(model: VQAModel, image: bytes) -> Description:
    """Ask the count, colour and shape questions at once (a batching backend answers them
    in one batch) and write the honest answers as two sentences."""
    colors, shapes = list(COLORS), list(SHAPES)
    questions = ([COUNT_QUESTION] + [COLOR_QUESTION.format(color=c) for c in colors]
                 + [SHAPE_QUESTION.format(shape=s) for s in shapes])
    started = time.perf_counter()
    answers = await asyncio.gather(*(model.answer(image, q, False) for q in questions))
    # one batch's wall time: the answers overlap in a batching backend, so their latencies would add up to more
    elapsed = time.perf_counter() - started
    count = answers[0].honest.strip()
    seen_colors = [c for c, a in zip(colors, answers[1:1 + len(colors)]) if _is_yes(a.honest)]
    seen_shapes = [s for s, a in zip(shapes, answers[1 + len(colors):]) if _is_yes(a.honest)]
    text = (f"There are {count} objects. "
            f"Colours: {', '.join(seen_colors) or 'none I can tell'}; "
            f"shapes: {', '.join(seen_shapes) or 'none I can tell'}.")
    return Description(text=text, model_id=model.model_id, compute_seconds=elapsed)
