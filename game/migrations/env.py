"""Alembic environment for the game database: async engines, batch mode on SQLite."""
from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from game.db import install_sqlite_pragmas, is_sqlite
from game.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    return config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=is_sqlite(_url()))
    with context.begin_transaction():
        context.run_migrations()


# Any fixed number: the PostgreSQL advisory lock that makes concurrent upgrades take turns.
MIGRATION_LOCK_ID = 0x6761705F6D6967  # "gap_mig"


def _do_run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=is_sqlite(_url()))
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Several web workers run `gap serve`, which migrates first: on PostgreSQL they
            # wait for one another here (until commit), then find the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    if is_sqlite(_url()):
        install_sqlite_pragmas(engine.sync_engine)
    async with engine.connect() as connection:
        await connection.run_sync(_do_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
