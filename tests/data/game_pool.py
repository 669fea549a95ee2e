"""A migrated game database with a small generated pool, half of it reliable: what the
simulation tests play against."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from game import tables as T
from game.db import Database
from game.images import set_reliability
from game.migrate import upgrade
from gap.commands.images import generate_pool


async def make_game(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sim.sqlite3'}"
    upgrade(url)
    db = Database(url)
    await generate_pool(db, 16, seed=5)
    async with db.read() as conn:
        ids = [r[0] for r in (await conn.execute(select(T.images.c.id))).all()]
    await set_reliability(db, {i: (1.0 if n % 2 == 0 else 0.2) for n, i in enumerate(ids)}, 0.8)
    await db.dispose()
    return url
