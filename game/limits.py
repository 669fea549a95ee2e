"""Abuse limits: how often a player, a network origin or a chat may act, and bans.

Why in the database: several web workers serve the same players behind a load
balancer (SPEC §4.2), so a counter in one process would let a script multiply
its allowance by the number of workers. Each hit is an atomic
`INSERT … ON CONFLICT DO UPDATE … RETURNING` on the `rate_limits` row of
(subject, window), which both SQLite and PostgreSQL serialise per row, so N
workers together allow exactly the configured count. The hit is counted inside
the write transaction the request makes anyway (`tx_guarded`: verdicts, votes,
session starts); only a question, whose model call must not start before it is
allowed and must not run inside a transaction, counts in a short one of its own.
The statements are built once and run through `game.db.fast`: built per call they
cost more CPU than the rest of a request's SQL together.

Fixed windows: a subject may make `count` hits per `seconds`-long window
aligned to the epoch; every attempt counts, refused ones too, so a flood stays
refused until its window ends and `Retry-After` (the seconds left in the
window) is exact. The price of fixed windows is that a burst straddling a
boundary may reach twice the count in a short span; the limits are set well
above what a person playing (120-second images, SPEC §1.1) can reach.
"""
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from game.db import fast
from game.errors import GameError
from game.tables import player_networks, players, rate_limits

ACTIONS = ("question", "verdict", "session", "update")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600}
T = TypeVar("T")


class RateLimited(GameError):
    """Too many requests of one kind from one player, origin or chat. Maps to 429 + Retry-After."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, first: bool = True) -> None:
        super().__init__(message, seconds=retry_after)
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
    """Rates per action for each kind of subject ("player", "origin", "chat"), and when a
    new session is gold-only (see `tx_gold_only`); zeros switch the gates off."""

    player: dict[str, Rate] = field(default_factory=dict)
    origin: dict[str, Rate] = field(default_factory=dict)
    chat: dict[str, Rate] = field(default_factory=dict)
    gate_new_minutes: float = 0.0
    gate_network_accounts: int = 0
    gate_network_hours: float = 24.0

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


def _upsert(conn, table=rate_limits):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _hit_statement(dialect) -> Any:
    stmt = dialect.insert(rate_limits).values(bucket=bindparam("bucket"), window_start=bindparam("start"), hits=1)
    return stmt.on_conflict_do_update(index_elements=["bucket", "window_start"],
                                      set_={"hits": rate_limits.c.hits + 1}).returning(rate_limits.c.hits)


# Statements of the hot path, built once (run by game/db.fast: compiled once on SQLite); every
# question and verdict runs HIT per bucket, so building them per call cost more than the SQL.
HIT = {"sqlite": _hit_statement(sqlite), "postgresql": _hit_statement(postgresql)}
FORGET_OLD_WINDOWS = delete(rate_limits).where(rate_limits.c.bucket == bindparam("bucket"),
                                               rate_limits.c.window_start < bindparam("start"))
BANNED_AT = select(players.c.banned_at).where(players.c.id == bindparam("pid"))
BANNED_AT_BY_KEY = select(players.c.banned_at).where(players.c.player_key == bindparam("key"))


def tx_hit(conn, buckets: list[tuple[str, Rate]], now_ms: int) -> list[tuple[int, int, int]]:
    """Count one hit in each bucket's current window: [(hits, count, ms left in window)].

    The first hit of a window also deletes the bucket's older windows, so the
    table holds about one row per active subject."""
    out = []
    hit = HIT["postgresql" if conn.dialect.name == "postgresql" else "sqlite"]
    for bucket, rate in buckets:
        window_ms = rate.seconds * 1000
        start = now_ms - now_ms % window_ms
        hits = int(fast(conn, hit, {"bucket": bucket, "start": start})[0][0])
        if hits == 1:
            fast(conn, FORGET_OLD_WINDOWS, {"bucket": bucket, "start": start})
        out.append((hits, rate.count, start + window_ms - now_ms))
    return out


def tx_guard(conn, player_id: int, buckets: list[tuple[str, Rate]], now_ms: int) -> list[tuple[int, int, int]] | None:
    """None for a banned player (nothing counted), else `tx_hit`'s counts after this hit."""
    if tx_is_banned(conn, player_id):
        return None
    return tx_hit(conn, buckets, now_ms)


def tx_guarded(conn, player_id: int, buckets: list[tuple[str, Rate]], now_ms: int, fn: Callable[..., T],
               *args: Any) -> tuple[list[tuple[int, int, int]] | None, T | None]:
    """`tx_guard` and a request's own write `fn(conn, *args)` in one transaction:
    (counts or None when banned, fn's result or None when not run).

    Why one transaction: on SQLite every write transaction queues on the one writer,
    so counting in a separate one doubled a request's writes. The guarantee is the
    same: the hit is counted by the same atomic upsert, before `fn` runs and under
    the same row lock, so N workers still let exactly `count` requests through.
    `fn` runs only for a player who is not banned and within every limit; a refused
    attempt's hits commit (every attempt counts), and a write that fails rolls its
    hits back with it (its retry is counted once, a replay never)."""
    results = tx_guard(conn, player_id, buckets, now_ms)
    if results is None or any(hits > count for hits, count, _ in results):
        return results, None
    return results, fn(conn, *args)


def refusal(results: list[tuple[int, int, int]], template: str) -> RateLimited | None:
    """The error for the most restrictive exceeded bucket (its message `template` has
    a `{seconds}` parameter), or None when all are within their counts."""
    over = [(left, hits == count + 1) for hits, count, left in results if hits > count]
    if not over:
        return None
    left_ms, first = max(over)
    seconds = max(1, math.ceil(left_ms / 1000))
    return RateLimited(template, seconds, first=all(f for _, f in over))


def network_of(origin: str | None) -> str | None:
    """The network an origin belongs to for the many-accounts gate: IPv4 /24, IPv6 /48
    (a hosting provider hands out neighbouring addresses; a home user has one)."""
    if not origin:
        return None
    try:
        net = ipaddress.ip_network(origin, strict=False)
    except ValueError:
        return None
    return str(net.supernet(new_prefix=24 if net.version == 4 else 48))


def tx_gold_only(conn, limits: Limits, player_id: int, origin: str | None, now_ms: int) -> bool:
    """Whether the player's new session is gold-only: every image from the reliable pool,
    so each verdict is checkable and an untrusted account's flags cost the data nothing.

    Two gates (SPEC §2's hidden gold gating, applied before any observation): an
    account this game first saw less than `gate_new_minutes` ago (Telegram does not
    tell a bot when an account was made, so first sight is the only trustworthy
    date), and a network from which `gate_network_accounts` or more accounts started
    sessions within `gate_network_hours` (scripted farms run from data-centre ranges;
    a shared home or office network rarely reaches the count). Sightings are stored
    only while that gate is on."""
    gated = False
    if limits.gate_new_minutes > 0:
        created = conn.execute(select(players.c.created_at).where(players.c.id == player_id)).scalar()
        gated = created is not None and now_ms - created < limits.gate_new_minutes * 60_000
    network = network_of(origin)
    if limits.gate_network_accounts > 0 and network is not None:
        stmt = _upsert(conn, player_networks).values(network=network, player_id=player_id, last_seen=now_ms)
        conn.execute(stmt.on_conflict_do_update(index_elements=["network", "player_id"],
                                                set_={"last_seen": now_ms}))
        since = now_ms - int(limits.gate_network_hours * 3_600_000)
        accounts = conn.execute(select(func.count()).select_from(player_networks).where(
            player_networks.c.network == network, player_networks.c.last_seen >= since)).scalar_one()
        gated = gated or accounts >= limits.gate_network_accounts
    return gated


def tx_is_banned(conn, player_id: int) -> bool:
    return _banned(fast(conn, BANNED_AT, {"pid": player_id}))


def tx_is_banned_key(conn, player_key: str) -> bool:
    """The same by the player's stored key (the bot knows a sender only by Telegram id)."""
    return _banned(fast(conn, BANNED_AT_BY_KEY, {"key": player_key}))


def _banned(rows: list) -> bool:
    """A `BANNED_AT*` result: a player row whose banned_at is set (no row: not banned)."""
    return bool(rows) and rows[0][0] is not None
