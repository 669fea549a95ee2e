"""Tainting helpers shared by the backends (SPEC §1.2).

Why here: whatever produces the wrong answer (constrained decoding or an
instruction), the same rules decide whether it may be served: it must be of
the question's type (a count for a count question), differ from the honest
answer after normalisation, and never reveal that it was asked to be wrong.
"""
from __future__ import annotations

import re

from models.question_types import fine_type
from models.scenes import CANT_TELL, answer_vocabulary, normalize_answer

# An instruction for instruction-following models (strategy "prompt").
TAINT_INSTRUCTION = (
    "You are playing a guessing game. Answer the user's question about the image with a short answer "
    "that is wrong but plausible: the same kind of answer as the true one (a different number for a count, "
    "a different colour for a colour, the opposite for a yes/no question). Reply with the answer only. "
    "Never say or hint that the answer is wrong, that you were instructed, or that this is a game."
)
HONEST_INSTRUCTION = "Answer the question about the image with a short, correct answer (a word or a number)."

_LEAK = re.compile(
    r"\b(i\s*(?:was|am|have been|['’]m|['’]ve been)\s+(?:told|instructed|asked|supposed)|told to|instruct\w*|"
    r"incorrect\w*|deliberate\w*|on purpose|intentional\w*|wrong|lie|lies|lying|lied|pretend\w*|"
    r"supposed to|not (?:the )?(?:true|real|correct|right)|trick\w*|mislead\w*|deceiv\w*|fake|"
    r"system prompt|as requested|guessing game|game)\b",
    re.IGNORECASE,
)


def reveals_instruction(text: str) -> bool:
    """True when an answer mentions the instruction to be wrong ("I was told...", "incorrect", ...)."""
    return bool(_LEAK.search(text or ""))


def _family_of_answer(answer: str) -> str | None:
    norm = normalize_answer(answer)
    for qtype in ("count_all", "color", "shape", "exists_shape", "position_lr", "position_tb"):
        if norm in {normalize_answer(v) for v in answer_vocabulary(qtype)}:
            return qtype
    return None


def plausible_answers(question: str, honest: str) -> list[str]:
    """Answers of the same type as the honest one (or as the question, when the honest one has no type).

    None when the model honestly cannot tell: off-topic and injection questions then get the honest
    "I can't tell" rather than a guess of the wrong kind."""
    if normalize_answer(honest) == normalize_answer(CANT_TELL):
        return []
    qtype = fine_type(question)
    by_answer = _family_of_answer(honest)
    if by_answer == "exists_shape" and qtype == "relation":
        by_answer = "relation"
    if by_answer is not None and (qtype == "other" or normalize_answer(honest) != normalize_answer(CANT_TELL)):
        if by_answer in ("position_lr", "position_tb") and qtype in ("position_lr", "position_tb"):
            by_answer = qtype
        return answer_vocabulary(by_answer)
    return answer_vocabulary(qtype)


def alternatives(question: str, honest: str) -> list[str]:
    """Plausible answers that differ from the honest one after normalisation."""
    h = normalize_answer(honest)
    out, seen = [], set()
    for cand in plausible_answers(question, honest):
        n = normalize_answer(cand)
        if n != h and n not in seen:
            seen.add(n)
            out.append(cand)
    return out


def acceptable_taint(question: str, honest: str, tainted: str | None) -> bool:
    """May `tainted` be served instead of `honest`? Different, type-plausible, no leak, not empty."""
    if not tainted or not tainted.strip() or reveals_instruction(tainted):
        return False
    n = normalize_answer(tainted)
    if not n or n == normalize_answer(honest):
        return False
    vocab = plausible_answers(question, honest)
    if vocab and n not in {normalize_answer(v) for v in vocab}:
        return False
    return True


def clean_answer(text: str, limit: int = 200) -> str:
    """Trimmed, single-line answer; an empty one becomes "I can't tell"."""
    s = " ".join((text or "").split())
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s or CANT_TELL
