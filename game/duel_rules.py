"""The rules of preference duels (SPEC §3.4, the GameLabel mode) as pure functions.

A duel is one pairwise choice: "which picture fits the caption?" or "which answer
is right?". Players get batches of BATCH_SIZE duels and must pick a side (no ties).
Some duels are hidden **comparison gold**: one side was made for another caption
or question, so the right choice is unambiguous; only gold is scored. From a
player's gold record (correct c, wrong w) the Beta(1 + c, 1 + w) posterior of
their accuracy decides

- how much gold they see (`gold_rate`): high for newcomers, lower once the
  *lower* credible bound of their accuracy is high, never zero (GameLabel kept
  checking everyone);
- whether they are removed from duels for good (`should_remove`): when even the
  *upper* credible bound is below the bar, i.e. the posterior is 95 % sure their
  accuracy is under it (equivalently: the lower bound of their error rate is above
  0.3) — a credible bound, never a raw ratio, so three unlucky answers do not remove
  a careful newcomer, and a player of 70 % accuracy is usually kept;
- the batch's points (`batch_points`): by a *lower* credible bound of accuracy
  (POINTS_CREDIBLE), so points go to what the checks credibly show — the posterior
  mean would keep paying a coin-flipper for an early lucky streak on every later
  batch (about 9 points a batch, 50 before removal); the bound pays them about 5
  a batch and a careful player 36 (tests/game/test_duel_rules.py measures both);
- how much each of their labels counts in aggregates (`label_weight`).

Answers faster than MIN_ITEM_SECONDS after the duel was shown are refused and
counted (`too_fast`). No I/O, no clock, no global randomness: callers pass the
time and a seeded `random.Random` (like game/rules.py).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from scipy.special import betaincinv  # the Beta quantile, without importing scipy.stats (slow)

from game.errors import Invalid

BATCH_SIZE = 5
CHOICES = ("left", "right")
KINDS = ("caption", "answer")
CREDIBLE = 0.95                 # one-sided credible level of every bound below
GOLD_RATE_START = 0.6           # a newcomer's share of hidden gold duels
GOLD_RATE_FLOOR = 0.15          # never zero: accurate players are still checked
GOLD_TRUST_FROM = 0.6           # lower bound at which the rate starts to fall...
GOLD_TRUST_FULL = 0.85          # ...and where it reaches the floor
REMOVAL_ACCURACY = 0.7          # removed when credibly below this accuracy
POINTS_PER_DUEL = 10            # at accuracy 1; 0 at accuracy 0.5 or below
POINTS_CREDIBLE = 0.7           # points by this one-sided lower bound: < 0.75, so one right check pays
MIN_ITEM_SECONDS = 1.5          # default; the settings may change it (GAP_DUEL_MIN_SECONDS)


@dataclass(frozen=True)
class GoldRecord:
    """A player's answers on hidden gold duels."""

    correct: int = 0
    wrong: int = 0

    @property
    def total(self) -> int:
        return self.correct + self.wrong


def clean_choice(value: object) -> str:
    """The player's pick: exactly "left" or "right" — there are no ties (SPEC §3.4)."""
    if value not in CHOICES:
        raise Invalid('choice must be "left" or "right" (there are no ties)')
    return str(value)


def accuracy_bounds(record: GoldRecord, level: float = CREDIBLE) -> tuple[float, float]:
    """One-sided `level` credible bounds (lower, upper) of the Beta(1 + c, 1 + w) posterior
    of the player's accuracy: P(acc ≥ lower) = P(acc ≤ upper) = level."""
    a, b = 1 + record.correct, 1 + record.wrong
    return float(betaincinv(a, b, 1 - level)), float(betaincinv(a, b, level))


def mean_accuracy(record: GoldRecord) -> float:
    """Posterior mean accuracy (Laplace's rule): 0.5 with no gold seen."""
    return (1 + record.correct) / (2 + record.total)


def gold_rate(record: GoldRecord) -> float:
    """The probability that a duel of the next batch is hidden gold: GOLD_RATE_START until
    the lower credible bound of accuracy passes GOLD_TRUST_FROM, then falling linearly to
    GOLD_RATE_FLOOR at GOLD_TRUST_FULL and staying there (never zero)."""
    lower, _ = accuracy_bounds(record)
    trust = min(1.0, max(0.0, (lower - GOLD_TRUST_FROM) / (GOLD_TRUST_FULL - GOLD_TRUST_FROM)))
    return GOLD_RATE_FLOOR + (GOLD_RATE_START - GOLD_RATE_FLOOR) * (1.0 - trust)


def gold_count(rng: random.Random, record: GoldRecord, size: int = BATCH_SIZE) -> int:
    """How many of a batch's `size` duels are gold: each independently at `gold_rate`,
    at least one (every batch measures the player)."""
    rate = gold_rate(record)
    return max(1, sum(rng.random() < rate for _ in range(size)))


def should_remove(record: GoldRecord) -> bool:
    """Removed for good when the upper credible bound of accuracy is below
    REMOVAL_ACCURACY: the player is credibly worse than the bar. Put the other way, the
    Beta *lower* bound of their error rate is above 1 − REMOVAL_ACCURACY.

    Why not "the lower bound of accuracy is not credibly above chance" (after some minimum
    of checks)? It removes random players a batch or two sooner, but also most players of
    GameLabel's typical accuracy: simulated over 10 batches with this module's gold counts,
    a player right 70 % of the time is removed 70 % of the time with 10 checks first (58 %
    at a 90 % bound, 44 % with 15 checks at 90 %), against 18 % here — while careful
    players are kept and random ones removed (≥ 99 % each) by either rule."""
    return accuracy_bounds(record)[1] < REMOVAL_ACCURACY


REMOVAL_MESSAGE = ("Duels are closed for you: on the check pairs your picks were right too rarely "
                   "to be told apart from guessing. Your points stay; the main game is still open.")


def batch_points(record: GoldRecord, duels: int = BATCH_SIZE) -> int:
    """Points for a finished batch, by accuracy on gold (the record including this batch):
    POINTS_PER_DUEL per duel scaled by how far the POINTS_CREDIBLE lower bound of accuracy
    is above chance — 5 points for a newcomer's first right check, 24 for three, 42–48 of
    50 for a long careful record; nothing until a coin-flipper's luck is credible."""
    lower, _ = accuracy_bounds(record, POINTS_CREDIBLE)
    return int(round(POINTS_PER_DUEL * duels * max(0.0, 2 * lower - 1)))


def label_weight(record: GoldRecord) -> float:
    """How much a player's label counts in an aggregate: the log-odds of their posterior
    mean accuracy (the optimal vote weight of a one-coin labeller), 0 at or below chance."""
    m = mean_accuracy(record)
    return max(0.0, math.log(m / (1 - m)))


def check_min_time(shown_at_ms: int, now_ms: int, min_seconds: float) -> bool:
    """Whether a choice at `now_ms` on a duel shown at `shown_at_ms` is slow enough."""
    return now_ms - shown_at_ms >= int(round(min_seconds * 1000))


def arrange(rng: random.Random) -> bool:
    """Whether to show a pair swapped (its second side on the left): a fair coin per
    player and duel, so the left button is right half of the time on gold too and an
    always-left player scores chance."""
    return rng.random() < 0.5


def side_to_canonical(choice: str, swapped: bool) -> str:
    """The stored side ("a" or "b") that a displayed choice ("left"/"right") picked."""
    left_is_a = not swapped
    return "a" if (choice == "left") == left_is_a else "b"
