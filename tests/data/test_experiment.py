"""The closed loop end to end, in miniature: the real server on a local port with the
embedded model, simulated players over HTTP, evaluation, exports, LoRA fine-tuning,
held-out scoring and the report — and a rerun resumes from the stage markers."""
from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from lab.experiment import ARMS, Experiment, ExperimentConfig, ExperimentMismatch
from settings import EMBEDDED_MODEL_DIR

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (EMBEDDED_MODEL_DIR / "config.json").exists(), reason="the embedded checkpoint is not built")
def test_small_closed_loop_runs_and_resumes(tmp_path: Path):
    cfg = ExperimentConfig.small(pool_images=24, players=6, sessions=1, eval_per_type=3, ft_max_steps=4,
                                 ft_min_steps=2, image_seconds=1.0, pool_styles=(("dark", 0.25),),
                                 replay_images=2)
    logs: list[str] = []
    results = Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), cfg, log=logs.append).run()
    assert results["simulate"]["n_errors"] == 0 and results["simulate"]["sessions"] == 6
    assert results["simulate"]["answers"] >= 60
    ev = results["evaluate"]
    assert ev["finds"] > 0 and ev["players_by_kind"]
    assert results["heldout"]["heldout_scenes_in_training"] == 0
    held = results["heldout"]["models"]
    # the pool's withheld style is scored as the held-out weak slice
    assert "base" in held and set(held["base"]["mean"]) == {"simple", "complex", "simple:dark", "weak"}
    assert results["heldout"]["weak_slices"] == ["simple:dark"] and len(held["base"]["by_type"]["simple:dark"]) == 10
    assert any(k.startswith("simple:dark") for k in results["pool"]["mean_accuracy"])
    trained = [a for a in ARMS if (tmp_path / "adapters" / a / "adapter_config.json").exists()]
    assert "truth" in trained and all(a in held for a in trained)
    for arm in ARMS:
        assert (tmp_path / "arms" / arm / "README.md").exists()
    # replay: every trained arm is fine-tuned on its own examples plus the same true pairs on plain complex scenes
    replay = (tmp_path / "replay" / "train.jsonl").read_text().splitlines()
    combined = (tmp_path / "arms-replay" / "truth" / "train.jsonl").read_text().splitlines()
    own = (tmp_path / "arms" / "truth" / "train.jsonl").read_text().splitlines()
    assert replay and len(combined) == len(own) + len(replay)
    assert all((tmp_path / "arms-replay" / "truth" / json.loads(line)["image"]).exists() for line in combined)
    report = (tmp_path / "REPORT.md").read_text()
    assert "| precision of exported finds" in report and "| base |" in report
    assert (tmp_path / "accuracy.png").exists() and (tmp_path / "weak_gain.png").exists()
    assert "## The weak slice" in report and "| weak slice +10 pts after GAP fine-tuning |" in report
    assert f"Replay: every trained arm also saw the same {len(replay)} pairs on" in report and "true answers" in report
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert len(truth["players"]) == 6
    # resumable: a second run does no work and reports the same numbers
    logs.clear()
    again = Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), cfg, log=logs.append).run()
    assert all("done earlier" in line for line in logs)
    assert again["heldout"] == results["heldout"]
    # the GAP arm as the finds alone (`gap export`), on the same simulation: fewer examples, all corrections
    finds_dir = tmp_path / "finds"
    shutil.copytree(tmp_path, finds_dir, ignore=lambda d, names: [
        n for n in names if Path(d) == tmp_path and (n in ("finds", "adapters", "REPORT.md") or n.startswith("arms"))])
    for name in ("arms", "finetune", "heldout", "report", "config"):
        for path in (finds_dir / "stages" / f"{name}.done", finds_dir / f"{name}.json"):
            path.unlink(missing_ok=True)
    # (θ = 0 here: a run this small exports few finds at 0.8, sometimes none; the truth arm is trained
    # too, so the replay is always written)
    # (--train-strata simple: every arm leaves out the complex scenes, as `gap export --strata simple`)
    finds_cfg = dataclasses.replace(cfg, gap_arm="finds", trained_arms=("gap", "truth"), theta=0.0,
                                    replay_simple_images=2, train_strata=("simple",), curve_fractions=(0.5,),
                                    replay_target="base")
    finds = Experiment(finds_dir, str(EMBEDDED_MODEL_DIR), finds_cfg, log=logs.append).run()
    simple_replay = (finds_dir / "replay-simple" / "train.jsonl").read_text().splitlines()
    trained_on = (finds_dir / "arms-replay" / "truth" / "train.jsonl").read_text().splitlines()
    assert simple_replay and set(simple_replay) != set(replay)
    # --replay-target base: the replay's questions with the base model's own answers (self-distillation)
    for folder, truth_lines in (("replay", replay), ("replay-simple", simple_replay)):
        distilled = [json.loads(line) for line in (finds_dir / f"{folder}-base" / "train.jsonl").read_text().splitlines()]
        truths = [json.loads(line) for line in truth_lines]
        assert [d["question"] for d in distilled] == [t["question"] for t in truths]
        assert all((finds_dir / f"{folder}-base" / d["image"]).resolve() == (finds_dir / folder / t["image"]).resolve()
                   for d, t in zip(distilled, truths))
        info = json.loads((finds_dir / f"{folder}-base" / "dataset.json").read_text())
        assert info["agrees_with_truth"] == sum(d["answer"] == t["answer"] for d, t in zip(distilled, truths)) / len(truths)
    assert [json.loads(line)["answer"] for line in trained_on[-len(distilled):]] == [d["answer"] for d in distilled]
    assert "with the base model's own answers" in (finds_dir / "REPORT.md").read_text()
    own_simple = (finds_dir / "arms" / "truth" / "train.jsonl").read_text().splitlines()
    assert len(trained_on) == len(own_simple) + len(replay) + len(simple_replay) and len(own_simple) < len(own)
    assert json.loads((finds_dir / "replay-simple" / "dataset.json").read_text())["complexity"] == "simple"
    gap_finds = [json.loads(line) for line in (finds_dir / "arms" / "gap" / "train.jsonl").read_text().splitlines()]
    assert all(r["correct_answer"] != r["model_answer"] for r in gap_finds)     # corrections only: no confirmations
    assert ("gap" in finds["heldout"]["models"]) == bool(gap_finds)
    assert "(`gap export`)" in (finds_dir / "REPORT.md").read_text()
    with sqlite3.connect(finds_dir / "gap.sqlite3") as con:
        stratum = dict(con.execute("select opaque_id, complexity from images"))
    arm_strata = {arm: {stratum[Path(json.loads(line)["image"]).stem]
                        for line in (finds_dir / "arms" / arm / "train.jsonl").read_text().splitlines()}
                  for arm in ("truth", "gap")}
    assert arm_strata["truth"] == {"simple", "simple:dark"}     # the pool's complex scenes are left out
    assert arm_strata["gap"] <= {"simple", "simple:dark"} and "complex" in stratum.values()
    assert "only pool images of the strata simple" in (finds_dir / "REPORT.md").read_text()
    # the learning curve: the GAP arm also trained on its first half, scored on the weak slice
    points = finds.get("curve", {}).get("points", {})
    if gap_finds:
        (half,) = points["gap"]
        assert half["examples"] == max(1, round(len(gap_finds) / 2)) and set(half["by_type"]) == {"simple:dark"}
        curve_data = (finds_dir / "arms-replay" / "curve" / f"gap-{half['examples']}" / "train.jsonl")
        assert len(curve_data.read_text().splitlines()) == half["examples"] + len(replay) + len(simple_replay)
        assert "Learning curve:" in (finds_dir / "REPORT.md").read_text()
    assert "random" not in points    # not a trained arm here
    # a setting added after a run began counts as its default: the run still resumes
    stored = json.loads((tmp_path / "config.json").read_text())
    stored.pop("train_strata")
    (tmp_path / "config.json").write_text(json.dumps(stored))
    Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), cfg)
    # a run with other settings in the same directory would mix two runs into one report: refused
    with pytest.raises(ExperimentMismatch, match="players"):
        Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), ExperimentConfig.small(
            pool_images=24, players=7, sessions=1, eval_per_type=3, ft_max_steps=4, ft_min_steps=2, image_seconds=1.0,
            pool_styles=(("dark", 0.25),), replay_images=2))
