"""Pairs of procedural scenes and answers for preference duels, with ground truth.

Caption duels need a picture that fits a caption and one that nearly does (a
*near miss*: the same scene with one object's colour or shape changed, so the
caption is false of it), or, for hidden gold, a picture made for another
caption. Answer duels need a question about a scene with its true answer and a
plausible wrong one (same answer type), or, for gold, the answer to another kind
of question. Everything is read off the scene graph, so the right side is known.
This module knows nothing of the game; it uses only `models.scenes`' public names.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

from models import scenes


@dataclass(frozen=True)
class CaptionPair:
    """A caption, the scene it fits (side a) and one it does not (side b)."""

    caption: str
    right: scenes.Scene
    wrong: scenes.Scene
    changed: str            # "color" | "shape" | "other caption"


@dataclass(frozen=True)
class AnswerPair:
    """A question about `scene`, its true answer (side a) and a wrong one (side b)."""

    question: str
    right: str
    wrong: str
    family: str


def caption_for(obj: scenes.SceneObject) -> str:
    article = "an" if obj.color[0] in "aeiou" else "a"
    return f"There is {article} {obj.color} {obj.shape}."


def fits(scene: scenes.Scene, color: str, shape: str) -> bool:
    """Whether the caption "There is a <color> <shape>." is true of `scene`."""
    return any(o.color == color and o.shape == shape for o in scene.objects)


def near_miss_caption(rng: random.Random, complexity: str = "simple") -> CaptionPair:
    """A scene, a caption true of it, and the same scene with one attribute of the captioned
    object changed so that the caption is false (nothing else moves)."""
    while True:
        scene = scenes.generate_scene(rng, complexity)
        index = rng.randrange(len(scene.objects))
        obj = scene.objects[index]
        attribute = rng.choice(("color", "shape"))
        options = ([c for c in scenes.COLORS if c != obj.color] if attribute == "color"
                   else [s for s in scenes.SHAPES if s != obj.shape])
        changed = replace(obj, **{attribute: rng.choice(options)})
        objects = list(scene.objects)
        objects[index] = changed
        miss = replace(scene, objects=tuple(objects))
        if not fits(miss, obj.color, obj.shape):
            return CaptionPair(caption_for(obj), scene, miss, attribute)


def other_caption_gold(rng: random.Random, complexity: str = "simple") -> CaptionPair:
    """Comparison gold: a scene with its caption against a scene made for another caption,
    of which the first caption is false — one side unambiguous (SPEC §3.4)."""
    scene = scenes.generate_scene(rng, complexity)
    obj = rng.choice(scene.objects)
    while True:
        other = scenes.generate_scene(rng, complexity)
        if not fits(other, obj.color, obj.shape):
            return CaptionPair(caption_for(obj), scene, other, "other caption")


def _qa(scene: scenes.Scene, rng: random.Random) -> scenes.QA:
    while True:
        qa = scenes.sample_question(scene, rng)
        if scenes.answer_vocabulary(qa.qtype) and qa.answer != scenes.CANT_TELL:
            return qa


def near_miss_answer(scene: scenes.Scene, rng: random.Random) -> AnswerPair:
    """A question with its true answer and a wrong answer of the same type (what a tainted
    model says)."""
    while True:
        qa = _qa(scene, rng)
        wrong = [a for a in scenes.answer_vocabulary(qa.qtype) if not scenes.answers_match(a, qa.answer)]
        if wrong:
            return AnswerPair(qa.question, qa.answer, rng.choice(wrong), qa.family)


def other_question_gold(scene: scenes.Scene, rng: random.Random) -> AnswerPair:
    """Comparison gold: the true answer against the answer to a question of another family
    about the same scene ("two" to "what colour is the circle?")."""
    while True:
        qa, other = _qa(scene, rng), _qa(scene, rng)
        if other.family != qa.family and not scenes.answers_match(other.answer, qa.answer):
            return AnswerPair(qa.question, qa.answer, other.answer, qa.family)


def render_png(scene: scenes.Scene, size: int = 256) -> bytes:
    return scenes.render_png(scene, size)


@dataclass(frozen=True)
class RenderedCaptionPair:
    """A caption duel ready to store: PNG bytes and scene graphs of the right and wrong picture."""

    caption: str
    right_png: bytes
    wrong_png: bytes
    right_scene: str
    wrong_scene: str


class ScenePairMaker:
    """What the duel mode needs from the model area (game/duels.py's PairMaker): caption duels
    as pictures, answer duels about a stored scene graph, and answer equality."""

    def __init__(self, size: int = 256, complexity: str = "simple") -> None:
        self.size = size
        self.complexity = complexity

    def caption_duel(self, rng: random.Random, gold: bool) -> RenderedCaptionPair:
        pair = other_caption_gold(rng, self.complexity) if gold else near_miss_caption(rng, self.complexity)
        return RenderedCaptionPair(pair.caption, render_png(pair.right, self.size), render_png(pair.wrong, self.size),
                                   pair.right.to_json(), pair.wrong.to_json())

    def answer_duel(self, scene_json: str, rng: random.Random, gold: bool) -> AnswerPair:
        scene = scenes.Scene.from_json(scene_json)
        return other_question_gold(scene, rng) if gold else near_miss_answer(scene, rng)

    @staticmethod
    def same_answer(a: str, b: str) -> bool:
        return scenes.answers_match(a, b)
