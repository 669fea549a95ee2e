"""Read-mostly queries for the operator's views (bot /stats, /pool, /mute,
/broadcast, /score) — pure SQLAlchemy Core over game/tables.py.

Why a separate module: these are reporting queries, not game rules; keeping
them out of the game service keeps the service small, and keeping them in
game/ lets any front end (bot, CLI, web) reuse them. No Telegram, no HTTP.
All functions take the game's Database (writes go through its single writer)
and work the same on SQLite and PostgreSQL (times are integer epoch milliseconds; day buckets use integer division).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select, update

from game.db import Database

from game.tables import answers, images, players, points_ledger, session_images, sessions

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class Overview:
    """Headline numbers of the game."""

    players: int
    muted_players: int
    sessions: int
    finished_sessions: int
    images_per_session: float   # mean number of images served per session
    answers: int
    flags: int                  # Wrong verdicts (any image)
    tainted_catches: int        # Wrong on a tainted answer
    false_alarms: int           # Wrong on an honest answer of a tainted image
    finds: int                  # Wrong on an untainted image (candidate training data)


@dataclass(frozen=True)
class PoolRow:
    pool: str
    images: int
    reliable: int
    measured_accuracy: float | None     # mean images.model_accuracy (offline measurement)
    judged_untainted: int               # answers on untainted images with a verdict
    judged_correct_share: float | None  # share of those the players judged Correct


@dataclass(frozen=True)
class PlayerRef:
    id: int
    player_key: str
    display_name: str | None
    muted: bool
    chat_id: int | None


@dataclass(frozen=True)
class PlayerScore:
    """What /score shows a player about themselves."""

    player_id: int
    total_points: int
    week_points: int
    rank: int | None            # all-time rank among players with points; None without points
    ranked_players: int
    sessions: int
    tainted_judged: int         # tainted answers judged (gold observations)
    tainted_caught: int
    honest_judged: int          # honest answers on tainted images judged
    false_alarms: int
    finds: int


async def overview(db: Database) -> Overview:
    """Counts over the whole database (cheap aggregate queries)."""
    wrong = answers.c.verdict == "wrong"
    async with db.read() as conn:
        p = (await conn.execute(
            select(func.count(), func.coalesce(func.sum(case((players.c.muted, 1), else_=0)), 0))
            .select_from(players))).one()
        s = (await conn.execute(
            select(func.count(), func.coalesce(func.sum(case((sessions.c.status == "finished", 1), else_=0)), 0))
            .select_from(sessions))).one()
        served = (await conn.execute(
            select(func.count()).select_from(session_images).where(session_images.c.served_at.is_not(None)))).scalar_one()
        a = (await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((wrong, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(wrong, answers.c.tainted), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(wrong, session_images.c.tainted, ~answers.c.tainted), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(wrong, ~session_images.c.tainted), 1), else_=0)), 0),
            ).select_from(answers.join(session_images, answers.c.session_image_id == session_images.c.id))
        )).one()
    return Overview(
        players=int(p[0]), muted_players=int(p[1]), sessions=int(s[0]), finished_sessions=int(s[1]),
        images_per_session=(served / s[0]) if s[0] else 0.0,
        answers=int(a[0]), flags=int(a[1]), tainted_catches=int(a[2]), false_alarms=int(a[3]), finds=int(a[4]),
    )


async def sessions_per_day(db: Database, *, days: int = 30, now_ms: int) -> list[tuple[int, int]]:
    """(day number since the epoch, sessions started) for the last `days` days, zero-filled."""
    first_day = now_ms // DAY_MS - days + 1
    day = sessions.c.created_at // DAY_MS  # SQLAlchemy renders integer floor division for each backend
    async with db.read() as conn:
        rows = (await conn.execute(
            select(day.label("day"), func.count()).where(sessions.c.created_at >= first_day * DAY_MS).group_by("day")
        )).all()
    counts = {int(d): int(n) for d, n in rows}
    return [(d, counts.get(d, 0)) for d in range(first_day, first_day + days)]


async def images_reached_per_session(db: Database) -> list[int]:
    """For each session, how many of its images were served (1..10; 0 if none yet)."""
    reached = func.coalesce(func.sum(case((session_images.c.served_at.is_not(None), 1), else_=0)), 0)
    async with db.read() as conn:
        rows = (await conn.execute(
            select(sessions.c.id, reached).select_from(
                sessions.outerjoin(session_images, session_images.c.session_id == sessions.c.id)
            ).group_by(sessions.c.id)
        )).all()
    return [int(n) for _, n in rows]


async def player_sensitivity(db: Database) -> list[tuple[int, float, int]]:
    """(player id, posterior mean of s under Beta(1,1), tainted answers judged) for
    every player with at least one judged tainted answer — SPEC §2's s = P(H=0 | M=0)."""
    caught = func.sum(case((answers.c.verdict == "wrong", 1), else_=0))
    async with db.read() as conn:
        rows = (await conn.execute(
            select(answers.c.player_id, caught, func.count())
            .where(answers.c.tainted, answers.c.verdict.is_not(None))
            .group_by(answers.c.player_id)
        )).all()
    return [(int(pid), (int(k) + 1) / (int(n) + 2), int(n)) for pid, k, n in rows]


async def pools(db: Database) -> list[PoolRow]:
    """Image pools with their measured model accuracy and how players judged untainted answers."""
    async with db.read() as conn:
        base = (await conn.execute(
            select(
                images.c.pool, func.count(), func.coalesce(func.sum(case((images.c.reliable, 1), else_=0)), 0),
                func.avg(images.c.model_accuracy),
            ).group_by(images.c.pool).order_by(images.c.pool)
        )).all()
        judged = (await conn.execute(
            select(
                images.c.pool, func.count(), func.sum(case((answers.c.verdict == "correct", 1), else_=0)),
            ).select_from(
                answers.join(session_images, answers.c.session_image_id == session_images.c.id)
                .join(images, answers.c.image_id == images.c.id)
            ).where(~session_images.c.tainted, answers.c.verdict.is_not(None)).group_by(images.c.pool)
        )).all()
    by_pool = {pool: (int(n), int(k or 0)) for pool, n, k in judged}
    out = []
    for pool, n_images, n_reliable, acc in base:
        n, k = by_pool.get(pool, (0, 0))
        out.append(PoolRow(pool, int(n_images), int(n_reliable), float(acc) if acc is not None else None,
                           n, (k / n) if n else None))
    return out


_KEY_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")
_MAX_ID = 2**31 - 1  # players.id is an INTEGER column


async def find_player(db: Database, ref: str) -> PlayerRef | None:
    """A player by `#<number>` / `<number>` (internal id, as /score shows it) or by a
    player-key prefix of at least 8 hex digits. Ambiguous prefixes match nothing."""
    ref = ref.strip().lower()
    cols = (players.c.id, players.c.player_key, players.c.display_name, players.c.muted, players.c.chat_id)
    if ref.startswith("#"):
        ref = ref[1:]
    if ref.isdigit() and len(ref) <= 12:
        if int(ref) > _MAX_ID:  # e.g. a Telegram user id typed by mistake: no such player
            return None         # (PostgreSQL refuses to compare an INTEGER with it at all)
        query = select(*cols).where(players.c.id == int(ref))
    elif _KEY_PREFIX.match(ref):
        query = select(*cols).where(players.c.player_key.startswith(ref, autoescape=True)).limit(2)
    else:
        return None
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    if len(rows) != 1:
        return None
    r = rows[0]
    return PlayerRef(int(r[0]), r[1], r[2], bool(r[3]), r[4])


async def set_muted(db: Database, player_id: int, muted: bool) -> bool:
    """Mute or unmute a player (their flags are kept but not exported). True if the player exists."""
    async with db.write() as conn:
        result = await conn.execute(update(players).where(players.c.id == player_id).values(muted=muted))
    return bool(result.rowcount)


async def set_banned(db: Database, player_id: int, reason: str | None, now_ms: int) -> bool:
    """Ban a player (with a reason) or lift the ban (reason None). A banned player is refused
    every play request and leaves the leaderboards; nothing of theirs is deleted (SPEC §1.4).
    True if the player exists."""
    values = ({"banned_at": now_ms, "ban_reason": (reason or "")[:200] or None} if reason is not None
              else {"banned_at": None, "ban_reason": None})
    async with db.write() as conn:
        result = await conn.execute(update(players).where(players.c.id == player_id).values(**values))
    return bool(result.rowcount)


async def remember_chat(db: Database, player_id: int, chat_id: int, referrer: str | None = None) -> None:
    """Store the player's private chat (for /broadcast) and, once, who referred them.

    The first referrer wins: a later /start with another deep-link parameter
    does not overwrite it. Referrers are limited to Telegram's deep-link
    alphabet (A-Z a-z 0-9 _ -, at most 64 characters); anything else is dropped."""
    values: dict[str, object] = {}
    async with db.read() as conn:
        row = (await conn.execute(select(players.c.chat_id, players.c.referrer).where(players.c.id == player_id))).first()
    if row is None:
        return
    if row.chat_id != chat_id:
        values["chat_id"] = chat_id
    if referrer and row.referrer is None and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", referrer):
        values["referrer"] = referrer
    if values:
        async with db.write() as conn:
            await conn.execute(update(players).where(players.c.id == player_id).values(**values))


async def last_session_id(db: Database, player_id: int) -> str | None:
    """The player's most recent session (to show its summary after the last picture timed out)."""
    async with db.read() as conn:
        row = (await conn.execute(
            select(sessions.c.id).where(sessions.c.player_id == player_id)
            .order_by(sessions.c.created_at.desc(), sessions.c.id).limit(1)
        )).first()
    return str(row[0]) if row else None


async def broadcast_chat_ids(db: Database) -> list[int]:
    """Private chats of every player who has talked to the bot (distinct, stable order)."""
    async with db.read() as conn:
        rows = (await conn.execute(
            select(players.c.chat_id).where(players.c.chat_id.is_not(None)).distinct().order_by(players.c.chat_id)
        )).all()
    return [int(r[0]) for r in rows]


async def player_score(db: Database, player_id: int, *, now_ms: int) -> PlayerScore:
    """A player's totals, weekly points, all-time rank and gold observations."""
    totals = select(points_ledger.c.player_id, func.sum(points_ledger.c.points).label("total")).group_by(
        points_ledger.c.player_id).subquery()
    wrong = answers.c.verdict == "wrong"
    async with db.read() as conn:
        total = (await conn.execute(
            select(func.coalesce(func.sum(points_ledger.c.points), 0)).where(points_ledger.c.player_id == player_id)
        )).scalar_one()
        week = (await conn.execute(
            select(func.coalesce(func.sum(points_ledger.c.points), 0)).where(
                points_ledger.c.player_id == player_id, points_ledger.c.created_at >= now_ms - WEEK_MS)
        )).scalar_one()
        ranked = (await conn.execute(select(func.count()).select_from(totals))).scalar_one()
        better = (await conn.execute(select(func.count()).select_from(totals).where(totals.c.total > total))).scalar_one()
        has_points = (await conn.execute(
            select(func.count()).select_from(totals).where(totals.c.player_id == player_id))).scalar_one()
        n_sessions = (await conn.execute(
            select(func.count()).select_from(sessions).where(sessions.c.player_id == player_id))).scalar_one()
        a = (await conn.execute(
            select(
                func.coalesce(func.sum(case((answers.c.tainted, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(answers.c.tainted, wrong), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(session_images.c.tainted, ~answers.c.tainted), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(session_images.c.tainted, ~answers.c.tainted, wrong), 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(~session_images.c.tainted, wrong), 1), else_=0)), 0),
            ).select_from(answers.join(session_images, answers.c.session_image_id == session_images.c.id))
            .where(answers.c.player_id == player_id, answers.c.verdict.is_not(None))
        )).one()
    return PlayerScore(
        player_id=player_id, total_points=int(total), week_points=int(week),
        rank=(int(better) + 1) if has_points else None, ranked_players=int(ranked), sessions=int(n_sessions),
        tainted_judged=int(a[0]), tainted_caught=int(a[1]), honest_judged=int(a[2]), false_alarms=int(a[3]),
        finds=int(a[4]),
    )
