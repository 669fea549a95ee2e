"""Procedural scenes with ground truth: the one generator shared by image pools,
model training, evaluation and simulated players.

Why one package: the game's reliable pool (SPEC §1.2), the embedded model's training
data, the held-out evaluation (§3.2) and the simulated players must agree on what an
image shows and on what a correct answer is. A scene is a small JSON scene graph
(`generation`); `rendering` draws it; `questions` asks a templated question whose
answer is read off the graph; `answers` decides equality ("3" == "three").

Layout:
- "simple" scenes hold 1-3 objects centred in the cells of a 4x4 grid. The
  grid matches the embedded model's 16 image patches, so each object is seen by
  exactly one patch; positions are unambiguous.
- "grid" scenes (training curriculum only) hold 4-10 objects on the same grid.
- "scattered" scenes (training curriculum only) hold 6-10 objects anywhere, small
  ones and partial overlaps included.
- "complex" scenes (pools, evaluation) hold 6-10 objects anywhere with partial
  overlaps, and over half of them are small, many tiny: plain to a player at 384 px,
  a pixel or two at the embedded model's 64-px input. They are harder than anything
  the embedded model is trained on, so its mistakes there are genuine, and data
  about them can fix them (the closed loop of SPEC §3.2).

Styles (`styles`): the same scene graph drawn on a dark background, under uneven light
or among clutter. The embedded model is trained on "plain" pictures only, so the other
styles are its learnable weaknesses in the game's pool (SPEC §3.2).

The names below are the package's public surface; import them from `models.scenes`.
`heldout_fingerprints` is looked up here at call time by its users, so a test may
replace it on this package.
"""
from __future__ import annotations

from models.scenes.answers import answer_vocabulary, answers_match, measure_accuracy, normalize_answer
from models.scenes.generation import (BACKGROUND, COLORS, COMPLEXITIES, GLYPHS, GRID, SEED_RANGES, SHAPE_PLURALS,
                                      SHAPES, SIZES, Scene, SceneObject, generate_scene, heldout_fingerprints,
                                      scene_from_seed)
from models.scenes.questions import (CANT_TELL, EVAL_TYPES, FAMILIES, FAMILY, OFF_TOPIC, QA, QUESTION_TYPES,
                                     NoQuestion, example_questions, referring_expressions, sample_question)
from models.scenes.rendering import render, render_png
from models.scenes.styles import STYLES, WITHHELD_STYLES, check_style, parse_style_shares, pick_style

__all__ = [
    "BACKGROUND", "CANT_TELL", "COLORS", "COMPLEXITIES", "EVAL_TYPES", "FAMILIES", "FAMILY", "GLYPHS", "GRID",
    "OFF_TOPIC", "QA", "QUESTION_TYPES", "SEED_RANGES", "SHAPES", "SHAPE_PLURALS", "SIZES", "NoQuestion", "Scene",
    "SceneObject", "answer_vocabulary", "answers_match", "example_questions", "generate_scene",
    "heldout_fingerprints", "measure_accuracy", "normalize_answer", "referring_expressions", "render", "render_png",
    "sample_question", "scene_from_seed", "STYLES", "WITHHELD_STYLES", "check_style",
    "parse_style_shares", "pick_style",
]
