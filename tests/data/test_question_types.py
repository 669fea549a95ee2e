"""The rule-based classifier agrees with the families of the scene generator's templates."""
from __future__ import annotations

import random

import pytest

from game.question_types import QUESTION_TYPES, classify_question, normalise_type
from models.scenes import generate_scene, sample_question


@pytest.mark.parametrize("question,expected", [
    ("How many red circles are there?", "count"),
    ("what number of squares can you see", "count"),
    ("What colour is the triangle?", "color"),
    ("Which shape is the blue object?", "shape"),
    ("Is there a green star?", "exists"),
    ("Is the circle on the left or the right?", "position"),
    ("Is the red circle left of the blue square?", "position"),
    ("What letter is written on the square?", "text"),
    ("Why is the sky blue", "other"),
    ("   ", "other"),
])
def test_examples(question, expected):
    assert classify_question(question) == expected


def test_agrees_with_scene_templates():
    rng = random.Random(0)
    agree = total = 0
    for i in range(400):
        scene = generate_scene(rng, "complex" if i % 2 else "simple")
        qa = sample_question(scene, rng)
        total += 1
        agree += classify_question(qa.question) == normalise_type(qa.family)
        assert classify_question(qa.question) in QUESTION_TYPES
    assert agree / total >= 0.95
