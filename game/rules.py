"""The rules of SPEC §1 as pure functions: no I/O, no clock, no global randomness.
The service feeds them the current time and a seeded `random.Random`, so every
rule is unit-testable on its own."""
from __future__ import annotations

import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from game.errors import Invalid, SameAsAnswer
from game.i18n import N_
from models.scenes import normalize_answer

IMAGES_PER_SESSION = 10
TAINTED_PER_SESSION = 5
QUESTION_MAX = 300
CORRECTION_MAX = 200
TAINTED_CATCH_POINTS = 20
FIND_BONUS_POINTS = 20
# Peer validation of finds (SPEC §3.3): a find is confirmed when at least
# VALIDATION_MIN_VOTES counting votes agree ("the answer is wrong") and the agreeing
# share is at least VALIDATION_CONFIRM_SHARE; rejected when at least
# VALIDATION_MIN_VOTES disagree and the agreeing share is below VALIDATION_REJECT_SHARE.
VALIDATION_MIN_VOTES = 2
VALIDATION_CONFIRM_SHARE = (2, 3)   # as a fraction (numerator, denominator): exact integer comparisons
VALIDATION_REJECT_SHARE = (1, 3)


@dataclass(frozen=True)
class PlannedImage:
    """One slot of a session: which image, and whether its answers may be tainted."""

    image_id: int
    tainted: bool


def _has_visible_text(text: str) -> bool:
    return any(not unicodedata.category(ch).startswith(("C", "Z")) for ch in text)


def clean_text(value: object, *, field: str, max_len: int) -> str:
    """Trim and validate free text from a player (question or correction).

    Rejects non-strings, empty or whitespace/control-only text and text longer
    than `max_len` characters after trimming. Control characters other than
    ordinary whitespace are refused outright, so nothing odd is ever stored."""
    if not isinstance(value, str):
        raise Invalid("{field} must be a string", field=field)
    text = value.strip()
    if not text:
        raise Invalid("{field} must not be empty", field=field)
    if len(text) > max_len:
        raise Invalid("{field} must be at most {max_len} characters (got {length})", field=field, max_len=max_len,
                      length=len(text))
    if not _has_visible_text(text):
        raise Invalid("{field} must contain visible characters", field=field)
    for ch in text:
        if unicodedata.category(ch) == "Cc" and ch not in "\n\t":
            raise Invalid("{field} must not contain control characters", field=field)
    return text


def storable_text(value: str, max_len: int | None = None) -> str:
    """Text the game did not write itself but must keep (a model's answer, a Telegram display
    name), made storable on every backend: control characters other than newline and tab are
    dropped (PostgreSQL refuses NUL in text, SQLite would keep it) and it is cut to `max_len`."""
    text = "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return text[:max_len] if max_len is not None else text


def clean_question(value: object) -> str:
    """A question: 1–300 characters after trimming (SPEC §1.1)."""
    return clean_text(value, field=N_("question"), max_len=QUESTION_MAX)


def clean_correction(value: object) -> str:
    """A correction after a Wrong verdict: 1–200 characters after trimming (SPEC §1.1)."""
    return clean_text(value, field=N_("correction"), max_len=CORRECTION_MAX)


def same_answer(a: str, b: str) -> bool:
    """Two answers say the same thing after SPEC §1.2's normalisation (case, punctuation,
    number words): such a correction/answer pair is no training signal (SPEC §3.1)."""
    return normalize_answer(a) == normalize_answer(b)


def check_correction_differs(correction: str, served_answer: str) -> None:
    """A Wrong verdict's correction must say something other than the answer it corrects."""
    if same_answer(correction, served_answer):
        raise SameAsAnswer("your correction says the same as the AI's answer; type what is actually "
                           "right, or judge the answer Correct")


def clean_verdict(value: object) -> str:
    """The player's judgement: exactly "correct" or "wrong"."""
    if value not in ("correct", "wrong"):
        raise Invalid('verdict must be "correct" or "wrong"')
    return str(value)


@dataclass(frozen=True)
class Look:
    """What a player can see of an image before asking anything (SPEC §1.2: the split must not
    show in it): its source pool, format, pixel size and byte size."""

    source: str
    mime: str
    width: int
    height: int
    size: int

    def key(self) -> tuple:
        orientation = (self.width > self.height) - (self.width < self.height)
        return (self.source, self.mime, orientation, self.size)


def look_strata(reliable_ids: list[int], looks: Mapping[int, Look], per_stratum: int = 2) -> dict[int, str]:
    """Each image's stratum: per source, images sorted by how they look (format, orientation,
    byte size) and cut into contiguous runs that hold `per_stratum` reliable images each.

    Why runs and not the source alone: the reliable pool is whatever the model answers well,
    and that shows — simple drawings are small files, and the embedded model is reliable on
    them far more often than on complex ones. Pairing a tainted image with an untainted one
    from the same run makes every run as often tainted as not, so byte size, format and shape
    no longer tell the split either. Images after a source's last reliable one join its last
    run; a source without a reliable image gets no stratum (it cannot be shown fairly)."""
    reliable = set(reliable_ids)
    by_source: dict[str, list[int]] = {}
    for image_id in sorted(looks, key=lambda i: (looks[i].key(), i)):
        by_source.setdefault(looks[image_id].source, []).append(image_id)
    out: dict[int, str] = {}
    for source, ids in by_source.items():
        if not any(i in reliable for i in ids):
            out.update({i: f"{source}#unplayable" for i in ids})
            continue
        run, seen_reliable, pending = 0, 0, []
        for image_id in ids:
            pending.append(image_id)
            seen_reliable += image_id in reliable
            if seen_reliable == per_stratum:
                out.update({i: f"{source}#{run}" for i in pending})
                run, seen_reliable, pending = run + 1, 0, []
        if pending:  # the tail: with its own reliable images a run of its own, else the last run's
            label = f"{source}#{run}" if seen_reliable or run == 0 else f"{source}#{run - 1}"
            out.update({i: label for i in pending})
    return out


def plan_session(rng: random.Random, reliable_ids: list[int], all_ids: list[int],
                 source_of: Mapping[int, str] | None = None) -> list[PlannedImage]:
    """Choose a session's 10 images: 5 tainted from the reliable pool, 5 untainted
    from the whole pool (never repeating an image), shuffled together.

    Untainted images are drawn from the *whole* pool, reliable ones included, so
    an image's look never tells the player which kind it is (SPEC §1.2). When the
    pool mixes sources (`source_of`: image id -> its pool, e.g. drawings and photo
    folders), the session is made of 5 pairs, each a tainted and an untainted image
    of the same source, the source drawn in proportion to its size: every source is
    then as often tainted as untainted, so the source never tells the split. A
    source without any reliable image is left out (its images could only be
    untainted); a pool too lopsided for 5 pairs fills the last pairs from any source."""
    untainted_count = IMAGES_PER_SESSION - TAINTED_PER_SESSION
    strata = _strata(reliable_ids, all_ids, source_of)
    reliable_n = sum(len(r) for r, _ in strata.values())
    if reliable_n < TAINTED_PER_SESSION:
        raise ValueError(f"the reliable pool needs at least {TAINTED_PER_SESSION} images")
    if sum(len(a) for _, a in strata.values()) < IMAGES_PER_SESSION:
        raise ValueError(f"the image pool needs at least {IMAGES_PER_SESSION} images"
                         + (" in pools that have reliable images" if source_of else ""))
    tainted_by_source = _draw_tainted(rng, strata)
    tainted = [i for ids in tainted_by_source.values() for i in ids]
    spare = [i for i in _merged(strata)[0] if i not in set(tainted)]
    tainted += rng.sample(spare, TAINTED_PER_SESSION - len(tainted))  # a lopsided pool: any source
    untainted: list[int] = []
    for source, picked in tainted_by_source.items():
        free = [i for i in strata[source][1] if i not in set(tainted)]
        untainted += rng.sample(free, min(len(picked), len(free)))
    rest = [i for i in _merged(strata)[1] if i not in set(tainted) | set(untainted)]
    untainted += rng.sample(rest, untainted_count - len(untainted))
    plan = [PlannedImage(i, True) for i in tainted] + [PlannedImage(i, False) for i in untainted]
    rng.shuffle(plan)
    return plan


def _strata(reliable_ids: list[int], all_ids: list[int],
            source_of: Mapping[int, str] | None) -> dict[str, tuple[list[int], list[int]]]:
    """source -> (its reliable ids, all its ids), sorted, for the sources that have a reliable image."""
    reliable = set(reliable_ids)
    groups: dict[str, tuple[list[int], list[int]]] = {}
    for image_id in sorted(set(all_ids) | reliable):
        r, a = groups.setdefault(source_of.get(image_id, "") if source_of else "", ([], []))
        a.append(image_id)
        if image_id in reliable:
            r.append(image_id)
    return {k: v for k, v in sorted(groups.items()) if v[0]}


def _merged(strata: dict[str, tuple[list[int], list[int]]]) -> tuple[list[int], list[int]]:
    return (sorted(i for r, _ in strata.values() for i in r), sorted(i for _, a in strata.values() for i in a))


def _draw_tainted(rng: random.Random, strata: dict[str, tuple[list[int], list[int]]]) -> dict[str, list[int]]:
    """Up to 5 tainted images, each from a source drawn in proportion to its size among the
    sources that still have an unused reliable image and room for one more (tainted, untainted) pair."""
    picked: dict[str, list[int]] = {}
    for _ in range(TAINTED_PER_SESSION):
        options = [(source, [i for i in reliable if i not in picked.get(source, [])], len(everything))
                   for source, (reliable, everything) in strata.items()
                   if len(reliable) > len(picked.get(source, [])) and len(everything) >= 2 * (len(picked.get(source, [])) + 1)]
        if not options:
            break
        source, free, _ = rng.choices(options, weights=[w for _, _, w in options])[0]
        picked.setdefault(source, []).append(rng.choice(free))
    return picked


def should_taint(rng: random.Random, image_tainted: bool, q: float) -> bool:
    """Whether the next answer on this image is to be tainted: probability q on a
    tainted image, never on an untainted one (SPEC §1.2)."""
    return image_tainted and rng.random() < q


@dataclass(frozen=True)
class Award:
    """Points for one verdict and the ledger reason (None when nothing is awarded)."""

    points: int
    reason: str | None


def score_verdict(verdict: str, image_tainted: bool, answer_tainted: bool, false_alarm_penalty: int) -> Award:
    """SPEC §1.3: +20 for Wrong on a tainted answer, −penalty for Wrong on an honest
    answer of a tainted image, 0 for Wrong on an untainted image (a find, paid
    later by peer validation) and 0 for Correct."""
    if verdict != "wrong":
        return Award(0, None)
    if answer_tainted:
        return Award(TAINTED_CATCH_POINTS, "tainted_catch")
    if image_tainted:
        return Award(-abs(false_alarm_penalty), "false_alarm") if false_alarm_penalty else Award(0, None)
    return Award(0, None)


def deadline_for(served_at_ms: int, image_seconds: float) -> int:
    """The absolute deadline (epoch ms) of an image first served at `served_at_ms`."""
    return served_at_ms + int(round(image_seconds * 1000))


def is_expired(now_ms: int, deadline_ms: int | None) -> bool:
    """An image is over once its deadline has passed; the deadline instant itself is late."""
    return deadline_ms is not None and now_ms >= deadline_ms


def seconds_left(now_ms: int, deadline_ms: int) -> float:
    """Remaining time for display; never negative."""
    return max(0.0, (deadline_ms - now_ms) / 1000.0)


def week_start_ms(now_ms: int) -> int:
    """Monday 00:00 UTC of the week containing `now_ms`: the weekly leaderboard's start."""
    day_ms = 86_400_000
    days_since_epoch = now_ms // day_ms
    weekday = (days_since_epoch + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    return (days_since_epoch - weekday) * day_ms


def validation_status(agree: int, disagree: int) -> str:
    """The state of a find from its counting votes (muted validators excluded by the
    caller): "confirmed", "rejected" or "pending" (SPEC §3.3). Integer arithmetic, so
    exactly 2 of 3 agreeing confirms."""
    total = agree + disagree
    cn, cd = VALIDATION_CONFIRM_SHARE
    rn, rd = VALIDATION_REJECT_SHARE
    if agree >= VALIDATION_MIN_VOTES and agree * cd >= cn * total:
        return "confirmed"
    if disagree >= VALIDATION_MIN_VOTES and agree * rd < rn * total:
        return "rejected"
    return "pending"


# ---------------------------------------------------------------------- describe round (SPEC §3.5)

DESCRIPTION_MAX = 300
DESCRIBE_SECONDS = 60.0
DESCRIPTION_POINTS = 10


def clean_description(value: object) -> str:
    """A player's description of an image: a sentence or two, 1–300 characters after
    trimming, no control characters (the same checks as a question, SPEC §1.1)."""
    return clean_text(value, field="description", max_len=DESCRIPTION_MAX)


def description_award(fits: int, misfits: int) -> int:
    """Points for a description from other players' counting ratings ("does it fit the
    picture?"), by the rule that decides a find (`validation_status`): confirmed → the
    writer earns DESCRIPTION_POINTS (paid once), anything else → nothing yet or ever.
    A rating round, not the writer's own claim, decides, so typing anything earns nothing."""
    return DESCRIPTION_POINTS if validation_status(fits, misfits) == "confirmed" else 0
