"""Does a model's free-text answer match one of an image's acceptable answers?

Why not string equality: annotations are VQA-style short answers ("2", "two",
"yes", "red car") while models answer in sentences ("There are 2 dogs.",
"Yes, there is a red car."). Measuring a model on annotated photographs
(SPEC §1.2: an imported image becomes reliable when measured against its
annotation question–answer pairs) needs a matcher that reads an ordinary
answer the way a person would, and errs on the side of "no match" whenever an
answer is ambiguous — a false match would put an image the model gets wrong
into the reliable pool, whose honest answers are gold for player reliability.

Rules, in order (the answer matches when any acceptable answer matches):
1. equal after VQA normalisation (case, punctuation, articles, number words,
   contractions): "Two." = "2", "The dog" = "dog";
2. yes/no: the answer's polarity — a leading yes/no word, else a negation
   anywhere ("there isn't", "no dogs") means no; "Yes, there is a red car."
   is yes, "No, there isn't." is no;
3. numbers: the answer names exactly one number (digits or words; "no"/"none"
   count as 0 when nothing else is named): "There are 2 dogs." = "2";
4. a phrase: the acceptable answer's words appear in order in an answer that
   has no negation and names no other number: "The car is red." = "red",
   but "The car is not red." ≠ "red".

>>> answer_matches("There are 2 dogs.", ["2", "two"])
True
>>> answer_matches("No, there isn't.", ["yes"])
False
"""
from __future__ import annotations

import re
from collections.abc import Iterable

NUMBER_WORDS = {
    "zero": 0, "none": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "a couple": 2, "a dozen": 12, "dozen": 12,
}
TENS = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}
UNITS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
YES_WORDS = {"yes", "yeah", "yep", "yup", "sure", "correct", "true", "indeed", "certainly", "definitely"}
NO_WORDS = {"no", "nope", "nah", "false"}
NEGATIONS = {"no", "not", "none", "never", "nothing", "nobody", "neither", "nor", "without", "cannot"}
ARTICLES = {"a", "an", "the"}
# Common English contractions (the VQA evaluation's list, shortened to what models write).
CONTRACTIONS = {
    "isnt": "is not", "arent": "are not", "wasnt": "was not", "werent": "were not", "dont": "do not",
    "doesnt": "does not", "didnt": "did not", "cant": "cannot", "couldnt": "could not", "wont": "will not",
    "wouldnt": "would not", "hasnt": "has not", "havent": "have not", "shouldnt": "should not",
    "theres": "there is", "its": "it is", "thats": "that is", "im": "i am", "theyre": "they are",
}
_PUNCT = re.compile(r"[^\w\s]")
_POINTING = ARTICLES | {"this", "that", "which", "each", "every", "another"}
_COUNT_CONTEXT = {"there", "is", "are", "only", "just", "exactly", "about", "maybe", "probably", "be", "see", "count"}
_DIGITS = re.compile(r"^\d+(?:\.\d+)?$")


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, contractions expanded ("Isn't it?" -> is not it),
    compound number words joined ("twenty-four" -> 24)."""
    s = (text or "").lower().replace("’", "'").replace("'", "")
    s = _PUNCT.sub(" ", s)
    out: list[str] = []
    for w in s.split():
        if w in UNITS and out and out[-1] in TENS:
            out[-1] = str(NUMBER_WORDS[out[-1]] + NUMBER_WORDS[w])
            continue
        out.extend(CONTRACTIONS.get(w, w).split())
    return out


def normalize(text: str) -> str:
    """VQA normalisation: words without articles, number words as digits ("Two dogs." -> "2 dogs")."""
    ws = [w for w in words(text) if w not in ARTICLES] or words(text)
    return " ".join(str(NUMBER_WORDS[w]) if w in NUMBER_WORDS and w != "none" else w for w in ws)


def polarity(text: str) -> str | None:
    """"yes", "no", or None when the answer takes no side."""
    ws = words(text)
    if not ws:
        return None
    if ws[0] in YES_WORDS:
        return "yes"
    if ws[0] in NO_WORDS or any(w in NEGATIONS for w in ws):
        return "no"
    return None


def _pronoun_one(ws: list[str], i: int) -> bool:
    """"the red one", "that one": "one" points at a thing rather than counting it."""
    if i == 0:
        return False
    return ws[i - 1] in _POINTING or (i == len(ws) - 1 and ws[i - 1] not in _COUNT_CONTEXT)


def numbers(text: str) -> set[float]:
    """The numbers an answer names (digits and number words; "no"/"none" alone mean 0)."""
    ws = words(text)
    found: set[float] = set()
    for i, w in enumerate(ws):
        pair = " ".join(ws[i:i + 2]) if i + 1 < len(ws) else ""
        if pair in NUMBER_WORDS:
            found.add(float(NUMBER_WORDS[pair]))
        elif w in NUMBER_WORDS and not (w == "one" and _pronoun_one(ws, i)):
            found.add(float(NUMBER_WORDS[w]))
        elif _DIGITS.match(w):
            found.add(float(w))
    if not found and any(w in ("no", "none", "zero") for w in ws):
        found.add(0.0)
    return found


def _as_number(text: str) -> float | None:
    norm = normalize(text)
    if _DIGITS.match(norm):
        return float(norm)
    return 0.0 if norm == "none" else None


def _phrase_in(phrase: list[str], ws: list[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(ws[i:i + n] == phrase for i in range(len(ws) - n + 1))


def matches_one(answer: str, acceptable: str) -> bool:
    """Whether `answer` says what the one acceptable answer says (rules of the module docstring)."""
    a_norm, ok_norm = normalize(answer), normalize(acceptable)
    if not a_norm or not ok_norm:
        return False
    if a_norm == ok_norm:
        return True
    if ok_norm in ("yes", "no"):
        return polarity(answer) == ok_norm
    target = _as_number(acceptable)
    if target is not None:
        return numbers(answer) == {target}
    a_words = a_norm.split()
    if any(w in NEGATIONS for w in words(answer)) or polarity(answer) == "no":
        return False
    named = numbers(answer) - numbers(acceptable)
    return not named and _phrase_in(ok_norm.split(), a_words)


def answer_matches(answer: str, acceptable: Iterable[str]) -> bool:
    """True when `answer` matches any of the acceptable answers (VQA style)."""
    return any(matches_one(answer, ok) for ok in acceptable)
