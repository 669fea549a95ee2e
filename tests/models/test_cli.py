"""`gap model ask` and `gap model-eval` through the real CLI entry point."""
from __future__ import annotations

import json

from gap.cli import main
from models.scenes import render_png, scene_from_seed


def test_model_ask_json(tmp_path, capsys):
    img = tmp_path / "scene.png"
    img.write_bytes(render_png(scene_from_seed("heldout", 2, "simple")))
    assert main(["model", "ask", str(img), "Is there a circle?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"honest", "tainted"}
    assert out["honest"] in ("yes", "no") and out["tainted"] in ("yes", "no")
    assert out["tainted"] != out["honest"] and out["was_tainted"] is True


def test_model_ask_plain_and_bad_image(tmp_path, capsys):
    img = tmp_path / "scene.png"
    img.write_bytes(render_png(scene_from_seed("heldout", 2, "simple")))
    assert main(["model", "ask", str(img), "How many objects are there?"]) == 0
    text = capsys.readouterr().out
    assert "honest:" in text and "tainted:" in text
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["model", "ask", str(bad), "How many?"]) == 1
    assert "not a decodable image" in capsys.readouterr().err
    assert main(["model", "ask", str(tmp_path / "missing.png"), "How many?"]) == 2


def test_model_eval_json(capsys):
    assert main(["model-eval", "--n", "4", "--types", "count_all,exists_shape", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"simple", "complex"}
    for table in out.values():
        assert set(table) == {"count_all", "exists_shape"}
        assert all(0.0 <= v <= 1.0 for v in table.values())


def test_model_eval_table(capsys):
    assert main(["model-eval", "--n", "3", "--types", "color"]) == 0
    text = capsys.readouterr().out
    assert "color" in text and "simple" in text and "complex" in text and "%" in text
