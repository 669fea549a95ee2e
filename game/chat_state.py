"""The bot's chat-side state — a correction owed after "Wrong", a broadcast awaiting its
admin's confirmation — kept in the database.

Why not in the bot process (PTB's user_data, a pickle file per process): behind a load
balancer a webhook update may reach any worker (SPEC §4.2), so the tap on "Wrong" and the
typed correction often land on different workers; only what the database holds is seen
by both. `take` reads and deletes in one statement, so a value is used once even when
two workers race for it (a double-tapped "Send").
"""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from game.db import Database
from game.tables import chat_state

VALUE_MAX = 8000


def _upsert(conn):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(chat_state)


def _tx_put(conn, subject: str, name: str, value: str, now: int) -> None:
    stmt = _upsert(conn).values(subject=subject, name=name, value=value[:VALUE_MAX], updated_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["subject", "name"],
                                            set_={"value": value[:VALUE_MAX], "updated_at": now}))


def _tx_get(conn, subject: str, name: str) -> str | None:
    return conn.execute(select(chat_state.c.value).where(chat_state.c.subject == subject,
                                                         chat_state.c.name == name)).scalar()


def _tx_take(conn, subject: str, name: str) -> str | None:
    return conn.execute(delete(chat_state).where(chat_state.c.subject == subject, chat_state.c.name == name)
                        .returning(chat_state.c.value)).scalar()


async def put(db: Database, subject: str, name: str, value: str, now: int) -> None:
    """Remember `value` for `subject` (a player or an admin) under `name`, replacing any earlier one."""
    await db.run_write(_tx_put, subject, name, value, now)


async def get(db: Database, subject: str, name: str) -> str | None:
    return await db.run_read(_tx_get, subject, name)


async def take(db: Database, subject: str, name: str) -> str | None:
    """The value, deleted in the same statement: whoever takes it first gets it, once."""
    return await db.run_write(_tx_take, subject, name)
