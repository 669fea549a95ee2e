"""The one question classifier: the fine type of a free-text question, and its coarse family.

Why one: the answer vocabulary a tainted answer is drawn from (SPEC §1.2: "a count for a
count question"), the type stored with each answer, the evaluation's strata (§2) and the
dataset card's question mix (§3.1) must all call a question the same thing. The fine type
("count_color", "position_lr", ...) is what the scene generator asks and what picks an
answer vocabulary; the family ("count", "position", ...) is derived from it in one place,
`FAMILY`.

Why rules: players type free text, so the labels come from the wording alone. The order of
the rules matters: "how many red circles" is a count; "is the star on the left or the
right" a left/right choice even though it names a shape; "what colour is the letter" a
colour; "what is written on the red shape" text; "is the circle red" a yes/no check
(family "exists", answered yes or no) because it names a thing the picture can show, while
"is it raining" names nothing of the kind and stays "other".
"""
from __future__ import annotations

import re

# fine type -> family. The generator's types (models.scenes.QUESTION_TYPES) plus "where"
# (a place question that is neither a left/right nor a top/bottom choice: "Where is the star?").
FAMILY: dict[str, str] = {
    "count_all": "count", "count_shape": "count", "count_color": "count", "count_color_shape": "count",
    "color": "color", "shape": "shape",
    "exists_shape": "exists", "exists_color": "exists", "exists_color_shape": "exists",
    "position_lr": "position", "position_tb": "position", "relation": "position", "where": "position",
    "text": "text", "other": "other",
}
FINE_TYPES: tuple[str, ...] = tuple(FAMILY)
COARSE_TYPES: tuple[str, ...] = ("count", "color", "shape", "exists", "position", "text", "other")

# Words players use for the scene vocabulary (models.scenes.COLORS / SHAPES) and its near synonyms;
# tests check that every generator colour and shape is covered.
_COLOR_WORDS = ("red", "orange", "yellow", "green", "blue", "purple", "violet", "gray", "grey", "pink", "black",
                "white", "brown", "cyan", "magenta")
_SHAPE_WORDS = ("circle", "square", "triangle", "star", "diamond", "ball", "cube", "rhombus", "rectangle", "oval",
                "box", "dot")
_THING_WORDS = ("object", "shape", "thing", "item", "figure")


def _words(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(words) + r")(e?s)?\b")


_HAS_COLOR = _words(_COLOR_WORDS)
_HAS_SHAPE = _words(_SHAPE_WORDS)
_HAS_THING = _words(_SHAPE_WORDS + _THING_WORDS + ("anything", "something"))

_COUNT = re.compile(r"\b(how many|how much|number of|count|amount of|total of|quantity)\b")
_LR_CHOICE = re.compile(r"\bleft\b.{0,24}\bor\b.{0,24}\bright\b|\bright\b.{0,24}\bor\b.{0,24}\bleft\b|"
                        r"\b(which|what) side\b")
_TB_CHOICE = re.compile(r"\b(top|upper|high|higher)\b.{0,24}\bor\b.{0,24}\b(bottom|lower|low)\b|"
                        r"\b(bottom|lower|low)\b.{0,24}\bor\b.{0,24}\b(top|upper|high|higher)\b")
_COLOR = re.compile(r"\b(colou?rs?|colou?red|hue|shade)\b")
_TEXT = re.compile(r"\b(letters?|digits?|numerals?|written|writing|text|words?|label(?:l?ed)?|inscription|"
                   r"characters?|printed|symbols?|what does .* say|say on|read)\b")
_SHAPE = re.compile(r"\b(what|which)\b.*\b(shape|kind of (?:object|shape|figure)|form)\b|\bshape of\b")
_POSITION = re.compile(
    r"\b(where|left|right|top|bottom|above|below|under|over|beneath|next to|beside|near|between|behind|"
    r"in front of|upper|lower|higher|corner|cent(?:er|re)|middle|side|position|located|location)\b")
_LEFT_RIGHT = re.compile(r"\b(left|right)\b")
_TOP_BOTTOM = re.compile(r"\b(top|bottom|upper|lower|above|below|higher)\b")
_EXISTS = re.compile(
    r"^(is there|are there|is any|are any|does (?:the )?(?:image|picture|scene|photo) (?:have|contain|show)|"
    r"do you see|can you see|does it (?:have|contain|show)|any )|\b(is there|are there|exists?|present|any)\b")
_YES_NO = re.compile(r"^(is|are|do|does|did|can|could|was|were|has|have|had)\b")


def _clean(question: str) -> str:
    return " ".join((question or "").lower().replace("’", "'").split())


def _by_vocabulary(q: str, both: str, color: str, shape: str, neither: str) -> str:
    has_color, has_shape = bool(_HAS_COLOR.search(q)), bool(_HAS_SHAPE.search(q))
    if has_color and has_shape:
        return both
    return color if has_color else shape if has_shape else neither


def _position(q: str) -> str:
    if _YES_NO.search(q):
        return "relation"  # "Is the star above the circle?", "Is the square on the left?": yes or no
    lr, tb = bool(_LEFT_RIGHT.search(q)), bool(_TOP_BOTTOM.search(q))
    if lr != tb:
        return "position_lr" if lr else "position_tb"
    return "where"


def fine_type(question: str) -> str:
    """The fine type of a free-text question about an image, one of FINE_TYPES."""
    q = _clean(question)
    if not q:
        return "other"
    if _COUNT.search(q):
        return _by_vocabulary(q, "count_color_shape", "count_color", "count_shape", "count_all")
    if _LR_CHOICE.search(q):
        return "position_lr"
    if _TB_CHOICE.search(q):
        return "position_tb"
    if _COLOR.search(q):
        return "color"
    if _TEXT.search(q):
        return "text"
    if _SHAPE.search(q):
        return "shape"
    if _POSITION.search(q):
        return _position(q)
    if _EXISTS.search(q) or (_YES_NO.search(q) and (_HAS_COLOR.search(q) or _HAS_THING.search(q))):
        return _by_vocabulary(q, "exists_color_shape", "exists_color", "exists_shape", "exists_shape")
    return "other"


def family(fine: str) -> str:
    """The coarse type (one of COARSE_TYPES) of a fine type; unknown names are "other"."""
    return FAMILY.get(fine, "other")


def classify_question(question: str) -> str:
    """The coarse type of a free-text question, one of COARSE_TYPES (strata, dataset cards)."""
    return family(fine_type(question))
