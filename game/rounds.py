"""Model rounds (SPEC §3.2, as in Dynabench): a fine-tuned model is promoted into the running
game, players attack it, and each round reports how often they still catch it being wrong.

A promotion is a row in `model_rounds`; every web worker follows the latest row and swaps
its model without a restart (gap/app.py), so the operator's command (`gap model promote`,
the bot's /promote) only records the decision. Answers record the model id of the model
that produced them, so a round's numbers are read from the answers themselves, whichever
worker served them and whenever it switched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, insert, select, update

from game.db import Database
from game.errors import Invalid
from game.evaluation_store import OK
from game.evaluation_tables import answer_posteriors_query
from game.tables import answers, images, model_rounds, session_images

SPEC_MAX = 1000


@dataclass(frozen=True)
class Round:
    number: int
    spec: str
    promoted_by: str | None
    promoted_at: int
    model_id: str | None
    error: str | None


@dataclass
class RoundStats:
    """One model's record in play. `error_rate` is the validated model error rate: finds that
    the evaluation confirms at θ per question asked on untainted images (tainted answers are
    wrong on purpose and say nothing about the model)."""

    model_id: str
    round: int | None          # None: the model served before any promotion (round 0 in reports)
    first_asked_at: int
    questions: int             # all questions this model answered
    untainted_questions: int
    finds: int                 # Wrong verdicts with a correction on untainted answers
    confirmed: int             # finds whose posterior is ≥ θ and whose finder is trusted
    player_minutes: float
    by_type: dict[str, tuple[int, int]] = field(default_factory=dict)  # type → (untainted questions, confirmed)
    by_stratum: dict[str, tuple[int, int]] = field(default_factory=dict)  # pool stratum ("simple:dark") → same

    @property
    def error_rate(self) -> float:
        return self.confirmed / self.untainted_questions if self.untainted_questions else 0.0

    @property
    def finds_per_player_minute(self) -> float:
        return self.finds / self.player_minutes if self.player_minutes else 0.0

    def weaknesses(self, top: int = 3) -> list[tuple[str, float]]:
        """The question types on which players still confirm the most mistakes, worst first."""
        return _worst(self.by_type, top)

    def weak_strata(self, top: int = 3) -> list[tuple[str, float]]:
        """The pool strata (complexity and scene style, e.g. "simple:dark") with the highest validated
        error rate, worst first: a round that fixed a withheld style should drop it from this list."""
        return _worst(self.by_stratum, top)


def _worst(cells: dict[str, tuple[int, int]], top: int) -> list[tuple[str, float]]:
    rates = [(t, c / n) for t, (n, c) in cells.items() if n and c]
    return sorted(rates, key=lambda tr: (-tr[1], tr[0]))[:top]


def clean_spec(value: object) -> str:
    """A model spec as GAP_MODEL takes it: 1–1000 printable characters."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > SPEC_MAX or not value.isprintable():
        raise Invalid(f"a model is a directory or openai:<url> of 1 to {SPEC_MAX} printable characters")
    return value.strip()


def _round(row) -> Round:
    return Round(number=row.id, spec=row.spec, promoted_by=row.promoted_by, promoted_at=row.promoted_at,
                 model_id=row.model_id, error=row.error)


async def promote(db: Database, spec: object, *, by: str, now_ms: int) -> Round:
    """Record a new round serving `spec`; workers switch to it on their next poll."""
    spec = clean_spec(spec)
    async with db.write() as conn:
        result = await conn.execute(insert(model_rounds).values(
            spec=spec, promoted_by=by[:64], promoted_at=now_ms, updated_at=now_ms))
        number = int(result.inserted_primary_key[0])
    return Round(number, spec, by[:64], now_ms, None, None)


async def latest(db: Database) -> Round | None:
    """The round every worker should serve now (None: no promotion yet, serve GAP_MODEL)."""
    async with db.read() as conn:
        row = (await conn.execute(select(model_rounds).order_by(model_rounds.c.id.desc()).limit(1))).first()
    return None if row is None else _round(row)


async def all_rounds(db: Database) -> list[Round]:
    async with db.read() as conn:
        return [_round(r) for r in (await conn.execute(select(model_rounds).order_by(model_rounds.c.id))).all()]


async def record_serving(db: Database, number: int, model_id: str, now_ms: int) -> None:
    """A worker serves round `number` with `model_id` (kept from the first worker to load it)."""
    async with db.write() as conn:
        await conn.execute(update(model_rounds).where(and_(model_rounds.c.id == number))
                           .values(model_id=func.coalesce(model_rounds.c.model_id, model_id[:128]), error=None,
                                   updated_at=now_ms))


async def record_failure(db: Database, number: int, error: str, now_ms: int) -> None:
    """A worker could not load round `number`; it keeps serving what it served before."""
    async with db.write() as conn:
        await conn.execute(update(model_rounds).where(model_rounds.c.id == number)
                           .values(error=error[:2000], updated_at=now_ms))


async def round_report(db: Database, theta: float) -> list[RoundStats]:
    """Per model that answered in the game (in order of its first answer): questions, finds,
    confirmed finds at θ (from the last `gap evaluate`), player-minutes and the error rate by
    question type — what each round fixed and which weaknesses remain."""
    flag = case((and_(answers.c.verdict == "wrong", answers.c.correction.is_not(None)), 1), else_=0)
    untainted = session_images.c.tainted.is_(False)
    joined = answers.join(session_images, answers.c.session_image_id == session_images.c.id)
    posteriors = answer_posteriors_query().subquery()
    async with db.read() as conn:
        counts = (await conn.execute(
            select(answers.c.model_id, answers.c.question_type, session_images.c.tainted,
                   func.count(), func.sum(flag), func.min(answers.c.asked_at))
            .select_from(joined)
            .group_by(answers.c.model_id, answers.c.question_type, session_images.c.tainted))).all()
        confirmed = (await conn.execute(
            select(answers.c.model_id, answers.c.question_type, func.count())
            .select_from(joined.join(posteriors, posteriors.c.answer_id == answers.c.id))
            .where(and_(untainted, posteriors.c.posterior >= theta, posteriors.c.status == OK))
            .group_by(answers.c.model_id, answers.c.question_type))).all()
        spans = (await conn.execute(
            select(answers.c.model_id, session_images.c.served_at, session_images.c.ended_at,
                   func.max(answers.c.judged_at), func.max(answers.c.asked_at))
            .select_from(joined)
            .group_by(answers.c.model_id, session_images.c.id, session_images.c.served_at,
                      session_images.c.ended_at))).all()
        served_rounds = {r.model_id: r.id for r in (await conn.execute(
            select(model_rounds.c.model_id, model_rounds.c.id).where(model_rounds.c.model_id.is_not(None))
            .order_by(model_rounds.c.id))).all()}
        strata = await stratum_counts(conn, theta)   # in the same read: the cells add up to the totals
    stats: dict[str, RoundStats] = {}
    for model_id, qtype, tainted, n, flags, first in counts:
        s = stats.setdefault(model_id, RoundStats(model_id, served_rounds.get(model_id), first, 0, 0, 0, 0, 0.0))
        s.first_asked_at = min(s.first_asked_at, first)
        s.questions += n
        if not tainted:
            s.untainted_questions += n
            s.finds += int(flags or 0)
            seen, conf = s.by_type.get(qtype or "other", (0, 0))
            s.by_type[qtype or "other"] = (seen + n, conf)
    for model_id, qtype, n in confirmed:
        s = stats[model_id]
        s.confirmed += n
        seen, conf = s.by_type.get(qtype or "other", (0, 0))
        s.by_type[qtype or "other"] = (seen, conf + n)
    for model_id, served_at, ended_at, last_judged, last_asked in spans:
        end = ended_at or last_judged or last_asked
        if served_at is not None and end is not None and end > served_at:
            stats[model_id].player_minutes += (end - served_at) / 60_000
    for model_id, cells in strata.items():
        stats[model_id].by_stratum = cells
    return sorted(stats.values(), key=lambda s: s.first_asked_at)


async def stratum_counts(conn, theta: float) -> dict[str, dict[str, tuple[int, int]]]:
    """Per model and pool stratum (the image's complexity, with its scene style: "simple:dark"),
    (questions on untainted images, finds confirmed at θ). Question types say what players asked;
    strata say on which pictures the model still fails — the unit a withheld style is fixed in
    (SPEC §3.2: what each round fixed and which weaknesses remain)."""
    stratum = func.coalesce(images.c.complexity, "unknown")
    joined = (answers.join(session_images, answers.c.session_image_id == session_images.c.id)
              .join(images, images.c.id == answers.c.image_id))
    untainted = session_images.c.tainted.is_(False)
    posteriors = answer_posteriors_query().subquery()
    asked = (await conn.execute(
        select(answers.c.model_id, stratum, func.count()).select_from(joined).where(untainted)
        .group_by(answers.c.model_id, stratum))).all()
    confirmed = dict(((m, st), n) for m, st, n in (await conn.execute(
        select(answers.c.model_id, stratum, func.count())
        .select_from(joined.join(posteriors, posteriors.c.answer_id == answers.c.id))
        .where(and_(untainted, posteriors.c.posterior >= theta, posteriors.c.status == OK))
        .group_by(answers.c.model_id, stratum))).all())
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for model_id, st, n in asked:
        out.setdefault(model_id, {})[st] = (int(n), int(confirmed.get((model_id, st), 0)))
    return out


def report_lines(stats: list[RoundStats], theta: float) -> list[str]:
    """The per-round table a person reads (CLI and the bot's /rounds)."""
    if not stats:
        return ["No answers yet: nothing to report per round."]
    lines = [f"Model rounds (validated error rate = finds confirmed at θ={theta} / questions on untainted images):"]
    for s in stats:
        weak = ", ".join(f"{t} {r:.1%}" for t, r in s.weaknesses()) or "none confirmed"
        strata = ", ".join(f"{t} {r:.1%}" for t, r in s.weak_strata())
        lines.append(
            f"round {s.round if s.round is not None else 0} · {s.model_id}: {s.questions} questions "
            f"({s.untainted_questions} untainted), {s.finds} finds, {s.confirmed} confirmed → error rate "
            f"{s.error_rate:.1%}; {s.finds_per_player_minute:.2f} finds per player-minute "
            f"({s.player_minutes:.1f} min); weakest: {weak}" + (f"; weakest strata: {strata}" if strata else ""))
    return lines
