"""Abuse limits: how often a player, a network origin or a chat may act, and bans.

Why in the database: several web workers serve the same players behind a load
balancer (SPEC §4.2), so a counter in one process would let a script multiply
its allowance by the number of workers. Each hit is one short write
transaction — an atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING` on the
`rate_limits` row of (subject, window) — which both SQLite and PostgreSQL
serialise per row, so N workers together allow exactly the configured count.

Fixed windows: a subject may make `count` hits per `seconds`-long window
aligned to the epoch; every attempt counts, refused ones too, so a flood stays
refused until its window ends and `Retry-After` (the seconds left in the
window) is exact. The price of fixed windows is that a burst straddling a
boundary may reach twice the count in a short span; the limits are set well
above what a person playing (120-second images, SPEC §1.1) can reach.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from game.errors import GameError
from game.tables import players, rate_limits

ACTIONS = ("question", "verdict", "session", "update")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600}


class RateLimited(GameError):
    """Too many requests of one kind from one player, origin or chat. Maps to 429 + Retry-After."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, first: bool = True) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.first = first  # the first refused hit of its window (the bot answers only that one)


class Banned(GameError):
    """An admin banned this player: no play, no points, no place on the leaderboards. Maps to 403."""

    code = "banned"


@dataclass(frozen=True)
class Rate:
    """`count` hits per `seconds`; a count of 0 switches the limit off."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Rate":
        """"30/60" (30 per 60 seconds), "20/1h", "0/60" (off)."""
        match = _RATE.match(text or "")
        if match is None:
            raise ValueError(f"a rate is <count>/<seconds> such as 30/60 or 20/1h, got {text!r}")
        seconds = int(match.group(2)) * _UNIT[match.group(3)]
        if seconds <= 0:
            raise ValueError(f"a rate's window must be positive, got {text!r}")
        return cls(int(match.group(1)), seconds)

    @property
    def enabled(self) -> bool:
        return self.count > 0


@dataclass(frozen=True)
class Limits:
    """Rates per action for each kind of subject ("player", "origin", "chat")."""

    player: dict[str, Rate] = field(default_factory=dict)
    origin: dict[str, Rate] = field(default_factory=dict)
    chat: dict[str, Rate] = field(default_factory=dict)

    def rates(self, action: str, player_id: int | None, origin: str | None,
              chat_id: int | None) -> list[tuple[str, Rate]]:
        """The (bucket, rate) pairs one hit of `action` counts against."""
        out = []
        for kind, subject, table in (("p", player_id, self.player), ("o", origin, self.origin),
                                     ("c", chat_id, self.chat)):
            rate = table.get(action)
            if subject is not None and rate is not None and rate.enabled:
                out.append((f"{action}:{kind}:{subject}"[:160], rate))
        return out


def _upsert(conn):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(rate_limits)


def tx_hit(conn, buckets: list[tuple[str, Rate]], now_ms: int) -> list[tuple[int, int, int]]:
    """Count one hit in each bucket's current window: [(hits, count, ms left in window)].

    The first hit of a window also deletes the bucket's older windows, so the
    table holds about one row per active subject."""
    out = []
    for bucket, rate in buckets:
        window_ms = rate.seconds * 1000
        start = now_ms - now_ms % window_ms
        stmt = _upsert(conn).values(bucket=bucket, window_start=start, hits=1)
        stmt = stmt.on_conflict_do_update(index_elements=["bucket", "window_start"],
                                          set_={"hits": rate_limits.c.hits + 1}).returning(rate_limits.c.hits)
        hits = int(conn.execute(stmt).scalar_one())
        if hits == 1:
            conn.execute(delete(rate_limits).where(rate_limits.c.bucket == bucket,
                                                   rate_limits.c.window_start < start))
        out.append((hits, rate.count, start + window_ms - now_ms))
    return out


def refusal(results: list[tuple[int, int, int]], what: str) -> RateLimited | None:
    """The error for the most restrictive exceeded bucket, or None when all are within their counts."""
    over = [(left, hits == count + 1) for hits, count, left in results if hits > count]
    if not over:
        return None
    left_ms, first = max(over)
    seconds = max(1, math.ceil(left_ms / 1000))
    return RateLimited(f"too many {what}; try again in {seconds} s", seconds, first=all(f for _, f in over))


def tx_is_banned(conn, player_id: int) -> bool:
    return conn.execute(select(players.c.banned_at).where(players.c.id == player_id)).scalar() is not None
