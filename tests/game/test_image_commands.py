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
