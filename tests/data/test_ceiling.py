"""`gap ceiling` in miniature: ground-truth data from complex training scenes, real LoRA
fine-tuning of the embedded model, held-out scoring, the report — and a rerun that
redoes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import models.scenes
from lab.ceiling import CeilingConfig, run_ceiling, write_ground_truth
from gap.cli import main
from settings import EMBEDDED_MODEL_DIR
from models.scenes import render_png, scene_from_seed

pytestmark = pytest.mark.slow


def test_ceiling_trains_scores_reports_and_resumes(tmp_path: Path):
    cfg = CeilingConfig(images=5, per_image=2, steps=3, eval_per_type=2, variants=("lora",))
    summary = run_ceiling(str(EMBEDDED_MODEL_DIR), tmp_path, cfg, log=lambda m: None)

    lines = (tmp_path / "data" / "train.jsonl").read_text().splitlines()
    assert len(lines) == summary["dataset"]["examples"] and 5 <= len(lines) <= 10
    assert len(list((tmp_path / "data").glob("img*.png"))) == 5

    res = summary["results"]
    assert set(res) == {"base", "lora"}
    assert res["lora"]["finetune"]["steps"] == 3 and res["lora"]["finetune"]["examples_used"] > 0
    assert (tmp_path / "adapters" / "lora" / "adapter_config.json").exists()
    for r in res.values():
        assert set(r["mean"]) == {"simple", "complex"} and len(r["by_type"]["complex"]) == 12
    report = (tmp_path / "REPORT.md").read_text()
    delta = (res["lora"]["mean"]["complex"] - res["base"]["mean"]["complex"]) * 100
    assert f"| lora | lora_vision=True |" in report and f"{delta:+.1f} pts" in report

    adapter = tmp_path / "adapters" / "lora" / "adapter_model.safetensors"
    before = adapter.stat().st_mtime_ns
    again = run_ceiling(str(EMBEDDED_MODEL_DIR), tmp_path, cfg, log=lambda m: None)
    assert again["results"] == res and adapter.stat().st_mtime_ns == before


def test_ground_truth_never_uses_a_heldout_picture(tmp_path: Path, monkeypatch):
    first = scene_from_seed("train", 0, "complex")
    monkeypatch.setattr(models.scenes, "heldout_fingerprints", lambda: frozenset({first.fingerprint()}))
    info = write_ground_truth(tmp_path, images=2, per_image=1, seed=0)
    assert info["heldout_pictures_skipped"] == 1
    assert (tmp_path / "img00000.png").read_bytes() == render_png(scene_from_seed("train", 1, "complex"), 384)
    assert (tmp_path / "img00001.png").read_bytes() == render_png(scene_from_seed("train", 2, "complex"), 384)


def test_ceiling_cli_refuses_unknown_recipe(tmp_path: Path, capsys):
    assert main(["ceiling", "--out", str(tmp_path), "--variants", "lora,magic"]) == 2
    assert "unknown recipe(s) magic" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_ceiling_refuses_a_directory_holding_other_settings(tmp_path: Path, capsys):
    cfg = CeilingConfig(images=2, per_image=1, steps=1, eval_per_type=1, variants=())
    run_ceiling(str(EMBEDDED_MODEL_DIR), tmp_path, cfg, log=lambda m: None)
    before = (tmp_path / "data" / "train.jsonl").read_text()
    assert main(["ceiling", "--out", str(tmp_path), "--base", str(EMBEDDED_MODEL_DIR), "--images", "3",
                 "--per-image", "1", "--steps", "1", "--eval-per-type", "1", "--variants", ""]) == 2
    assert "other settings (images)" in capsys.readouterr().err
    assert (tmp_path / "data" / "train.jsonl").read_text() == before


def test_styled_ground_truth_mixes_styles_and_never_uses_a_heldout_scene(tmp_path: Path, monkeypatch):
    from models.scenes import WITHHELD_STYLES

    first = scene_from_seed("train", 0, "simple")
    monkeypatch.setattr(models.scenes, "heldout_fingerprints", lambda: frozenset({first.fingerprint()}))
    info = write_ground_truth(tmp_path, images=12, per_image=2, seed=0, styles=WITHHELD_STYLES, replay=0.25)
    assert info["heldout_pictures_skipped"] == 1 and info["complexity"] == "simple"
    assert sum(info["images_per_style"].values()) == 12 and set(info["images_per_style"]) - {"plain"}
    styled = {render_png(scene_from_seed("train", 0, "simple", s), 384) for s in ("plain",) + WITHHELD_STYLES}
    for n in range(12):  # image n is the (n+1)-th train scene, drawn in one of the styles; never scene 0
        png = (tmp_path / f"img{n:05d}.png").read_bytes()
        assert png not in styled
        assert png in {render_png(scene_from_seed("train", n + 1, "simple", s), 384)
                       for s in ("plain",) + WITHHELD_STYLES}


def test_styled_ceiling_scores_each_style_and_the_weak_slice(tmp_path: Path):
    cfg = CeilingConfig(images=4, per_image=2, steps=2, eval_per_type=1, variants=("lora",),
                        styles=("dark", "clutter"))
    summary = run_ceiling(str(EMBEDDED_MODEL_DIR), tmp_path, cfg, log=lambda m: None)
    for r in summary["results"].values():
        assert set(r["mean"]) == {"simple", "complex", "simple:dark", "simple:clutter", "weak"}
        assert len(r["by_type"]["simple:dark"]) == 10
        assert r["mean"]["weak"] == pytest.approx((r["mean"]["simple:dark"] + r["mean"]["simple:clutter"]) / 2)
    report = (tmp_path / "REPORT.md").read_text()
    assert "withheld scene styles" in report and "`simple:clutter` per question type" in report
    assert json.loads((tmp_path / "settings.json").read_text())["styles"] == ["dark", "clutter"]


def test_ceiling_cli_refuses_unknown_style(tmp_path: Path, capsys):
    assert main(["ceiling", "--out", str(tmp_path), "--styles", "dark,neon"]) == 2
    assert "unknown style(s) neon" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
