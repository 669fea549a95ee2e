"""The pure rules of SPEC §1, without a database."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from game import rules
from game.errors import Invalid


def test_plan_has_five_tainted_from_reliable_and_no_repeats():
    reliable = list(range(1, 8))
    everything = list(range(1, 31))
    for seed in range(200):
        plan = rules.plan_session(random.Random(seed), reliable, everything)
        assert len(plan) == 10
        assert len({p.image_id for p in plan}) == 10
        tainted = [p for p in plan if p.tainted]
        assert len(tainted) == 5
        assert all(p.image_id in reliable for p in tainted)


def test_plan_order_is_random_and_untainted_may_be_reliable():
    reliable, everything = list(range(10)), list(range(12))
    first_positions = Counter(rules.plan_session(random.Random(s), reliable, everything)[0].tainted
                              for s in range(400))
    assert first_positions[True] > 100 and first_positions[False] > 100
    untainted_reliable = sum(
        any(p.image_id in reliable and not p.tainted for p in rules.plan_session(random.Random(s), reliable, everything))
        for s in range(50))
    assert untainted_reliable == 50  # 12 images, 10 reliable: untainted ones are mostly reliable images


@pytest.mark.parametrize("reliable,everything", [(list(range(4)), list(range(20))), (list(range(5)), list(range(9)))])
def test_plan_refuses_small_pools(reliable, everything):
    with pytest.raises(ValueError):
        rules.plan_session(random.Random(0), reliable, everything)


def test_should_taint_probability():
    rng = random.Random(1)
    hits = sum(rules.should_taint(rng, True, 0.8) for _ in range(5000))
    assert 3800 < hits < 4200
    assert not any(rules.should_taint(rng, False, 1.0) for _ in range(1000))
    assert not any(rules.should_taint(rng, True, 0.0) for _ in range(1000))


def test_scoring():
    assert rules.score_verdict("wrong", True, True, 10) == rules.Award(20, "tainted_catch")
    assert rules.score_verdict("wrong", True, False, 10) == rules.Award(-10, "false_alarm")
    assert rules.score_verdict("wrong", True, False, 0) == rules.Award(0, None)
    assert rules.score_verdict("wrong", False, False, 10) == rules.Award(0, None)  # a find: paid later
    assert rules.score_verdict("correct", True, True, 10) == rules.Award(0, None)
    assert rules.score_verdict("correct", True, False, 10) == rules.Award(0, None)


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00\x01", "\u200b", "a" * 301, None, 5, ["q"]])
def test_bad_questions(text):
    with pytest.raises(Invalid):
        rules.clean_question(text)


def test_question_limits_after_trimming():
    assert rules.clean_question("  " + "a" * 300 + "  ") == "a" * 300
    assert rules.clean_question(" How many circles? ") == "How many circles?"
    with pytest.raises(Invalid):
        rules.clean_question("what\x07 colour")


def test_correction_limits():
    assert rules.clean_correction(" three ") == "three"
    assert rules.clean_correction("b" * 200) == "b" * 200
    for bad in ("", " ", "c" * 201, None):
        with pytest.raises(Invalid):
            rules.clean_correction(bad)


def test_verdict_choices():
    assert rules.clean_verdict("wrong") == "wrong"
    for bad in ("Wrong", "", None, True, 1):
        with pytest.raises(Invalid):
            rules.clean_verdict(bad)


def test_deadlines():
    assert rules.deadline_for(1000, 120) == 121_000
    assert not rules.is_expired(120_999, 121_000)
    assert rules.is_expired(121_000, 121_000)
    assert rules.seconds_left(200_000, 121_000) == 0.0
    assert rules.seconds_left(61_000, 121_000) == 60.0


def test_week_start_is_monday_utc():
    import datetime as dt

    now = int(dt.datetime(2026, 11, 29, 15, 30, tzinfo=dt.timezone.utc).timestamp() * 1000)  # a Sunday
    start = dt.datetime.fromtimestamp(rules.week_start_ms(now) / 1000, dt.timezone.utc)
    assert start == dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc)
    monday = int(dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert rules.week_start_ms(monday) == monday


def test_descriptions_and_their_award():
    """SPEC §3.5: a description is 1–300 visible characters; two fitting ratings of at least
    two in three pay DESCRIPTION_POINTS, anything else pays nothing."""
    assert rules.clean_description("  a red star  ") == "a red star"
    assert rules.clean_description("x" * rules.DESCRIPTION_MAX) == "x" * rules.DESCRIPTION_MAX
    for bad in ("", "  ", "x" * (rules.DESCRIPTION_MAX + 1), "a\x07b", "\u200b", None, 3, ["a"]):
        with pytest.raises(Invalid):
            rules.clean_description(bad)
    assert rules.description_award(2, 0) == rules.DESCRIPTION_POINTS
    assert rules.description_award(2, 1) == rules.DESCRIPTION_POINTS
    assert rules.description_award(1, 0) == 0 and rules.description_award(2, 2) == 0
    assert rules.description_award(0, 5) == 0
