"""Training phrasings: the ways players word questions beyond the templates — synonyms,
negations, other word orders, colour and shape words outside the model's world, typos.

Why a second grammar (SPEC §3.2, §1.1): players type free text, and a model trained on
`questions.py` alone reads "What hue is the star?" or "How many objects are not red?" as
noise. These frames teach the *phenomena*; the held-out paraphrase set
(`models/paraphrases/heldout.jsonl`) was written apart and a test checks that none of its
frames is one of these. Words outside the model's world (OUT_OF_WORLD_*) are kept out of
the vocabulary on purpose: they reach the model as the unknown token, and the model
learns that an unknown word where a colour or shape belongs means "I can't tell".
Typos are made by replacing a function word with an unknown spelling (`typo`).
"""
from __future__ import annotations

import random
import re

from models.scenes.generation import COLORS, SHAPE_PLURALS, SHAPES, Scene
from models.scenes.questions import CANT_TELL, QA, referring_expressions

# colour / shape words of the real world that the scenes never hold: unknown tokens to the model
OUT_OF_WORLD_COLORS = ("beige", "silver", "gold", "maroon", "navy", "olive", "teal", "lime", "indigo", "crimson",
                       "ivory", "khaki", "cream", "tan", "amber")
OUT_OF_WORLD_SHAPES = ("octagon", "cross", "arrow", "ring", "cylinder", "cone", "ellipse", "trapezoid", "moon",
                       "spiral", "pyramid", "parallelogram", "kite", "sphere")

# synonyms players use, with the word whose embedding a new row starts from
SYNONYM_OF: dict[str, str] = {
    "hue": "color", "shade": "color", "tint": "color", "form": "shape", "figure": "shape", "figures": "shapes",
    "item": "object", "element": "object", "elements": "objects", "thing": "object",
    "round": "circle", "ball": "circle", "balls": "circles", "disc": "circle", "discs": "circles", "dot": "circle",
    "dots": "circles", "box": "square", "boxes": "squares", "block": "square", "blocks": "squares",
    "rhombus": "diamond", "rhombuses": "diamonds", "lozenge": "diamond", "triangular": "triangle",
    "spot": "see", "find": "see", "notice": "see", "observe": "see", "total": "number",
    "part": "half", "area": "half", "region": "half", "portion": "half", "hand": "side",
    "not": "no", "isn": "is", "aren": "are", "doesn": "does", "don": "do", "t": "no", "except": "no",
    "besides": "no", "other": "no", "than": "no",
}
# shape words the synonyms stand for (a synonym is asked in place of its shape)
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("round shape", "round object", "ball", "disc", "dot", "round thing"),
    "square": ("box", "block"),
    "diamond": ("rhombus", "lozenge"),
    "triangle": ("triangular shape", "triangular object"),
}
SHAPE_SYNONYM_PLURALS: dict[str, str] = {
    "round shape": "round shapes", "round object": "round objects", "ball": "balls", "disc": "discs",
    "dot": "dots", "round thing": "round things", "box": "boxes", "block": "blocks", "rhombus": "rhombuses",
    "lozenge": "lozenges", "triangular shape": "triangular shapes", "triangular object": "triangular objects",
}
OBJECT_WORDS = ("objects", "shapes", "things", "items", "figures", "elements")
COLOR_WORDS = ("color", "colour", "hue", "shade", "tint")
SEE_WORDS = ("see", "spot", "find", "notice", "observe")

_COUNT_ALL = ["In total, how many {objs} do you count?", "Give me the total number of {objs}.",
              "{Objs} in the scene, count them.", "How many {objs} altogether?",
              "Total count of {objs}?", "How many {objs} can be {seen}?"]
_COUNT_SHAPE = ["In total, how many {pl} do you count?", "{Pl}, count them.", "Give me the number of {pl}.",
                "How many {pl} altogether?", "Total number of {pl} here?", "How many {pl} does the picture show?"]
_COUNT_COLOR = ["In total, how many {color} {objs}?", "{Color} {objs}, count them.",
                "Give me the number of {color} {objs}.", "How many of the {objs} are {color}?",
                "How many {objs} have the {cword} {color}?"]
_COUNT_NOT_COLOR = ["How many {objs} are not {color}?", "Of the {objs}, how many aren't {color}?",
                    "Count the {objs} that are not {color}.", "How many {objs} have a {cword} other than {color}?",
                    "Number of non {color} {objs}?", "How many {objs} except the {color} ones?"]
_COUNT_NOT_SHAPE = ["Of the {objs}, how many are not {pl}?", "How many {objs} aren't {pl}?",
                    "Count the {objs} that are not {pl}.", "How many {objs} besides the {pl}?",
                    "How many {objs} other than {pl} are there?", "Number of {objs} that are not a {shape}?"]
_EXISTS_SHAPE = ["Isn't a {shape} in the scene?", "Is a {shape} there?",
                 "Any {pl} in the scene?", "Do you {see} any {pl}?", "A {shape}: do you {see} one?",
                 "Does the scene have a {shape}?", "Is a {shape} in the image or not?",
                 "Aren't there any {pl}?", "Don't you {see} a {shape}?"]
_EXISTS_COLOR = ["Isn't there anything {color}?", "Is anything {color}?", "Any {color} {objs}?",
                 "Do you {see} a {color} one?", "Is something {color} there?", "Aren't any {objs} {color}?",
                 "{Color}: is there any?", "Does the scene have anything {color}?"]
_EXISTS_COLOR_SHAPE = ["Isn't there a {color} {shape}?", "Is a {color} {shape} there?", "Any {color} {pl}?",
                       "Do you {see} a {color} {shape} anywhere?", "A {color} {shape}: is there one?",
                       "Does the scene have a {color} {shape}?", "Aren't there any {color} {pl}?"]
_EXISTS_NOT_SHAPE = ["Is there anything that is not a {shape}?", "Is there any {obj} other than a {shape}?",
                     "Are there {objs} that aren't {pl}?", "Is every {obj} a {shape}?",
                     "Are there {objs} besides {pl}?"]
_EXISTS_NOT_COLOR = ["Is there anything that is not {color}?", "Is there any {obj} that isn't {color}?",
                     "Are there {objs} of a {cword} other than {color}?", "Is every {obj} {color}?",
                     "Are there {objs} besides the {color} ones?"]
_COLOR = ["What {cword} would you say the {ref} is?", "The {ref} has which {cword}?",
          "Which {cword} does the {ref} have?",
          "The {ref}: its {cword}?", "What's the {cword} of the {ref}?", "{Ref}, what {cword}?",
          "Name the {cword} of the {ref}.", "What {cword} has the {ref} got?"]
_SHAPE = ["What form is the {ref}?", "The {ref} has which shape?", "Which form does the {ref} have?",
          "The {ref}: its shape?", "What's the shape of the {ref}?", "{Ref}, what shape?",
          "Name the shape of the {ref}.", "What sort of figure is the {ref}?"]
_SIDE = ["Which side of the picture is the {ref} on?", "The {ref}: left or right?", "Left or right: the {ref}?",
         "Is the {ref} on the left-hand side or on the right-hand side?", "Where's the {ref}, left side or right side?",
         "On which side do you {see} the {ref}?", "The {ref} is on the left or the right?"]
_SIDE_YES_NO = ["Is the {ref} on the {side}?", "Is the {ref} in the {side} half?", "Is the {ref} {side}?",
                "Is the {ref} on the {side} side of the picture?", "Is the {ref} on the {side} hand side?"]
_HALF = ["Which half of the picture is the {ref} in?", "The {ref}: top or bottom?",
         "Top or bottom, the {ref} is where?",
         "Is the {ref} in the upper area or the lower area?", "Is the {ref} in the top part or the bottom part?",
         "Where's the {ref}, up or down?", "The {ref} is at the top or the bottom?", "Upper or lower: the {ref}?"]
_HALF_YES_NO = ["Is the {ref} at the {half}?", "Is the {ref} in the {half} half?", "Is the {ref} in the {half} part?"]
_OUT_OF_WORLD = ["Is there a {oc} {shape}?", "How many {oc} {objs} are there?", "Is there anything {oc}?",
                 "What color is the {os}?", "How many {ops} are there?", "Is there a {os}?",
                 "Is the {os} on the left or the right?", "Is the {os} at the top or the bottom?",
                 "What shape is the {oc} object?", "Count the {oc} {pl}.", "Do you {see} a {color} {os}?",
                 "Is the {ref} {oc}?", "How many {color} {ops} can you {see}?", "What {cword} is the {os}?"]

PHRASING_TYPES = ("count_all", "count_shape", "count_color", "count_not_color", "count_not_shape", "exists_shape",
                  "exists_color", "exists_color_shape", "exists_not_shape", "exists_not_color", "color", "shape",
                  "position_lr", "position_lr_yes_no", "position_tb", "position_tb_yes_no", "out_of_world")
_FAMILY = {"count_all": "count", "count_shape": "count", "count_color": "count", "count_not_color": "count",
           "count_not_shape": "count", "color": "color", "shape": "shape", "position_lr": "position",
           "position_lr_yes_no": "position", "position_tb": "position", "position_tb_yes_no": "position",
           "out_of_world": "other"}
# function words a typo may hit (never a colour, shape or number)
TYPO_TARGETS = frozenset({"how", "many", "is", "are", "there", "the", "what", "which", "a", "any", "you", "in",
                          "of", "on", "at", "do", "see", "picture", "image", "color", "colour"})


def _idx(scene: Scene, pred) -> tuple[int, ...]:
    return tuple(i for i, o in enumerate(scene.objects) if pred(o))


def _shape_word(rng: random.Random, shape: str) -> tuple[str, str]:
    """(singular, plural) for a shape: usually its own word, sometimes a synonym."""
    if shape in SHAPE_SYNONYMS and rng.random() < 0.35:
        syn = rng.choice(SHAPE_SYNONYMS[shape])
        return syn, SHAPE_SYNONYM_PLURALS[syn]
    return shape, SHAPE_PLURALS[shape]


def _words(rng: random.Random) -> dict[str, str]:
    objs = rng.choice(OBJECT_WORDS)
    return {"objs": objs, "Objs": objs.capitalize(), "obj": objs[:-1], "cword": rng.choice(COLOR_WORDS),
            "see": rng.choice(SEE_WORDS), "seen": rng.choice(["seen", "found", "spotted"])}


def _ref(scene: Scene, rng: random.Random, drop: str | None = None):
    options = [(o, d) for o in scene.objects for d in referring_expressions(scene, o)
               if not (drop == "color" and o.color in d.split() or drop == "shape" and o.shape in d.split())]
    return rng.choice(options) if options else None


def _fmt(template: str, **kw: str) -> str:
    kw = dict(kw)
    for k in list(kw):
        kw.setdefault(k.capitalize(), kw[k][:1].upper() + kw[k][1:])
    return template.format(**kw)


def phrased_question(scene: Scene, rng: random.Random, qtype: str | None = None) -> QA | None:
    """A question in a player's wording with its ground-truth answer, or None when `qtype` cannot be asked."""
    qtype = qtype or rng.choice(PHRASING_TYPES)
    objs = scene.objects
    w = _words(rng)
    have_shapes, have_colors = sorted({o.shape for o in objs}), sorted({o.color for o in objs})
    shape = rng.choice(have_shapes) if have_shapes and rng.random() < 0.65 else rng.choice(SHAPES)
    color = rng.choice(have_colors) if have_colors and rng.random() < 0.65 else rng.choice(list(COLORS))
    sw, spl = _shape_word(rng, shape)
    t = rng.choice
    fam = _FAMILY.get(qtype, "exists")

    def qa(text: str, answer: str, pred=lambda o: False) -> QA:
        return QA(text, answer, qtype, fam, _idx(scene, pred))

    if qtype == "count_all":
        return qa(_fmt(t(_COUNT_ALL), **w), str(len(objs)), lambda o: True)
    if qtype == "count_shape":
        return qa(_fmt(t(_COUNT_SHAPE), pl=spl, **w), str(sum(o.shape == shape for o in objs)),
                  lambda o: o.shape == shape)
    if qtype == "count_color":
        return qa(_fmt(t(_COUNT_COLOR), color=color, **w), str(sum(o.color == color for o in objs)),
                  lambda o: o.color == color)
    if qtype == "count_not_color":
        return qa(_fmt(t(_COUNT_NOT_COLOR), color=color, **w), str(sum(o.color != color for o in objs)),
                  lambda o: o.color != color)
    if qtype == "count_not_shape":
        return qa(_fmt(t(_COUNT_NOT_SHAPE), pl=spl, shape=sw, **w), str(sum(o.shape != shape for o in objs)),
                  lambda o: o.shape != shape)
    if qtype == "exists_shape":
        return qa(_fmt(t(_EXISTS_SHAPE), shape=sw, pl=spl, **w), "yes" if shape in have_shapes else "no",
                  lambda o: o.shape == shape)
    if qtype == "exists_color":
        return qa(_fmt(t(_EXISTS_COLOR), color=color, **w), "yes" if color in have_colors else "no",
                  lambda o: o.color == color)
    if qtype == "exists_color_shape":
        pairs = sorted({(o.color, o.shape) for o in objs})
        if pairs and rng.random() < 0.5:
            color, shape = t(pairs)
        sw, spl = _shape_word(rng, shape)
        yes = any(o.color == color and o.shape == shape for o in objs)
        return qa(_fmt(t(_EXISTS_COLOR_SHAPE), color=color, shape=sw, pl=spl, **w), "yes" if yes else "no",
                  lambda o: o.color == color and o.shape == shape)
    if qtype == "exists_not_shape":
        template = t(_EXISTS_NOT_SHAPE)
        other = any(o.shape != shape for o in objs)
        ans = ("no" if other else "yes") if "every" in template else ("yes" if other else "no")
        return qa(_fmt(template, shape=sw, pl=spl, **w), ans, lambda o: o.shape != shape)
    if qtype == "exists_not_color":
        template = t(_EXISTS_NOT_COLOR)
        other = any(o.color != color for o in objs)
        ans = ("no" if other else "yes") if "every" in template else ("yes" if other else "no")
        return qa(_fmt(template, color=color, **w), ans, lambda o: o.color != color)
    if qtype in ("color", "shape", "position_lr", "position_lr_yes_no", "position_tb", "position_tb_yes_no"):
        ref = _ref(scene, rng, {"color": "color", "shape": "shape"}.get(qtype))
        if ref is None:
            return None
        obj, desc = ref
        on = lambda o: o is obj  # noqa: E731
        if qtype == "color":
            return qa(_fmt(t(_COLOR), ref=desc, **w), obj.color, on)
        if qtype == "shape":
            return qa(_fmt(t(_SHAPE), ref=desc, **w), obj.shape, on)
        if qtype == "position_lr":
            return qa(_fmt(t(_SIDE), ref=desc, **w), obj.side, on)
        if qtype == "position_tb":
            return qa(_fmt(t(_HALF), ref=desc, **w), obj.half, on)
        if qtype == "position_lr_yes_no":
            side = t(["left", "right"])
            return qa(_fmt(t(_SIDE_YES_NO), ref=desc, side=side, **w), "yes" if obj.side == side else "no", on)
        half = t(["top", "bottom"])
        return qa(_fmt(t(_HALF_YES_NO), ref=desc, half=half, **w), "yes" if obj.half == half else "no", on)
    if qtype == "out_of_world":
        ref = _ref(scene, rng)
        ops = t(OUT_OF_WORLD_SHAPES)
        text = _fmt(t(_OUT_OF_WORLD), oc=t(OUT_OF_WORLD_COLORS), os=t(OUT_OF_WORLD_SHAPES), ops=ops + "s",
                    color=color, shape=sw, pl=spl, ref=ref[1] if ref else sw, **w)
        return qa(text, CANT_TELL)
    raise ValueError(f"unknown phrasing type {qtype!r}")


def typo(text: str, rng: random.Random, p: float = 0.25) -> str:
    """Misspell one function word (it reaches the model as the unknown token), vary case and
    punctuation: players type fast. Colour, shape and number words are left alone."""
    words = text.split(" ")
    hits = [i for i, wd in enumerate(words) if wd.lower().strip("?.,:!") in TYPO_TARGETS]
    if hits and rng.random() < p:
        i = rng.choice(hits)
        wd = words[i]
        core = wd.strip("?.,:!")
        if len(core) > 2:
            j = rng.randrange(len(core) - 1)
            bad = core[:j] + core[j + 1] + core[j] + core[j + 2:]  # swap two letters
        else:
            bad = core + core[-1]
        words[i] = wd.replace(core, bad)
    out = " ".join(words)
    r = rng.random()
    if r < 0.1:
        out = out.lower().rstrip("?.")
    elif r < 0.15:
        out = out.upper()
    elif r < 0.25:
        out = out.rstrip("?.") + rng.choice(["??", " ?", "?!", "...", ""])
    return out


def phrasing_words() -> set[str]:
    """Words of the training phrasings (for the vocabulary), without the out-of-world words."""
    texts = []
    for name, value in globals().items():
        if name.startswith("_") and not name.startswith("__") and isinstance(value, list) and value \
                and isinstance(value[0], str):
            texts += value
    texts += list(SYNONYM_OF) + list(OBJECT_WORDS) + list(COLOR_WORDS) + list(SEE_WORDS) + ["seen found spotted"]
    for shape, syns in SHAPE_SYNONYMS.items():
        texts += list(syns)
    texts += list(SHAPE_SYNONYM_PLURALS.values())
    texts += ["left right top bottom hand side non"]
    text = re.sub(r"\{\w+\}", " ", " ".join(texts))
    return set(_split(text))


def _split(text: str) -> list[str]:
    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    out = []
    for piece, _ in pre_tokenizers.Whitespace().pre_tokenize_str(norm.normalize_str(text)):
        out.append(piece)
    return out
