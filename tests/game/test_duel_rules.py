"""The pure rules of preference duels (SPEC §3.4), without a database."""
from __future__ import annotations

import math
import random

import pytest

from game import duel_rules as R
from game.errors import Invalid


@pytest.mark.parametrize("value", ["left", "right"])
def test_choice_is_left_or_right(value):
    assert R.clean_choice(value) == value


@pytest.mark.parametrize("value", ["tie", "both", "", None, 0, 1, True, ["left"], "LEFT", "left "])
def test_no_ties_and_nothing_else(value):
    with pytest.raises(Invalid, match="no ties"):
        R.clean_choice(value)


def test_bounds_are_credible_not_raw_ratios():
    lower, upper = R.accuracy_bounds(R.GoldRecord(3, 0))
    # 3 of 3 is a raw ratio of 1.0; the posterior is still unsure
    assert 0.4 < lower < 0.6 and upper > 0.95
    lower, upper = R.accuracy_bounds(R.GoldRecord(300, 0))
    assert lower > 0.98
    lower, upper = R.accuracy_bounds(R.GoldRecord(0, 0))
    assert lower == pytest.approx(0.05) and upper == pytest.approx(0.95)


def test_gold_rate_starts_high_falls_for_credibly_accurate_players_never_zero():
    newcomer = R.gold_rate(R.GoldRecord())
    assert newcomer == R.GOLD_RATE_START
    # a few lucky answers are not credible yet
    assert R.gold_rate(R.GoldRecord(3, 0)) == R.GOLD_RATE_START
    rates = [R.gold_rate(R.GoldRecord(c, c // 10)) for c in (5, 10, 20, 40, 80, 1000)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == R.GOLD_RATE_FLOOR > 0
    # a mediocre player with many observations keeps the high rate
    assert R.gold_rate(R.GoldRecord(500, 500)) == R.GOLD_RATE_START


def test_gold_count_follows_the_rate_and_is_at_least_one():
    rng = random.Random(3)
    new = [R.gold_count(rng, R.GoldRecord()) for _ in range(4000)]
    trusted = [R.gold_count(rng, R.GoldRecord(1000, 10)) for _ in range(4000)]
    assert min(new + trusted) >= 1 and max(new) <= R.BATCH_SIZE
    assert sum(new) / len(new) == pytest.approx(R.BATCH_SIZE * R.GOLD_RATE_START, abs=0.1)
    assert sum(trusted) / len(trusted) < 1.3  # the floor of 0.15 of 5, raised to at least one


def test_removal_needs_credible_evidence():
    assert not R.should_remove(R.GoldRecord(0, 0))
    assert not R.should_remove(R.GoldRecord(0, 1))     # one mistake: unsure
    assert not R.should_remove(R.GoldRecord(1, 2))     # a raw ratio of 1/3, but three answers only
    assert R.should_remove(R.GoldRecord(0, 5))
    assert R.should_remove(R.GoldRecord(25, 25))       # coin flipping, 50 times
    assert not R.should_remove(R.GoldRecord(45, 5))    # a careful player
    assert not R.should_remove(R.GoldRecord(7, 3))     # 70 % on ten: not credibly below the bar
    assert "closed" in R.REMOVAL_MESSAGE


def test_careful_players_are_kept_and_random_ones_removed_over_many_gold():
    rng = random.Random(11)

    def removed(p: float, n: int = 60) -> bool:
        c = w = 0
        for _ in range(n):
            if rng.random() < p:
                c += 1
            else:
                w += 1
            if R.should_remove(R.GoldRecord(c, w)):
                return True
        return False

    assert sum(removed(0.5) for _ in range(150)) / 150 >= 0.9
    assert sum(removed(0.95) for _ in range(150)) / 150 <= 0.02
    # GameLabel's typical player (about 70 % right) is usually kept, even checked after every answer
    assert sum(removed(0.7, 30) for _ in range(150)) / 150 <= 0.4


def test_points_by_accuracy():
    assert R.batch_points(R.GoldRecord(0, 0)) == 0           # chance
    assert R.batch_points(R.GoldRecord(5, 5)) == 0
    assert R.batch_points(R.GoldRecord(0, 10)) == 0           # never negative
    high, low = R.batch_points(R.GoldRecord(50, 0)), R.batch_points(R.GoldRecord(35, 15))
    assert 45 <= high <= 50 and 0 < low < high
    assert R.batch_points(R.GoldRecord(50, 0), duels=2) < high
    assert 0 < R.batch_points(R.GoldRecord(1, 0)) < R.batch_points(R.GoldRecord(3, 0))  # one right check pays


def _career(rng: random.Random, accuracy: float, batches: int) -> tuple[int, int]:
    """(points, batches played) of a player of this accuracy on gold, under the rules' own
    gold counts and removal, like the simulation's players but without the API."""
    record, points = R.GoldRecord(), 0
    for played in range(1, batches + 1):
        golds = R.gold_count(rng, record)
        right = sum(rng.random() < accuracy for _ in range(golds))
        record = R.GoldRecord(record.correct + right, record.wrong + golds - right)
        points += R.batch_points(record)
        if R.should_remove(record):
            return points, played
    return points, batches


def test_points_go_to_credible_accuracy_not_to_a_coin_flippers_luck():
    """Per batch played, careful players earn many times what coin-flippers do, though a
    lucky coin-flipper keeps playing (and being paid) until removed; the posterior mean
    accuracy would pay the flipper nearly twice as much (9 points a batch, measured)."""
    rng = random.Random(5)

    def per_batch(accuracy: float, batches: int) -> float:
        runs = [_career(rng, accuracy, batches) for _ in range(600)]
        return sum(p for p, _ in runs) / sum(b for _, b in runs)

    careful, sloppy, coin = per_batch(0.965, 10), per_batch(0.7, 10), per_batch(0.5, 40)
    assert careful > 2 * sloppy > 0 and sloppy > 2 * coin
    assert coin < 7 and careful > 5 * coin          # the posterior mean: 9.2 and 4.2×


def test_label_weight_is_log_odds_and_zero_below_chance():
    assert R.label_weight(R.GoldRecord()) == 0
    assert R.label_weight(R.GoldRecord(2, 8)) == 0
    assert R.label_weight(R.GoldRecord(8, 0)) == pytest.approx(math.log(9))  # mean 0.9: odds 9


def test_min_time():
    assert not R.check_min_time(1000, 2499, 1.5)
    assert R.check_min_time(1000, 2500, 1.5)
    assert R.check_min_time(1000, 1000, 0)


def test_arrangement_is_a_fair_coin_and_maps_back():
    rng = random.Random(5)
    swaps = sum(R.arrange(rng) for _ in range(4000))
    assert 1800 < swaps < 2200
    assert R.side_to_canonical("left", False) == "a" and R.side_to_canonical("right", False) == "b"
    assert R.side_to_canonical("left", True) == "b" and R.side_to_canonical("right", True) == "a"
