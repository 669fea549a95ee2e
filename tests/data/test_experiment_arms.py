"""The experiment's random arm (SPEC §3.2): as many examples as the GAP arm, on the same
images, with uniformly drawn questions and their true answers — so the arms differ only in
which questions were asked and how they were labelled."""
from __future__ import annotations

import argparse
import random
from collections import Counter

import pytest

from game.exports import ExportRecord
from gap.commands.data import _family_accuracy, _share
from lab.experiment import random_pairs
from models.scenes import answers_match, sample_question, scene_from_seed


def test_random_pairs_are_on_the_gap_arms_images_one_for_one_with_true_answers():
    scenes = {f"img{i}": scene_from_seed("pool", i, "complex" if i % 2 else "simple") for i in range(6)}
    # a GAP arm skewed like learning players' finds: colour questions, most on two images
    keys = ["img1"] * 9 + ["img4"] * 6 + ["img0"]
    gap = []
    for i, key in enumerate(keys):
        qa = sample_question(scenes[key], random.Random(i), "color")
        gap.append(ExportRecord(id=f"f{i}", image_key=key, image_mime="image/png", question=qa.question,
                                model_answer="wrong", correct_answer=qa.answer, posterior=0.9, question_type="color"))
    pairs = random_pairs(gap, scenes, random.Random(0))
    assert [p.image_key for p in pairs] == keys and {p.image_mime for p in pairs} == {"image/png"}
    assert len({p.id for p in pairs}) == len(pairs) and all(p.posterior is None for p in pairs)
    families = Counter(p.question_type for p in pairs)   # the coarse type: the family
    assert len(families) >= 3 and families["color"] < len(pairs) / 2   # not the GAP arm's mix
    # the answers are the scene's truth: the same draw from the same stream gives the same question and answer
    rng = random.Random(0)
    for p in pairs:
        qa = sample_question(scenes[p.image_key], rng, None)
        assert (p.question, p.correct_answer) == (qa.question, qa.answer)
        assert answers_match(p.correct_answer, qa.answer)
    assert random_pairs([], scenes, random.Random(0)) == []


def test_standin_weak_and_learners_read_their_values_and_refuse_anything_else():
    assert _family_accuracy("color=0.2") == ("color", 0.2)
    for bad in ("colour=0.2", "color", "color=high", "color=1.5", "=0.2", "color=-0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match="FAMILY=ACCURACY"):
            _family_accuracy(bad)
    assert _share("0.5") == 0.5 and _share("1") == 1.0
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(argparse.ArgumentTypeError, match="between 0 and 1"):
            _share(bad)


def test_experiment_cli_refuses_bad_pool_styles_and_arms_before_any_work(tmp_path, capsys):
    from gap.cli import main

    out = tmp_path / "run"
    for args, why in ((["--pool-styles", "dark=2"], "needs a share"), (["--pool-styles", "neon=0.1"], "unknown pool style"),
                      (["--arms", "random"], "--arms takes gap"), (["--arms", "gap,magic"], "unknown: ['magic']"),
                      (["--curve", "0.5,1.5"], "--curve takes shares"), (["--curve", "half"], "--curve takes shares"),
                      (["--train-strata", "simple;x"], "not a stratum name")):
        assert main(["experiment", "--small", "--out", str(out), *args]) == 2
        assert why in capsys.readouterr().err
    assert not out.exists()


def test_weak_slice_gain_and_interval_follow_the_per_type_accuracies():
    from lab.experiment import _slice_of, weak_stats
    from models.evaluation import mean_standard_error

    def model(simple, complex_, dark):
        return {"mean": {"simple": simple, "complex": complex_, "simple:dark": dark, "weak": dark},
                "by_type": {"simple:dark": {"color": dark, "shape": dark}}}

    held = {"base": model(1.0, 0.6, 0.4), "gap": model(1.0, 0.58, 0.7)}
    st = weak_stats(held, ["simple:dark"], per_type=50)
    assert st["gap"]["gain"] == pytest.approx(0.3) and st["base"]["gain"] == 0
    half = 1.96 * (mean_standard_error({"c": 0.7, "s": 0.7}, 50) ** 2 + mean_standard_error({"c": 0.4, "s": 0.4}, 50) ** 2) ** 0.5
    assert st["gap"]["gain_interval"] == pytest.approx((0.3 - half, 0.3 + half))
    assert st["gap"]["overall"] == pytest.approx(0.79) and st["base"]["overall"] == pytest.approx(0.8)
    plain = scene_from_seed("pool", 1, "simple")
    assert _slice_of("simple", plain.to_json()) == "simple"
    assert _slice_of("simple", plain.styled("clutter").to_json()) == "simple:clutter"
    assert _slice_of("simple:dark", None) == "simple:dark" and _slice_of(None, None) == "unknown"
