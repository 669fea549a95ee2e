"""`gap images generate|reliable|import` through the real CLI entry point."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, select

from gap.cli import main
from game.tables import images
from tests.game.test_images import jpeg_with_exif


def rows(db_file: Path):
    engine = create_engine(f"sqlite:///{db_file}")
    with engine.connect() as conn:
        out = conn.execute(select(images.c.complexity, images.c.scene_json, images.c.model_accuracy,
                                  images.c.reliable, images.c.mime, images.c.pool)).all()
    engine.dispose()
    return out


def test_generate_measure_and_import(tmp_path: Path, monkeypatch, capsys):
    db_file = tmp_path / "cli.sqlite3"
    monkeypatch.setenv("GAP_DATABASE_URL", f"sqlite+aiosqlite:///{db_file}")
    monkeypatch.setenv("GAP_MODEL", "fake:0")
    assert main(["images", "generate", "12", "--seed", "5", "--no-measure"]) == 0
    got = rows(db_file)
    assert len(got) == 12 and {r.complexity for r in got} == {"simple", "complex"}
    assert all(json.loads(r.scene_json)["objects"] for r in got) and not any(r.reliable for r in got)
    assert main(["images", "generate", "12", "--seed", "5", "--no-measure"]) == 0  # same seeds: nothing new
    assert "generated 0 scenes (12 already present)" in capsys.readouterr().out
    # Threshold 0: every measured image is reliable; threshold above 1: none.
    assert main(["images", "reliable", "--threshold", "0", "--questions", "3"]) == 0
    got = rows(db_file)
    assert all(r.reliable and r.model_accuracy is not None for r in got)
    assert main(["images", "reliable", "--threshold", "1.01", "--questions", "3"]) == 0
    assert not any(r.reliable for r in rows(db_file))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "ok.jpg").write_bytes(jpeg_with_exif((50, 40)))
    (photos / "bad.jpg").write_bytes(b"\xff\xd8 nope")
    capsys.readouterr()
    assert main(["images", "import", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "imported  ok.jpg" in out and "skipped   bad.jpg" in out and "imported 1, duplicates 0, skipped 1" in out
    imported = [r for r in rows(db_file) if r.pool == "imported:photos"]
    assert len(imported) == 1 and imported[0].scene_json is None
    assert main(["images", "reliable", "--threshold", "0", "--questions", "2"]) == 0
    assert not [r for r in rows(db_file) if r.pool == "imported:photos" and r.reliable]  # no ground truth


class CountingModel:
    """The fake model, counting its answers; from the `fail_after`-th answer on it fails like a
    model process that dies (or a Ctrl-C) in the middle of a measurement."""

    def __init__(self, fail_after: int | None = None):
        from models.fake import FixedLatencyModel

        self.inner = FixedLatencyModel(0.0)
        self.model_id = self.inner.model_id
        self.calls = 0
        self.fail_after = fail_after

    async def answer(self, image: bytes, question: str, taint: bool):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("the model process died")
        return await self.inner.answer(image, question, taint)


async def test_an_interrupted_measurement_resumes_where_it_stopped(tmp_path: Path, db):
    import pytest

    from gap.commands.images import generate_pool, measure_accuracies, measure_reliability

    await generate_pool(db, 12, seed=5)
    reference = await measure_accuracies(db, CountingModel(), questions=3)
    journal = tmp_path / "measure.jsonl"

    with pytest.raises(RuntimeError, match="died"):
        await measure_reliability(db, CountingModel(fail_after=16), questions=3, concurrency=2,
                                  journal_path=journal)
    kept = len(journal.read_text().splitlines()) - 1  # after the header
    assert 1 <= kept < 12
    async with db.read() as conn:  # the pool is untouched until the pass completes
        assert (await conn.execute(select(images.c.id).where(images.c.model_accuracy.is_not(None)))).all() == []

    model = CountingModel()
    result = await measure_reliability(db, model, questions=3, threshold=0.5, journal_path=journal)
    assert model.calls == 3 * (12 - kept)  # only the images the journal did not hold
    async with db.read() as conn:
        stored = dict((await conn.execute(select(images.c.id, images.c.model_accuracy))).all())
    assert stored == reference and result["measured"] == 12  # the same numbers as one uninterrupted pass
    assert not journal.exists()

    # a journal of another measurement (other question count) is not mixed in
    with pytest.raises(RuntimeError):
        await measure_reliability(db, CountingModel(fail_after=9), questions=3, concurrency=1, journal_path=journal)
    model = CountingModel()
    await measure_reliability(db, model, questions=2, journal_path=journal)
    assert model.calls == 2 * 12


def test_generate_a_pool_with_withheld_styles(tmp_path: Path, monkeypatch, capsys):
    """The game's own pool can serve the styled pictures the embedded model never trained on; a pool
    without --styles is the pool drawn before styles existed (styles use their own random stream)."""
    from models.scenes import Scene, render_png, scene_from_seed

    plain_db, styled_db = tmp_path / "plain.sqlite3", tmp_path / "styled.sqlite3"
    monkeypatch.setenv("GAP_MODEL", "fake:0")
    monkeypatch.setenv("GAP_DATABASE_URL", f"sqlite+aiosqlite:///{plain_db}")
    assert main(["images", "generate", "40", "--seed", "5", "--no-measure"]) == 0
    monkeypatch.setenv("GAP_DATABASE_URL", f"sqlite+aiosqlite:///{styled_db}")
    assert main(["images", "generate", "40", "--seed", "5", "--no-measure", "--styles", "dark=0.3,clutter=0.2"]) == 0
    plain = [Scene.from_json(r.scene_json) for r in rows(plain_db)]
    styled = [Scene.from_json(r.scene_json) for r in rows(styled_db)]
    assert {s.style for s in plain} == {"plain"}
    by_style = {st: [s for s in styled if s.style == st] for st in ("plain", "dark", "clutter")}
    assert by_style["dark"] and by_style["clutter"] and len(by_style["plain"]) > 10
    assert all(s.complexity == "simple" for st in ("dark", "clutter") for s in by_style[st])
    # the same pool seed draws the same objects; only the styled images differ from the plain pool
    assert {s.seed for s in by_style["plain"]} <= {s.seed for s in plain}
    one = by_style["dark"][0]
    stored = {r.scene_json: r for r in rows(styled_db)}
    assert one == scene_from_seed("pool", one.seed - 2_000_000_000, "simple", "dark")
    # a styled image is its own stratum for the crowd's error rate (SPEC §2)
    assert stored[one.to_json()].complexity == "simple:dark" and render_png(one, 64) != render_png(one.styled("plain"), 64)
    capsys.readouterr()
    for bad, why in (("neon=0.1", "unknown pool style 'neon'"), ("dark", "needs a share"),
                     ("dark=0.7,clutter=0.5", "more than 1"), ("dark=0.1,dark=0.2", "given twice"),
                     ("plain=0.5", "unknown pool style 'plain'")):
        assert main(["images", "generate", "3", "--no-measure", "--styles", bad]) == 2
        assert why in capsys.readouterr().err
    assert len(rows(styled_db)) == 40
