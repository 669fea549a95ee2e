"""Players who learn (SPEC §3.2): the bandit's pure parts, and a learner's question mix
shifting toward the family where a stand-in model of set per-family accuracy is wrong,
while a non-learner with the same taste keeps its mix. The loop here is the player's
side of a session without the server: pick a question, the stand-in answers, the
player judges (the simulator's own judgement), the summary's outcome is learnt."""
from __future__ import annotations

import functools
import hashlib
import random

from lab.player_learning import (FindBandit, learner_question, learning_report, object_kind, player_group,
                                 reveal_outcome, session_outcomes, weakest_family)
from lab.simulation import SimPlayer, _decide, make_population, next_question
from lab.standin_model import StandInModel
from models.scenes import answer_vocabulary, answers_match, scene_from_seed

TASTE = {"count": 0.35, "color": 0.2, "shape": 0.1, "exists": 0.15, "position": 0.12, "text": 0.08}


def test_object_kind_is_the_shape_or_colour_named():
    assert object_kind("What color is the star?") == "star"
    assert object_kind("How many circles are there?") == "circle"
    assert object_kind("Is there a red square?") == "square"
    assert object_kind("How many blue objects are there?") == "blue"
    assert object_kind("How many things can you see?") == "any"


def test_the_reveal_turns_verdicts_into_outcomes_and_lures_carry_no_evidence():
    assert reveal_outcome(False, False, "wrong") == "find"
    assert reveal_outcome(False, False, "correct") == "correct"
    assert reveal_outcome(True, False, "wrong") == "false_alarm"
    assert reveal_outcome(True, True, "wrong") == "catch"
    assert reveal_outcome(True, True, "correct") == "missed_lure"
    assert reveal_outcome(False, False, None) is None
    summary = {"images": [
        {"tainted": True, "answers": [{"answer_id": "a", "question": "What color is the star?", "tainted": True,
                                       "verdict": "wrong"},
                                      {"answer_id": "b", "question": "How many stars?", "tainted": False,
                                       "verdict": "wrong"}]},
        {"tainted": False, "answers": [{"answer_id": "c", "question": "What colour is the circle?", "tainted": False,
                                        "verdict": "wrong"},
                                       {"answer_id": "d", "question": "Count the objects.", "tainted": False,
                                        "verdict": None},
                                       {"answer_id": "e", "question": "Someone else's?", "tainted": False,
                                        "verdict": "correct"}]}]}
    family = {"a": "color", "b": "count", "c": "color", "d": "count"}.get
    assert session_outcomes(summary, family) == [
        {"aid": "a", "family": "color", "kind": "star", "outcome": "catch"},
        {"aid": "b", "family": "count", "kind": "star", "outcome": "false_alarm"},
        {"aid": "c", "family": "color", "kind": "circle", "outcome": "find"}]
    bandit = FindBandit().fit(session_outcomes(summary, family))
    assert bandit.arms_ == {("count", "star"): [0, 1], ("color", "circle"): [1, 1]}  # the catch taught nothing
    assert bandit.families_ == {"count": [0, 1], "color": [1, 1]}


def test_an_arm_with_no_evidence_borrows_its_familys_mean():
    bandit = FindBandit().fit([{"family": "color", "kind": "star", "outcome": "find"}] * 20
                              + [{"family": "count", "kind": "any", "outcome": "correct"}] * 20)
    rng = random.Random(1)
    unseen_color = sum(bandit.sample("color", "circle", rng) for _ in range(400)) / 400
    unseen_count = sum(bandit.sample("count", "circle", rng) for _ in range(400)) / 400
    assert unseen_color > 0.6 and unseen_count < 0.15
    assert abs(sum(FindBandit().fit([]).sample("shape", "any", rng) for _ in range(400)) / 400 - 0.2) < 0.05


def test_only_careful_and_sloppy_players_learn_and_the_rest_of_the_population_does_not_depend_on_it():
    everyone, nobody, half = (make_population(40, seed=3, learner_share=s) for s in (1.0, 0.0, 0.5))
    assert all(p.learner == (p.kind in ("careful", "sloppy")) for p in everyone)
    assert not any(p.learner for p in nobody)
    assert 0 < sum(p.learner for p in half) < sum(p.learner for p in everyone)
    strip = lambda ps: [{**p.__dict__, "learner": None} for p in ps]  # noqa: E731
    assert strip(everyone) == strip(nobody) == strip(half)


@functools.lru_cache(maxsize=None)
def pool_scene(index: int, complexity: str):
    return scene_from_seed("pool", index, complexity)


def standin(model: StandInModel):
    """The stand-in as the offline loop's model: it answers questions registered with their truth."""
    async def answer(image: bytes, qa, complexity: str) -> str:
        model.register(hashlib.sha256(image).hexdigest(), qa.question, qa.answer, qa.qtype, complexity)
        return (await model.answer(image, qa.question, taint=False)).served
    return answer


async def play_offline(player: SimPlayer, answer, sessions: int, seed: int,
                       complexity: str = "simple") -> list[list[dict]]:
    """The player's side of `sessions` sessions of 10 images, no lures; returns each session's outcomes."""
    rng = random.Random(f"offline:{seed}:{player.telegram_id}")
    learnt: list[dict] = []
    played = []
    for s in range(sessions):
        bandit = FindBandit().fit(learnt) if player.learner else None
        outcomes = []
        for i in range(10):
            index = (seed * 1000 + s * 10 + i) % 500
            scene = pool_scene(index, complexity)
            for position in range(player.questions_per_image):
                qa = next_question(player, scene, rng, bandit)
                served = await answer(f"{complexity}-{index}".encode(), qa, complexity)
                _, flagged, _ = _decide(player, scene, qa.answer, qa.qtype, served, i, rng)
                outcomes.append({"aid": f"{player.telegram_id}-{s}-{i}-{position}", "family": qa.family,
                                 "kind": object_kind(qa.question),
                                 "outcome": reveal_outcome(False, False, "wrong" if flagged else "correct"),
                                 "mistake": not answers_match(qa.answer, served), "s": s, "p": player.telegram_id})
                if flagged:
                    break  # a flag ends the image
        learnt += outcomes
        played.append(outcomes)
    return played


def careful(i: int, learner: bool) -> SimPlayer:
    return SimPlayer(telegram_id=i, kind="careful", sensitivity=0.9, false_alarm=0.03, fatigue=0.0,
                     think_seconds=1.0, questions_per_image=3, typo_rate=0.0, family_weights=dict(TASTE),
                     learner=learner)


def color_share(sessions: list[list[dict]], s: int) -> float:
    return sum(o["family"] == "color" for o in sessions[s]) / len(sessions[s])


async def test_a_learners_questions_shift_to_the_family_the_model_gets_wrong_and_a_non_learners_do_not():
    model = StandInModel({"simple": 0.97}, seed=0, family_accuracy={"color": 0.15})
    learners = [await play_offline(careful(100 + i, True), standin(model), 4, seed=i) for i in range(6)]
    keepers = [await play_offline(careful(200 + i, False), standin(model), 4, seed=i) for i in range(6)]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    learner_first, learner_last = mean([color_share(p, 0) for p in learners]), mean([color_share(p, 3) for p in learners])
    keeper_first, keeper_last = mean([color_share(p, 0) for p in keepers]), mean([color_share(p, 3) for p in keepers])
    assert learner_first < 0.35 and keeper_first < 0.35             # both start from the same taste
    assert learner_last > learner_first + 0.25                      # the learner moved to colours
    assert abs(keeper_last - keeper_first) < 0.1                    # the non-learner did not
    finds = lambda ps, s: mean([sum(o["outcome"] == "find" for o in p[s]) / len(p[s]) for p in ps])  # noqa: E731
    assert finds(learners, 3) > 1.5 * finds(keepers, 3)             # and earns more finds per question

    # the measurement the experiment reports says the same
    outcomes = [o for p in learners + keepers for s in p for o in s]
    mistakes = {o["aid"]: o["mistake"] for o in outcomes}
    assert weakest_family(outcomes, mistakes) == "color"
    groups = {100 + i: player_group("careful", True) for i in range(6)} | {200 + i: "non-learners" for i in range(6)}
    report = learning_report(outcomes, groups, mistakes, ["color"])["groups"]
    assert abs(report["learners"]["last"]["weak_share"] - learner_last) < 0.1
    assert report["learners"]["last"]["true_finds_per_question"] > report["non-learners"]["last"]["true_finds_per_question"]


async def test_a_model_wrong_everywhere_alike_gives_a_learner_no_reason_to_move():
    model = StandInModel({"simple": 0.7}, seed=0)
    learners = [await play_offline(careful(300 + i, True), standin(model), 4, seed=i) for i in range(12)]
    first = sum(color_share(p, 0) for p in learners) / 12
    later = sum(color_share(p, s) for p in learners for s in (1, 2, 3)) / 36
    assert abs(later - first) < 0.1


async def star_blind(image: bytes, qa, complexity: str) -> str:
    """A model wrong about stars whatever the question (knowledge it never got), right otherwise."""
    if object_kind(qa.question) == "star":
        return next(v for v in answer_vocabulary(qa.qtype) if not answers_match(v, qa.answer))
    return qa.answer


async def test_a_learner_also_learns_which_objects_to_ask_about():
    def star_share(player: list[list[dict]], sessions) -> float:
        asked = [o for s in sessions for o in player[s]]
        return sum(o["kind"] == "star" for o in asked) / len(asked)

    learners = [await play_offline(careful(400 + i, True), star_blind, 6, seed=i, complexity="complex")
                for i in range(8)]
    keepers = [await play_offline(careful(500 + i, False), star_blind, 6, seed=i, complexity="complex")
               for i in range(8)]
    learner_first = sum(star_share(p, [0]) for p in learners) / 8
    learner_late = sum(star_share(p, [3, 4, 5]) for p in learners) / 8
    keeper_late = sum(star_share(p, [3, 4, 5]) for p in keepers) / 8
    assert learner_late > learner_first + 0.08 and learner_late > keeper_late + 0.08


def test_the_modules_examples_hold():
    import doctest

    import lab.player_learning

    assert doctest.testmod(lab.player_learning).failed == 0
