"""Peer validation of finds (SPEC §3.3).

A *find* is a Wrong verdict with a correction on an answer of an **untainted**
session image: the game cannot score it during the session, so other players
check it ("Is this answer wrong? Here is the correction."). Their votes

- decide the find (rules.validation_status: confirmed / rejected / pending) and,
  on confirmation, pay the finder the +20 bonus once through the points ledger
  (reason "find_bonus", unique per answer), so it counts on the leaderboards;
- feed the evaluation: each counting vote is an independent noisy observation
  of the same truth, with the validator's own sensitivity s and false-alarm
  rate f (SPEC §2), so it multiplies the find's posterior odds by s/f (agree)
  or (1−s)/(1−f) (disagree) — `posterior_with_votes`, stored per find by
  `store_vote_posteriors` during `gap evaluate`.

A player never validates their own find, votes at most once per find, and the
votes of muted players (admin mute, or the evaluation's anti-gaming mute) are
stored but never count. Nothing here tells a validator whether an image was
tainted: a find's payload has the same fields whatever happened elsewhere.

The transaction functions are synchronous `fn(conn, ...)` for
`Database.run_read` / `run_write` (the service wraps them), in plain Core, so
they run on SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, exists, func, insert, literal, not_, or_, select

from game import storage as q
from game import rules
from game.db import fast
from game.errors import Conflict, Invalid, NotFound
from game.evaluation_tables import find_answers, find_cells, player_estimates
from game.tables import (
    answers,
    images,
    players,
    points_ledger,
    session_images,
    sessions,
    validation_posteriors,
    validations,
)

BONUS_REASON = "find_bonus"
REQUEST_KIND = "validation"
FIND_ID_MAX = 64

A, SI, V = answers, session_images, validations
FINDER = players.alias("finder")
VOTER = players.alias("voter")

# A find: a Wrong verdict with a correction on an answer of an untainted session image.
IS_FIND = and_(A.c.verdict == "wrong", A.c.correction.is_not(None), SI.c.tainted.is_(False))
# Finds are shown only once the finder's session is over: a find seen mid-session (say by
# the finder's second account) would tell which of the session's images were untainted.
SHOWABLE = and_(IS_FIND, sessions.c.status == "finished")
_FIND_JOINED = (A.join(SI, SI.c.id == A.c.session_image_id)
                .join(sessions, sessions.c.id == A.c.session_id))

# A vote counts unless its validator is muted by an admin (players.muted) or by the
# evaluation's anti-gaming rules (player_estimates.muted): "agreement from reliable players".
COUNTING = and_(VOTER.c.muted.is_(False), or_(player_estimates.c.muted.is_(None),
                                               player_estimates.c.muted.is_(False)))
_VOTES_JOINED = (V.join(VOTER, VOTER.c.id == V.c.validator_player_id)
                 .outerjoin(player_estimates, player_estimates.c.player_id == V.c.validator_player_id))


def _tally_columns():
    agree = func.coalesce(func.sum(case((and_(COUNTING, V.c.agrees.is_(True)), 1), else_=0)), 0)
    disagree = func.coalesce(func.sum(case((and_(COUNTING, V.c.agrees.is_(False)), 1), else_=0)), 0)
    return agree.label("agree"), disagree.label("disagree")


def clean_agrees(value: object) -> bool:
    """The vote: a JSON boolean (true = "the answer is wrong"); anything else is refused."""
    if type(value) is not bool:
        raise Invalid("agrees must be true or false")
    return value


def clean_find_id(value: object) -> str:
    """An opaque find id (the answer's id). Malformed ids are simply unknown: 404, not 400."""
    if not isinstance(value, str) or not value or len(value) > FIND_ID_MAX or not value.isalnum():
        raise NotFound("no such find")
    return value


# ---------------------------------------------------------------------- decisions

def vote_tallies(conn, answer_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Counting (agree, disagree) votes per find; finds without votes are absent."""
    if not answer_ids:
        return {}
    agree, disagree = _tally_columns()
    rows = conn.execute(select(V.c.answer_id, agree, disagree).select_from(_VOTES_JOINED)
                        .where(V.c.answer_id.in_(list(answer_ids))).group_by(V.c.answer_id)).all()
    return {r.answer_id: (int(r.agree), int(r.disagree)) for r in rows}


def find_statuses(conn, answer_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`{answer_id: {"status", "bonus"}}` for finds: "confirmed" exactly when the bonus
    was paid (so the summary never shows a confirmation without its points), else
    "rejected" or "pending" by the rule on the counting votes."""
    if not answer_ids:
        return {}
    ids = list(answer_ids)
    tallies = vote_tallies(conn, ids)
    paid = {r.answer_id: int(r.points) for r in conn.execute(
        select(points_ledger.c.answer_id, points_ledger.c.points).where(and_(
            points_ledger.c.answer_id.in_(ids), points_ledger.c.reason == BONUS_REASON))).all()}
    out = {}
    for answer_id in ids:
        if answer_id in paid:
            out[answer_id] = {"status": "confirmed", "bonus": paid[answer_id]}
            continue
        status = rules.validation_status(*tallies.get(answer_id, (0, 0)))
        out[answer_id] = {"status": "rejected" if status == "rejected" else "pending", "bonus": 0}
    return out


def _decided_sql(agree, disagree):
    """rules.validation_status(agree, disagree) != "pending", as SQL over the tally columns
    (the same integer comparisons; tests check both agree)."""
    total = agree + disagree
    cn, cd = rules.VALIDATION_CONFIRM_SHARE
    rn, rd = rules.VALIDATION_REJECT_SHARE
    confirmed = and_(agree >= rules.VALIDATION_MIN_VOTES, agree * cd >= total * cn)
    rejected = and_(disagree >= rules.VALIDATION_MIN_VOTES, agree * rd < total * rn)
    return or_(confirmed, rejected)


# ---------------------------------------------------------------------- the queue

def tx_next_find(conn, player_id: int) -> dict[str, Any]:
    """The next find for `player_id` to check: from a finished session, undecided, not
    theirs, not voted by them, not from a muted finder; fewest counting votes first (then
    fewest votes, then oldest), so decisions come quickly. NotFound when none."""
    agree, disagree = _tally_columns()
    tally = (select(V.c.answer_id, func.count().label("n"), agree, disagree).select_from(_VOTES_JOINED)
             .group_by(V.c.answer_id).subquery("tally"))
    t_agree, t_disagree = func.coalesce(tally.c.agree, 0), func.coalesce(tally.c.disagree, 0)
    mine = exists().where(and_(V.c.answer_id == A.c.id, V.c.validator_player_id == player_id))
    paid = exists().where(and_(points_ledger.c.answer_id == A.c.id, points_ledger.c.reason == BONUS_REASON))
    query = (
        select(A.c.id, A.c.question, A.c.served_answer, A.c.correction, images.c.opaque_id)
        .select_from(_FIND_JOINED
                     .join(FINDER, FINDER.c.id == A.c.player_id)
                     .join(images, images.c.id == A.c.image_id)
                     .outerjoin(tally, tally.c.answer_id == A.c.id))
        .where(and_(SHOWABLE, A.c.player_id != player_id, FINDER.c.muted.is_(False), not_(mine), not_(paid),
                    not_(_decided_sql(t_agree, t_disagree))))
        .order_by(t_agree + t_disagree, func.coalesce(tally.c.n, 0), A.c.judged_at, A.c.id)
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("no finds to check right now")
    return {"find_id": row.id, "image": {"image_id": row.opaque_id}, "question": row.question,
            "answer": row.served_answer, "correction": row.correction}


# ---------------------------------------------------------------------- voting

def _replay(conn, player_id: int, request_id: str) -> dict[str, Any] | None:
    import json

    row = q.first(fast(conn, q.REPLAY, {"pid": player_id, "rid": request_id}))
    if row is None:
        return None
    if row.kind != REQUEST_KIND:
        raise Conflict("this request_id was already used for another request")
    return json.loads(row.response_json)


def tx_record_vote(conn, player_id: int, find_id: str, request_id: str, agrees: bool, now: int) -> dict[str, Any]:
    """Store one vote (idempotent on request_id), then decide the find and pay the
    finder's bonus once on confirmation. Returns `{"status": "recorded", ...}` plus
    `_bonus_paid` (for the service; stripped before the client sees it)."""
    replay = _replay(conn, player_id, request_id)
    if replay is not None:
        return replay
    # FOR UPDATE OF the find: validators voting on it at the same moment take turns, so the
    # tally below counts the other's vote (PostgreSQL, READ COMMITTED; without the lock two
    # concurrent confirming votes each saw one and the bonus was never paid). SQLite ignores
    # it: its write transactions are serialised already.
    find = conn.execute(select(A.c.id, A.c.player_id).select_from(_FIND_JOINED)
                        .where(and_(A.c.id == find_id, SHOWABLE)).with_for_update(of=A)).first()
    if find is None or find.player_id == player_id:  # own find: "not found", like any other id
        raise NotFound("no such find")
    voted = conn.execute(select(V.c.id).where(and_(V.c.answer_id == find_id,
                                                   V.c.validator_player_id == player_id))).first()
    if voted is not None:
        raise Conflict("you have already checked this find")
    conn.execute(insert(V).values(answer_id=find_id, validator_player_id=player_id, agrees=agrees,
                                  request_id=request_id, created_at=now))
    bonus_paid = False
    agree, disagree = vote_tallies(conn, [find_id]).get(find_id, (0, 0))
    if rules.validation_status(agree, disagree) == "confirmed":
        # INSERT … SELECT … WHERE NOT EXISTS: paid once even when votes race (and the
        # unique (answer_id, reason) constraint backs it up across workers).
        already = exists().where(and_(points_ledger.c.answer_id == find_id,
                                      points_ledger.c.reason == BONUS_REASON))
        result = conn.execute(insert(points_ledger).from_select(
            ["player_id", "answer_id", "reason", "points", "created_at"],
            select(literal(find.player_id), literal(find_id), literal(BONUS_REASON),
                   literal(rules.FIND_BONUS_POINTS), literal(now)).where(not_(already))))
        bonus_paid = result.rowcount == 1
    response = {"status": "recorded", "find_id": find_id, "agrees": agrees}
    q.store_request(conn, player_id, request_id, REQUEST_KIND, response, now)
    return dict(response, _bonus_paid=bonus_paid)


# ---------------------------------------------------------------------- evaluation feed

@dataclass(frozen=True)
class Vote:
    """One counting vote with its validator's estimated sensitivity and false-alarm rate."""

    agrees: bool
    s: float
    f: float


_EPS = 1e-6


def posterior_with_votes(prior: float, votes: Iterable[Vote | tuple[bool, float, float]]) -> float:
    """Update P(model mistake) of a find with validators' votes.

    Each validator is an independent noisy observer of the same truth M: they say
    "wrong" with probability s if the answer is wrong and f if it is right (SPEC §2).
    So an agreeing vote multiplies the odds by s/f and a disagreeing one by
    (1−s)/(1−f). Computed in log-odds; s and f are clipped to (0, 1) so one
    estimate at the boundary cannot make the posterior exactly 0 or 1. A prior of
    exactly 0 or 1 is certain and stays so."""
    if not 0.0 <= prior <= 1.0 or math.isnan(prior):
        raise ValueError(f"prior must be a probability, got {prior!r}")
    if prior in (0.0, 1.0):
        return prior
    log_odds = math.log(prior) - math.log1p(-prior)
    for vote in votes:
        agrees, s, f = (vote.agrees, vote.s, vote.f) if isinstance(vote, Vote) else vote
        s = min(max(float(s), _EPS), 1 - _EPS)
        f = min(max(float(f), _EPS), 1 - _EPS)
        log_odds += (math.log(s) - math.log(f)) if agrees else (math.log1p(-s) - math.log1p(-f))
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    e = math.exp(log_odds)
    return e / (1.0 + e)


def votes_by_find(conn, answer_ids: Sequence[str] | None = None) -> dict[str, list[Vote]]:
    """Counting votes per find with the validators' current s and f (posterior means
    from `player_estimates`). Validators without estimates yet carry no information
    about their reliability and are left out (a Beta(1,1) validator has s = f)."""
    query = (select(V.c.answer_id, V.c.agrees, player_estimates.c.s_mean, player_estimates.c.f_mean)
             .select_from(V.join(VOTER, VOTER.c.id == V.c.validator_player_id)
                          .join(player_estimates, player_estimates.c.player_id == V.c.validator_player_id))
             .where(and_(VOTER.c.muted.is_(False), player_estimates.c.muted.is_(False)))
             .order_by(V.c.answer_id, V.c.id))
    if answer_ids is not None:
        query = query.where(V.c.answer_id.in_(list(answer_ids)))
    out: dict[str, list[Vote]] = {}
    for r in conn.execute(query).all():
        out.setdefault(r.answer_id, []).append(Vote(bool(r.agrees), float(r.s_mean), float(r.f_mean)))
    return out


def store_vote_posteriors(conn, now_ms: int) -> int:
    """Rewrite `validation_posteriors`: for every evaluated find with counting votes, its
    cell posterior (find_cells) updated by the votes. Run by `gap evaluate` inside its
    write transaction, after the player estimates and cells are stored (call it with
    `await conn.run_sync(store_vote_posteriors, now_ms)`). Returns the number of finds."""
    votes = votes_by_find(conn)
    conn.execute(validation_posteriors.delete())
    if not votes:
        return 0
    priors = {r.answer_id: float(r.posterior) for r in conn.execute(
        select(find_answers.c.answer_id, find_cells.c.posterior)
        .select_from(find_answers.join(find_cells, and_(find_cells.c.player_id == find_answers.c.player_id,
                                                        find_cells.c.grp == find_answers.c.grp)))
        .where(exists().where(V.c.answer_id == find_answers.c.answer_id))).all()}
    rows = [{"answer_id": a, "prior": priors[a], "posterior": posterior_with_votes(priors[a], v),
             "votes": len(v), "updated_at": now_ms} for a, v in votes.items() if a in priors]
    if rows:
        conn.execute(insert(validation_posteriors), rows)
    return len(rows)
