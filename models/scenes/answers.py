"""Answers: when two answers mean the same, which answers a question type admits, and
how often a model's honest answers are right on a scene.

Why one normaliser: the tainting rule (SPEC §1.2: a tainted answer must differ from the
honest one after normalisation), export de-duplication (§3.1) and every accuracy figure
compare answers the same way ("3" == "three", "grey" == "gray").
"""
from __future__ import annotations

import asyncio
import functools
import random

from models.question_types import FAMILY
from models.scenes.generation import COLORS, GLYPHS, SHAPES, Scene
from models.scenes.questions import CANT_TELL, NoQuestion, sample_question


_NUMBER_WORDS = {
    "zero": "0", "none": "0", "no one": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}
_SYNONYMS = {
    "grey": "gray", "colour": "color", "upper": "top", "lower": "bottom", "above": "top", "below": "bottom",
    "up": "top", "down": "bottom", "yeah": "yes", "yep": "yes", "nope": "no", "true": "yes", "false": "no",
    "violet": "purple", "rhombus": "diamond", "ball": "circle", "cube": "square",
    "i cant tell": "i cant tell", "cant tell": "i cant tell", "i dont know": "i cant tell",
    "dont know": "i cant tell", "unknown": "i cant tell",
}
_FILLER = {"a", "an", "the", "it", "is", "its", "there", "are", "on", "at", "in", "side", "half",
           "object", "shape", "of", "image", "picture"}


@functools.lru_cache(maxsize=8192)  # pure; called for every candidate answer on the serving hot path
def normalize_answer(text: str) -> str:
    """Canonical form for comparing answers: lowercase, no punctuation or articles,
    number words as digits, British/US spellings and a few synonyms unified
    ("Three." -> "3", "Yes!" -> "yes", "the Left side" -> "left", "grey" -> "gray")."""
    s = (text or "").strip().lower().replace("’", "'")
    s = "".join(ch if ch.isalnum() or ch.isspace() else ("" if ch == "'" else " ") for ch in s)
    s = " ".join(s.split())
    if s in _SYNONYMS:
        return _SYNONYMS[s]
    if s in _NUMBER_WORDS:
        return _NUMBER_WORDS[s]
    raw = s.split()
    if len(raw) > 1:
        raw = [w for w in raw if w != "one"] or raw  # "the red one" is a pronoun, not a count
    words = [_SYNONYMS.get(w, _NUMBER_WORDS.get(w, w)) for w in raw]
    kept = [w for w in words if w not in _FILLER] or words
    kept = [w[:-1] if w.endswith("s") and w[:-1] in SHAPES else w for w in kept]
    out = " ".join(kept)
    return _SYNONYMS.get(out, out)


def answers_match(a: str, b: str) -> bool:
    """True when two answers mean the same after normalisation."""
    return normalize_answer(a) == normalize_answer(b)


def answer_vocabulary(family_or_type: str) -> list[str]:
    """The plausible answers of a question type (for type-consistent tainting)."""
    fam = FAMILY.get(family_or_type, family_or_type)
    if fam == "count":
        return [str(i) for i in range(0, 11)]
    if fam == "color":
        return list(COLORS)
    if fam == "shape":
        return list(SHAPES)
    if fam == "exists":
        return ["yes", "no"]
    if family_or_type == "position_lr":
        return ["left", "right"]
    if family_or_type == "position_tb":
        return ["top", "bottom"]
    if fam == "position":
        return ["yes", "no"] if family_or_type == "relation" else ["left", "right", "top", "bottom"]
    if fam == "text":
        return list(GLYPHS)
    return []


@functools.lru_cache(maxsize=1)
def answer_forms() -> frozenset[str]:
    """Every answer the embedded model may give, exactly as written (SPEC §3.2: an answer is one of
    these, never a fragment like "I no"): counts 0-10, colours, shapes, yes/no, sides, halves,
    glyphs, and "I can't tell"."""
    forms = {CANT_TELL}
    for qtype in ("count", "color", "shape", "exists", "position_lr", "position_tb", "text"):
        forms.update(answer_vocabulary(qtype))
    return frozenset(forms)


async def measure_accuracy(model, image_bytes: bytes, scene: Scene, rng: random.Random, n: int = 8) -> float:
    """Fraction of `n` honest answers by `model` that match the scene's ground truth.

    Used when an image pool is generated: images with a high value form the
    reliable pool from which tainted images are drawn (SPEC §1.2). Questions
    cover the families the model is expected to handle (no text, no off-topic).
    """
    families = ["count", "color", "shape", "exists", "position"]
    qas = []
    for i in range(n):
        try:
            qas.append(sample_question(scene, rng, families[i % len(families)]))
        except NoQuestion:
            qas.append(sample_question(scene, rng, "count"))
    from models.taint import says  # here: models.taint imports this package

    answers = await asyncio.gather(*(model.answer(image_bytes, qa.question, taint=False) for qa in qas))
    return sum(says(qa.question, a.honest, qa.answer) for a, qa in zip(answers, qas)) / max(1, len(qas))
