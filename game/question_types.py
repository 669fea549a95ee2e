"""A rule-based question-type classifier (count, color, shape, exists, position, text, other).

Why rules: the dataset card must report the question mix (the paper's data was
~77% counting) and the evaluation strata use it; players type free text, so the
labels come from the wording alone. The order of the rules matters: "how many
red circles" is a count, "is the red circle left of …" a position, "what colour
is the letter" a colour."""
from __future__ import annotations

import re

QUESTION_TYPES = ("count", "color", "shape", "exists", "position", "text", "other")

_COUNT = re.compile(
    r"\b(how many|how much|number of|count|amount of|total of|quantity)\b", re.I)
_TEXT = re.compile(
    r"\b(letter|letters|digit|digits|numeral|written|writing|text|word|label(?:led|ed)?|inscription|"
    r"character|what does .* say|say on|read)\b", re.I)
_COLOR = re.compile(r"\b(colou?rs?|colou?red|hue|shade)\b", re.I)
_SHAPE = re.compile(r"\b(what|which)\b.*\b(shape|kind of (?:object|shape|figure)|form)\b|\bshape of\b", re.I)
_POSITION = re.compile(
    r"\b(where|left|right|top|bottom|above|below|under|over|beneath|next to|beside|near|between|behind|"
    r"in front of|upper|lower|corner|cent(?:er|re)|middle|side|position|located|location)\b", re.I)
_EXISTS = re.compile(
    r"^\s*(is there|are there|is any|are any|does (?:the )?(?:image|picture|scene|photo) (?:have|contain|show)|"
    r"do you see|can you see|is a |is an |are |does it (?:have|contain|show)|any )", re.I)
_EXISTS_ANYWHERE = re.compile(r"\b(is there|are there|exist|exists|present|any)\b", re.I)


def classify_question(question: str) -> str:
    """The type of a free-text question about an image, one of QUESTION_TYPES."""
    q = " ".join(question.strip().split())
    if not q:
        return "other"
    if _COUNT.search(q):
        return "count"
    if _COLOR.search(q):
        return "color"
    if _TEXT.search(q):
        return "text"
    if _SHAPE.search(q):
        return "shape"
    if _POSITION.search(q):
        return "position"
    if _EXISTS.search(q) or _EXISTS_ANYWHERE.search(q):
        return "exists"
    return "other"


def normalise_type(qtype: str | None) -> str:
    """Map a generator's type name (e.g. models.scenes' "colour", "existence", "relation") onto QUESTION_TYPES."""
    if not qtype:
        return "other"
    t = qtype.lower()
    aliases = {
        "colour": "color", "color": "color", "shape": "shape", "count": "count", "counting": "count",
        "exists": "exists", "existence": "exists", "exist": "exists",
        "position": "position", "relation": "position", "relative": "position", "spatial": "position",
        "text": "text", "ocr": "text", "letter": "text", "digit": "text",
    }
    for prefix, name in aliases.items():
        if t.startswith(prefix):
            return name
    return "other"
