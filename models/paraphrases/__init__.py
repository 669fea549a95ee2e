"""The held-out paraphrase set: questions phrased the way players type them, never the
training templates, with an answer rule each so they can be scored on any scene.

Why (SPEC §3.2, §1.1): players type free text, so the embedded model is scored on
negations ("Isn't there a ..."), synonyms ("what hue"), other word orders ("Left or
right, where is ..."), colour and shape words outside its world (answered "I can't
tell", never guessed) and typos, casing and punctuation. The frames in `heldout.jsonl`
were written by hand apart from the templates (`models.scenes.questions`) and the
training phrasings (`models.scenes.phrasings`); a test checks that none of them equals a
training frame after normalisation. Each frame names a rule that reads the answer off
the scene graph, and its slots ({shape}, {color}, {ref}, ...) are filled from the scene.
Every answer must also be well formed: one of the model's answer forms (`answer_forms`).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from models.scenes import (CANT_TELL, COLORS, SHAPE_PLURALS, SHAPES, Scene, referring_expressions,
                           scene_from_seed)
from models.scenes.answers import answer_forms
from models.taint import says

HELDOUT_FILE = Path(__file__).with_name("heldout.jsonl")
CATEGORIES = ("negation", "synonym", "word_order", "out_of_world", "typo")


@dataclass(frozen=True)
class Frame:
    category: str
    rule: str
    frame: str
    fixed: dict = field(default_factory=dict, hash=False)  # slot values the wording itself fixes ("round" = circle)
    yes_no: str | None = None  # "left": a yes/no question about that side


@dataclass(frozen=True)
class Item:
    scene_index: int
    category: str
    frame: str
    question: str
    answer: str


@lru_cache(maxsize=1)
def load_frames(path: Path = HELDOUT_FILE) -> tuple[Frame, ...]:
    """The held-out frames (one JSON object a line)."""
    frames = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        if d["category"] not in CATEGORIES or d["rule"] not in RULES:
            raise ValueError(f"{path.name}:{n}: unknown category or rule in {line!r}")
        frames.append(Frame(d["category"], d["rule"], d["frame"], d.get("fixed", {}), d.get("yes_no")))
    return tuple(frames)


def normalize_frame(text: str) -> str:
    """A frame compared as words: lowercase, no punctuation, slot names unified ({Shapes} == {pl})."""
    s = text.lower().replace("’", "'")
    s = re.sub(r"\{shapes\}", "{pl}", s)
    s = re.sub(r"[^\w{}' ]+", " ", s)
    return " ".join(s.split())


# ---------------------------------------------------------------- rules: slot values and the answer

def _pick(rng: random.Random, present: list[str], every: list[str]) -> str:
    return rng.choice(present) if present and rng.random() < 0.6 else rng.choice(every)


def _count(scene: Scene, pred) -> str:
    return str(sum(1 for o in scene.objects if pred(o)))


def _ref(scene: Scene, rng: random.Random, drop: str | None) -> tuple | None:
    """(object, description) of a uniquely described object; `drop` ("color"/"shape"): the description
    must not name the attribute asked for."""
    options = []
    for o in scene.objects:
        for d in referring_expressions(scene, o):
            if drop == "color" and o.color in d.split() or drop == "shape" and o.shape in d.split():
                continue
            options.append((o, d))
    return rng.choice(options) if options else None


def _rule(scene: Scene, rng: random.Random, frame: Frame) -> tuple[dict, str] | None:
    objs = scene.objects
    have_shapes = sorted({o.shape for o in objs})
    have_colors = sorted({o.color for o in objs})
    shape = frame.fixed.get("shape") or _pick(rng, have_shapes, list(SHAPES))
    color = frame.fixed.get("color") or _pick(rng, have_colors, list(COLORS))
    slots = {"shape": shape, "color": color}
    r = frame.rule
    if r == "count_all":
        return slots, str(len(objs))
    if r == "count_shape":
        return slots, _count(scene, lambda o: o.shape == shape)
    if r == "count_color":
        return slots, _count(scene, lambda o: o.color == color)
    if r == "count_not_shape":
        return slots, _count(scene, lambda o: o.shape != shape)
    if r == "count_not_color":
        return slots, _count(scene, lambda o: o.color != color)
    if r == "exists_shape":
        return slots, "yes" if shape in have_shapes else "no"
    if r == "exists_color":
        return slots, "yes" if color in have_colors else "no"
    if r == "exists_not_shape":
        return slots, "yes" if any(o.shape != shape for o in objs) else "no"
    if r == "exists_not_color":
        return slots, "yes" if any(o.color != color for o in objs) else "no"
    if r == "exists_color_shape":
        have = sorted({(o.color, o.shape) for o in objs})
        if have and rng.random() < 0.5:
            color, shape = rng.choice(have)
        else:
            color, shape = rng.choice(list(COLORS)), frame.fixed.get("shape") or rng.choice(list(SHAPES))
        return {"shape": shape, "color": color}, "yes" if (color, shape) in have else "no"
    if r in ("color_of", "shape_of", "side", "half"):
        ref = _ref(scene, rng, {"color_of": "color", "shape_of": "shape"}.get(r))
        if ref is None:
            return None
        obj, desc = ref
        slots["ref"] = desc
        if r == "color_of":
            return slots, obj.color
        if r == "shape_of":
            return slots, obj.shape
        truth = obj.side if r == "side" else obj.half
        if frame.yes_no:
            return slots, "yes" if truth == frame.yes_no else "no"
        return slots, truth
    if r == "cant_tell":
        return slots, CANT_TELL
    raise ValueError(f"unknown rule {r!r}")


RULES = ("count_all", "count_shape", "count_color", "count_not_shape", "count_not_color", "exists_shape",
         "exists_color", "exists_not_shape", "exists_not_color", "exists_color_shape", "color_of", "shape_of",
         "side", "half", "cant_tell")


def _fill(frame: str, slots: dict) -> str:
    values = {"shape": slots["shape"], "shapes": SHAPE_PLURALS[slots["shape"]], "color": slots["color"]}
    if "ref" in slots:
        values["ref"] = slots["ref"]
    full = {}
    for k, v in values.items():
        full[k] = v
        full[k.capitalize()] = v.title() if k == "ref" else v.capitalize()
        full[k.upper()] = v.upper()
    return frame.format(**full)


def ask(frame: Frame, scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """(question, answer) of `frame` on `scene`, or None when the frame cannot be asked there."""
    got = _rule(scene, rng, frame)
    if got is None:
        return None
    slots, answer = got
    return _fill(frame.frame, slots), answer


def heldout_items(per_frame: int, complexity: str = "simple", seed: int = 0,
                  frames: tuple[Frame, ...] | None = None) -> list[Item]:
    """`per_frame` questions for every held-out frame, each on its own held-out scene (deterministic in `seed`)."""
    frames = frames or load_frames()
    items: list[Item] = []
    for j, frame in enumerate(frames):
        got, i = 0, 0
        while got < per_frame and i < per_frame * 20:
            index = (seed * 7919 + j * 101 + i * 13) % 20_000
            i += 1
            qa = ask(frame, _scene(complexity, index), random.Random(f"para:{seed}:{j}:{index}"))
            if qa is None:
                continue
            items.append(Item(index, frame.category, frame.frame, qa[0], qa[1]))
            got += 1
    return items


@lru_cache(maxsize=4096)
def _scene(complexity: str, index: int) -> Scene:
    return scene_from_seed("heldout", index, complexity)


def well_formed(answer: str) -> bool:
    """Is `answer` exactly one of the model's answer forms (never a fragment like "I no")?"""
    return answer in answer_forms()


def correct(question: str, answer: str, truth: str) -> bool:
    """Does the answer give the truth (a word or a sentence, as `gap model-eval` scores)? Whether it is
    well formed is scored apart (`well_formed`)."""
    return says(question, answer, truth)
