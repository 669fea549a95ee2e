"""Annotations of imported images: VQA-style question–answer pairs that make an
image measurable (SPEC §1.2: an imported image becomes reliable when the model's
answers to its annotation questions are right often enough).

The file is JSON Lines, one line per image file:

    {"file": "dog.jpg", "qa": [{"question": "How many dogs are there?", "answers": ["2", "two"]}]}

Why per-line reasons rather than one error: a deployer writes these by hand,
and one typo should name its line, not hide which of 500 lines is wrong. A
line that is wrong costs its own image (it is not imported half-annotated);
the other lines go on.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from game.answer_matching import answer_matches

MAX_QUESTION = 300
MAX_ANSWER = 200
MAX_QA = 100
MAX_LINE = 100_000


@dataclass(frozen=True)
class QA:
    """One annotation question and its acceptable answers (any of them is right)."""

    question: str
    answers: tuple[str, ...]


@dataclass
class Annotations:
    """A parsed annotations file: the good lines by file name, and a reason per bad line."""

    by_file: dict[str, list[QA]] = field(default_factory=dict)
    line_of: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)   # (line number, reason)
    bad_files: dict[str, int] = field(default_factory=dict)         # named by a bad line -> its line: not imported

    def record(self, name: str) -> str | None:
        """The JSON stored with an image (None when the file has no annotation)."""
        qa = self.by_file.get(name)
        if qa is None:
            return None
        return json.dumps({"file": name, "qa": [{"question": x.question, "answers": list(x.answers)} for x in qa]},
                          ensure_ascii=False)


def _clean_str(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    text = value.strip()
    if len(text) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    return text


def parse_qa(record: Any) -> tuple[str, list[QA]]:
    """(file name, questions) of one line's JSON value; ValueError with the reason otherwise."""
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object with \"file\" and \"qa\"")
    name = record.get("file", record.get("image", record.get("file_name")))
    name = _clean_str(name, '"file"', 512)
    qa = record.get("qa")
    if not isinstance(qa, list) or not qa:
        raise ValueError('"qa" must be a non-empty list of {"question", "answers"}')
    if len(qa) > MAX_QA:
        raise ValueError(f'"qa" has more than {MAX_QA} questions')
    out = []
    for i, item in enumerate(qa, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"qa #{i} must be an object with \"question\" and \"answers\"")
        question = _clean_str(item.get("question"), f"qa #{i}: \"question\"", MAX_QUESTION)
        answers = item.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers:
            raise ValueError(f"qa #{i}: \"answers\" must be a non-empty list of acceptable answers")
        out.append(QA(question, tuple(_clean_str(a, f"qa #{i}: an answer", MAX_ANSWER) for a in answers)))
    return PurePath(name).name, out


def parse_annotations(text: str, available: set[str]) -> Annotations:
    """Parse a JSON Lines annotations file against the file names being imported.

    Bad lines (not JSON, wrong shape, empty answers, a file that is not being imported,
    a file named twice) get a reason each; a file named by a bad line is in `bad_files`,
    so the importer skips it instead of storing it without its annotations."""
    result = Annotations()
    named: Counter[str] = Counter()
    parsed: list[tuple[int, str, list[QA]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            result.problems.append((number, f"line longer than {MAX_LINE} characters"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            result.problems.append((number, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        try:
            name, qa = parse_qa(record)
        except ValueError as exc:
            if isinstance(record, dict) and isinstance(record.get("file"), str) and record["file"].strip():
                result.bad_files.setdefault(PurePath(record["file"].strip()).name, number)
            result.problems.append((number, str(exc)))
            continue
        named[name] += 1
        parsed.append((number, name, qa))
    for number, name, qa in parsed:
        if named[name] > 1:
            result.problems.append((number, f"{name} is named by {named[name]} lines; keep one"))
            result.bad_files.setdefault(name, number)
        elif name not in available:
            result.problems.append((number, f"{name}: no such image file among those imported"))
        else:
            result.by_file[name] = qa
            result.line_of[name] = number
    result.problems.sort()
    return result


def stored_qa(annotations_json: str | None) -> list[QA]:
    """The questions stored with an image (none for an image without usable annotations)."""
    if not annotations_json:
        return []
    try:
        return parse_qa(json.loads(annotations_json))[1]
    except (ValueError, TypeError):
        return []


async def measure_on_annotations(model: Any, image: bytes, qa: list[QA]) -> float:
    """The share of annotation questions the model answers right (honest answers, any
    acceptable answer counts: game/answer_matching.py). `model` is any models.base.VQAModel."""
    replies = await asyncio.gather(*(model.answer(image, item.question, taint=False) for item in qa))
    return sum(answer_matches(r.honest, item.answers) for r, item in zip(replies, qa)) / max(1, len(qa))
