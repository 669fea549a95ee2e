"""Attributes of an image known without asking anyone (SPEC §3.5): read off the
procedural scene graph, or taken from the annotations of an imported image. They are
the labels the comparison of model and crowd descriptions predicts from text.

Scene attributes are about what a describer naturally mentions — the largest object
(its colour, shape, side and half), how many objects there are (in bands, as a person
would say "a few" or "many"), and whether any object carries a letter (small, "less
visible"). Annotations give them as an `"attributes"` object of the image's JSONL
record (`{"file": "a.jpg", "attributes": {"shirt": "red", "hair": "long"}}`); every
scalar value there becomes an attribute.
"""
from __future__ import annotations

import json
from typing import Any

from models.scenes import Scene

COUNT_BANDS: tuple[tuple[int, str], ...] = ((1, "1"), (2, "2"), (3, "3"), (6, "4-6"), (8, "7-8"))
MANY = "9+"
SCENE_ATTRIBUTES: tuple[str, ...] = ("largest_color", "largest_shape", "largest_side", "largest_half",
                                     "count", "has_text")


def count_band(n: int) -> str:
    """The band of an object count: 1, 2, 3, 4-6, 7-8, 9+."""
    for top, label in COUNT_BANDS:
        if n <= top:
            return label
    return MANY


def scene_attributes(scene: Scene) -> dict[str, str]:
    """The attributes of a procedural scene, read off its graph."""
    if not scene.objects:
        return {"count": "0", "has_text": "no"}
    largest = max(scene.objects, key=lambda o: o.r)
    return {"largest_color": largest.color, "largest_shape": largest.shape, "largest_side": largest.side,
            "largest_half": largest.half, "count": count_band(len(scene.objects)),
            "has_text": "yes" if any(o.text for o in scene.objects) else "no"}


def annotation_attributes(record: dict[str, Any]) -> dict[str, str]:
    """The attributes of an imported image from its annotation record: the scalars of its
    `"attributes"` object, and each annotation question (`"qa"`) with its first acceptable
    answer — a question asked of many images ("How many people are there?") is an attribute."""
    if not isinstance(record, dict):
        return {}
    out: dict[str, str] = {}
    for item in record.get("qa") if isinstance(record.get("qa"), list) else []:
        answers = item.get("answers") if isinstance(item, dict) else None
        question = item.get("question") if isinstance(item, dict) else None
        if isinstance(question, str) and question.strip() and isinstance(answers, list) and answers \
                and isinstance(answers[0], (str, int, float)) and str(answers[0]).strip():
            out[" ".join(question.split())[:64]] = str(answers[0]).strip().lower()
    given = record.get("attributes")
    if isinstance(given, dict):
        out.update({str(k)[:64]: str(v).strip().lower() for k, v in given.items()
                    if isinstance(v, (str, int, float, bool)) and str(v).strip()})
    return out


def image_attributes(scene_json: str | None, annotations_json: str | None) -> dict[str, str]:
    """What is known of an image: its scene's attributes, else its annotations' (may be empty)."""
    if scene_json:
        return scene_attributes(Scene.from_json(scene_json))
    if annotations_json:
        try:
            return annotation_attributes(json.loads(annotations_json))
        except ValueError:
            return {}
    return {}
