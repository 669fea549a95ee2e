"""Annotated and declared imports (SPEC §1.2): `gap images import DIR --annotations F.jsonl`
stores VQA-style question–answer pairs, `gap images reliable` measures the model on them,
`--reliable` declares a curated set; bad annotation lines get a reason each and cost only
their own image."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from game.annotations import QA, measure_on_annotations, parse_annotations
from game.tables import images
from gap.cli import main
from models.base import ModelAnswer
from tests.conftest import solid_png


class AnswerBook:
    """A VQAModel that answers in sentences from a fixed book, like a chatty real model."""

    model_id = "answer-book"

    def __init__(self, book: dict[str, str]):
        self.book = book

    async def answer(self, image: bytes, question: str, taint: bool) -> ModelAnswer:
        text = self.book.get(question, "I can't tell.")
        return ModelAnswer(honest=text, served=text, tainted=False, strategy=None, model_id=self.model_id,
                           latency_ms=0.0)


async def test_measuring_on_annotations_reads_sentences():
    qa = [QA("How many dogs are there?", ("2", "two")), QA("Is there a red car?", ("yes",)),
          QA("Is there a cat?", ("no",)), QA("What colour is the car?", ("blue",))]
    model = AnswerBook({"How many dogs are there?": "There are 2 dogs.",
                        "Is there a red car?": "Yes, there is a red car.",
                        "Is there a cat?": "No, there isn't.",
                        "What colour is the car?": "The car is red."})
    assert await measure_on_annotations(model, b"img", qa) == pytest.approx(0.75)


def test_every_bad_line_gets_its_own_reason():
    text = "\n".join([
        json.dumps({"file": "a.jpg", "qa": [{"question": "Is it red?", "answers": ["yes"]}]}),
        "{not json",
        json.dumps({"file": "b.jpg", "qa": [{"question": "Is it red?", "answers": []}]}),
        json.dumps({"file": "ghost.jpg", "qa": [{"question": "Is it red?", "answers": ["no"]}]}),
        json.dumps({"file": "c.jpg", "qa": [{"question": "How many?", "answers": ["1"]}]}),
        json.dumps({"file": "c.jpg", "qa": [{"question": "How many?", "answers": ["2"]}]}),
        json.dumps(["a list"]),
        json.dumps({"file": "d.jpg", "qa": []}),
        "",
        json.dumps({"file": "sub/e.jpg", "qa": [{"question": "Ünïcödé?", "answers": "ja"}]}),
    ])
    notes = parse_annotations(text, {"a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"})
    reasons = dict(notes.problems)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert "not JSON" in reasons[2]
    assert "non-empty list of acceptable answers" in reasons[3]
    assert "ghost.jpg: no such image file" in reasons[4]
    assert "named by 2 lines" in reasons[5] and "named by 2 lines" in reasons[6]
    assert "JSON object" in reasons[7] and '"qa" must be a non-empty list' in reasons[8]
    assert set(notes.by_file) == {"a.jpg", "e.jpg"} and notes.by_file["e.jpg"][0].answers == ("ja",)
    assert notes.bad_files == {"b.jpg": 3, "c.jpg": 5, "d.jpg": 8}


def stored(db_file: Path) -> dict[str, tuple]:
    engine = create_engine(f"sqlite:///{db_file}")
    with engine.connect() as conn:
        out = {r.source_name: r for r in conn.execute(select(
            images.c.source_name, images.c.annotations_json, images.c.model_accuracy, images.c.reliable,
            images.c.declared_reliable)).all()}
    engine.dispose()
    return out


def test_cli_annotations_measured_declared_and_bad_input(tmp_path: Path, monkeypatch, capsys):
    db_file = tmp_path / "gap.sqlite3"
    monkeypatch.setenv("GAP_DATABASE_URL", f"sqlite+aiosqlite:///{db_file}")
    monkeypatch.setenv("GAP_MODEL", "fake:0")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["easy.png", "hard.png", "broken_note.png", "plain.png"]):
        (photos / name).write_bytes(solid_png(i, 48))
    notes = tmp_path / "notes.jsonl"
    # The fake model answers yes/no questions with yes or no: accepting both makes "easy" always right.
    notes.write_text("\n".join([
        json.dumps({"file": "easy.png", "qa": [{"question": "Is there a dog?", "answers": ["yes", "no"]},
                                               {"question": "Is it sunny?", "answers": ["no", "yes"]}]}),
        json.dumps({"file": "hard.png", "qa": [{"question": "Is there a dog?", "answers": ["a purple elephant"]}]}),
        json.dumps({"file": "broken_note.png", "qa": [{"question": "Is there a dog?", "answers": []}]}),
        json.dumps({"file": "missing.png", "qa": [{"question": "Is there a dog?", "answers": ["yes"]}]}),
    ]) + "\n", encoding="utf-8")
    assert main(["images", "import", str(photos), "--annotations", str(notes)]) == 0
    out = capsys.readouterr().out
    assert "annotations line 3:" in out and "annotations line 4: missing.png: no such image file" in out
    assert "skipped   broken_note.png: its annotations are not valid (annotations line 3)" in out
    rows = stored(db_file)
    assert set(rows) == {"easy.png", "hard.png", "plain.png"} and rows["plain.png"].annotations_json is None
    assert json.loads(rows["easy.png"].annotations_json)["qa"][0]["answers"] == ["yes", "no"]

    assert main(["images", "reliable", "--threshold", "0.9"]) == 0
    rows = stored(db_file)
    assert rows["easy.png"].model_accuracy == 1.0 and rows["easy.png"].reliable
    assert rows["hard.png"].model_accuracy == 0.0 and not rows["hard.png"].reliable
    assert rows["plain.png"].model_accuracy is None and not rows["plain.png"].reliable

    # The operator's curated set: declared reliable, and a re-measurement keeps the declaration.
    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / "best.png").write_bytes(solid_png(9, 48))
    (curated / "hard-again.png").write_bytes(solid_png(1, 48))   # the same bytes as hard.png
    capsys.readouterr()
    assert main(["images", "import", str(curated), "--reliable"]) == 0
    assert "updated   hard-again.png" in capsys.readouterr().out
    assert main(["images", "reliable", "--threshold", "0.9"]) == 0
    rows = stored(db_file)
    assert rows["best.png"].declared_reliable and rows["best.png"].reliable
    assert rows["hard.png"].declared_reliable and rows["hard.png"].reliable and rows["hard.png"].model_accuracy == 0.0

    capsys.readouterr()
    assert main(["images", "stats"]) == 0
    out = capsys.readouterr().out
    assert "imported:photos: 2 of 3 reliable (declared 1/1, measured (annotations) 1/1, unknown 0/1)" in out
    assert "imported:curated: 1 of 1 reliable (declared 1/1)" in out

    # Nothing imported at all: a non-zero exit code, and nothing stored.
    capsys.readouterr()
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(solid_png(20, 48))
    bad_notes = tmp_path / "bad.jsonl"
    bad_notes.write_text('{"file": "x.png", "qa": "oops"}\n{"file": "x.png"\n', encoding="utf-8")
    assert main(["images", "import", str(only_bad), "--annotations", str(bad_notes)]) == 1
    captured = capsys.readouterr()
    assert "annotations line 1:" in captured.out and "annotations line 2: not JSON" in captured.out
    assert "nothing was imported" in captured.err
    assert "x.png" not in stored(db_file)
