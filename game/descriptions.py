"""The describe round (SPEC §3.5): players describe an image in a sentence or two within
a time limit; other players rate whether a description fits the picture, and a
description confirmed by their ratings pays its writer once (`rules.description_award`).

Why a round of its own: the comparison of model and crowd (game/compare.py) needs
crowd descriptions of images whose content is known (a procedural scene graph, or
annotations of an imported image), stored with the time they took, next to honest
model descriptions of the same images. Only such images are served here.

Bad input never stores anything: the text is checked first (rules.clean_description),
a task id that is unknown or another player's is "not found" (a player can describe
only an image they were shown), a description after the deadline is refused as
expired, and a second description of the same task is a conflict — while a retried
request (same request_id) replays the first response.

The transaction functions are synchronous `fn(conn, ...)` for `Database.run_read` /
`run_write` (the service wraps them), in plain Core, for SQLite and PostgreSQL alike.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, literal, or_, select, update

from game import storage as q
from game import rules
from game.db import fast
from game.description_tables import describe_tasks, description_ratings, descriptions
from game.errors import Conflict, Expired, Invalid, NotFound, Unavailable
from game.tables import images, players, points_ledger

DESCRIBE_KIND = "describe"
RATE_KIND = "describe_rating"
POINTS_REASON = "description"
ID_MAX = 64
RATE_CANDIDATES = 50

HAS_TRUTH = or_(images.c.scene_json.is_not(None), images.c.annotations_json.is_not(None))


def clean_id(value: object, what: str) -> str:
    """An opaque id from a URL; a malformed one is simply unknown (404, like another player's)."""
    if not isinstance(value, str) or not value or len(value) > ID_MAX or not value.isalnum():
        raise NotFound(f"no such {what}")
    return value


def clean_fits(value: object) -> bool:
    """A rating: a JSON boolean (true = "the description fits the picture")."""
    if type(value) is not bool:
        raise Invalid("fits must be true or false")
    return value


def _replay(conn, player_id: int, request_id: str, kind: str) -> dict[str, Any] | None:
    row = q.first(fast(conn, q.REPLAY, {"pid": player_id, "rid": request_id}))
    if row is None:
        return None
    if row.kind != kind:
        raise Conflict("this request_id was already used for another request")
    return json.loads(row.response_json)


def _task_view(task_id: str, opaque_id: str, deadline_at: int, now: int) -> dict[str, Any]:
    return {"task_id": task_id, "status": "describing", "now_ms": now, "max_chars": rules.DESCRIPTION_MAX,
            "image": {"image_id": opaque_id, "deadline_ms": deadline_at,
                      "seconds_left": rules.seconds_left(now, deadline_at)}}


# ---------------------------------------------------------------------- describing

def tx_open_task(conn, player_id: int, task_id: str, now: int, seconds: float, rng: random.Random) -> dict[str, Any]:
    """The player's open task (served, not described, before its deadline), or a new one:
    an image with known content that this player has not been given yet, among those with
    the fewest crowd descriptions made or under way (so every image gathers some).
    Unavailable when none."""
    open_task = conn.execute(
        select(describe_tasks.c.id, describe_tasks.c.deadline_at, images.c.opaque_id)
        .join(images, images.c.id == describe_tasks.c.image_id)
        .where(and_(describe_tasks.c.player_id == player_id, describe_tasks.c.described_at.is_(None),
                    describe_tasks.c.deadline_at > now))
        .order_by(describe_tasks.c.served_at.desc()).limit(1)).first()
    if open_task is not None:
        return _task_view(open_task.id, open_task.opaque_id, open_task.deadline_at, now)
    # described or still open: two players describing at once get different images
    crowd = (select(describe_tasks.c.image_id, func.count().label("n"))
             .where(or_(describe_tasks.c.described_at.is_not(None), describe_tasks.c.deadline_at > now))
             .group_by(describe_tasks.c.image_id).subquery("crowd"))
    seen = select(describe_tasks.c.image_id).where(describe_tasks.c.player_id == player_id)
    rows = conn.execute(
        select(images.c.id, images.c.opaque_id, func.coalesce(crowd.c.n, 0).label("n"))
        .outerjoin(crowd, crowd.c.image_id == images.c.id)
        .where(and_(HAS_TRUTH, images.c.id.not_in(seen)))).all()
    if not rows:
        raise Unavailable("no image left to describe (the pool needs images with known content)")
    fewest = min(r.n for r in rows)
    chosen = rng.choice(sorted((r for r in rows if r.n == fewest), key=lambda r: r.id))
    deadline = rules.deadline_for(now, seconds)
    conn.execute(insert(describe_tasks).values(id=task_id, player_id=player_id, image_id=chosen.id,
                                               served_at=now, deadline_at=deadline))
    return _task_view(task_id, chosen.opaque_id, deadline, now)


def tx_describe(conn, player_id: int, task_id: str, description_id: str, request_id: str, text: str,
                now: int) -> dict[str, Any]:
    """Store a player's description of their task's image (idempotent on request_id)."""
    replay = _replay(conn, player_id, request_id, DESCRIBE_KIND)
    if replay is not None:
        return replay
    task = conn.execute(select(describe_tasks).where(and_(describe_tasks.c.id == task_id,
                                                          describe_tasks.c.player_id == player_id))).first()
    if task is None:
        raise NotFound("no such image to describe: describe only an image you were shown")
    if task.described_at is not None:
        raise Conflict("this image is already described")
    if rules.is_expired(now, task.deadline_at):
        raise Expired("time is up for this description; ask for a new image")
    changed = conn.execute(update(describe_tasks).where(and_(
        describe_tasks.c.id == task_id, describe_tasks.c.described_at.is_(None))).values(described_at=now))
    if changed.rowcount != 1:
        raise Conflict("this image is already described")
    seconds = round((now - task.served_at) / 1000.0, 3)
    conn.execute(insert(descriptions).values(
        id=description_id, image_id=task.image_id, source="crowd", player_id=player_id, task_id=task_id,
        text=text, seconds=seconds, points=0, request_id=request_id, created_at=now))
    response = {"status": "recorded", "description_id": description_id, "seconds": seconds}
    q.store_request(conn, player_id, request_id, DESCRIBE_KIND, response, now)
    return response


# ---------------------------------------------------------------------- rating (peer)

_COUNTING = players.c.muted.is_(False)


def rating_tallies(conn, description_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Counting (fits, misfits) ratings per description; muted raters are kept but do not count."""
    if not description_ids:
        return {}
    rows = conn.execute(
        select(description_ratings.c.description_id, description_ratings.c.fits, func.count().label("n"))
        .join(players, players.c.id == description_ratings.c.rater_player_id)
        .where(and_(description_ratings.c.description_id.in_(description_ids), _COUNTING))
        .group_by(description_ratings.c.description_id, description_ratings.c.fits)).all()
    out: dict[str, list[int]] = {}
    for r in rows:
        pair = out.setdefault(r.description_id, [0, 0])
        pair[0 if r.fits else 1] += int(r.n)
    return {k: (v[0], v[1]) for k, v in out.items()}


def tx_next_to_rate(conn, player_id: int) -> dict[str, Any]:
    """Another player's undecided crowd description for this player to rate, fewest
    ratings first (so decisions come quickly); NotFound when none."""
    n_ratings = (select(description_ratings.c.description_id, func.count().label("n"))
                 .group_by(description_ratings.c.description_id).subquery("n_ratings"))
    mine = select(description_ratings.c.description_id).where(description_ratings.c.rater_player_id == player_id)
    rows = conn.execute(
        select(descriptions.c.id, descriptions.c.text, images.c.opaque_id)
        .join(images, images.c.id == descriptions.c.image_id)
        .join(players, players.c.id == descriptions.c.player_id)
        .outerjoin(n_ratings, n_ratings.c.description_id == descriptions.c.id)
        .where(and_(descriptions.c.source == "crowd", descriptions.c.player_id != player_id,
                    descriptions.c.points == 0, players.c.muted.is_(False), descriptions.c.id.not_in(mine)))
        .order_by(func.coalesce(n_ratings.c.n, 0), descriptions.c.created_at, descriptions.c.id)
        .limit(RATE_CANDIDATES)).all()
    tallies = rating_tallies(conn, [r.id for r in rows])
    for r in rows:
        if rules.validation_status(*tallies.get(r.id, (0, 0))) == "pending":
            return {"description_id": r.id, "text": r.text, "image": {"image_id": r.opaque_id}}
    raise NotFound("no descriptions to rate right now")


def tx_rate(conn, player_id: int, description_id: str, request_id: str, fits: bool, now: int) -> dict[str, Any]:
    """Store one rating (idempotent on request_id); when the ratings confirm the
    description, pay its writer once (a guarded update of `points`, then the ledger).
    Returns the response plus `_paid` (for the service; stripped before the client)."""
    replay = _replay(conn, player_id, request_id, RATE_KIND)
    if replay is not None:
        return replay
    target = conn.execute(select(descriptions.c.id, descriptions.c.player_id).where(and_(
        descriptions.c.id == description_id, descriptions.c.source == "crowd")).with_for_update()).first()
    if target is None or target.player_id == player_id:  # own description: "not found", like any other id
        raise NotFound("no such description")
    already = conn.execute(select(description_ratings.c.id).where(and_(
        description_ratings.c.description_id == description_id,
        description_ratings.c.rater_player_id == player_id))).first()
    if already is not None:
        raise Conflict("you have already rated this description")
    conn.execute(insert(description_ratings).values(description_id=description_id, rater_player_id=player_id,
                                                    fits=fits, request_id=request_id, created_at=now))
    award = rules.description_award(*rating_tallies(conn, [description_id]).get(description_id, (0, 0)))
    paid = False
    if award > 0:
        changed = conn.execute(update(descriptions).where(and_(
            descriptions.c.id == description_id, descriptions.c.points == 0)).values(points=award))
        if changed.rowcount == 1:
            conn.execute(insert(points_ledger).values(player_id=target.player_id, answer_id=None,
                                                      reason=POINTS_REASON, points=award, created_at=now))
            paid = True
    response = {"status": "recorded", "description_id": description_id, "fits": fits}
    q.store_request(conn, player_id, request_id, RATE_KIND, response, now)
    return dict(response, _paid=paid)


# ---------------------------------------------------------------------- for the comparison

@dataclass(frozen=True)
class StoredDescription:
    """One stored description with what the comparison needs (SPEC §3.5)."""

    id: str
    image_id: int
    source: str
    model_id: str | None
    based_on: str | None
    text: str
    seconds: float
    points: int


@dataclass(frozen=True)
class KnownImage:
    """An image whose content is known: its scene graph or its annotations (JSON text)."""

    image_id: int
    content: bytes
    scene_json: str | None
    annotations_json: str | None


def tx_descriptions(conn) -> list[StoredDescription]:
    """Every stored description, oldest first."""
    rows = conn.execute(select(descriptions).order_by(descriptions.c.created_at, descriptions.c.id)).all()
    return [StoredDescription(r.id, r.image_id, r.source, r.model_id, r.based_on, r.text, float(r.seconds),
                              int(r.points)) for r in rows]


def tx_known_images(conn, image_ids: list[int], with_content: bool = True) -> list[KnownImage]:
    """The described images with their ground truth (and their bytes, unless not needed)."""
    if not image_ids:
        return []
    content = images.c.content if with_content else literal(b"").label("content")
    rows = conn.execute(select(images.c.id, content, images.c.scene_json, images.c.annotations_json)
                        .where(images.c.id.in_(image_ids)).order_by(images.c.id)).all()
    return [KnownImage(r.id, bytes(r.content), r.scene_json, r.annotations_json) for r in rows]


def tx_store_generated(conn, row: dict[str, Any]) -> None:
    """Store a model (or rewrite) description computed by `gap compare`."""
    if row["source"] not in ("model", "rewrite"):
        raise ValueError(f"not a generated source: {row['source']!r}")
    conn.execute(insert(descriptions).values(points=0, player_id=None, task_id=None, request_id=None, **row))
