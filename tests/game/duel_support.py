"""Helpers of the duel tests: a pool of scene pictures, a duel service, and the right side
of a duel as the test (not the player) can read it from the database."""
from __future__ import annotations

import random

from sqlalchemy import select

from game.db import Database
from game.duel_tables import duel_items, duel_pairs
from game.duels import DuelConfig, DuelService
from game.images import prepare_image, store_image
from models import scenes
from models.scene_pairs import ScenePairMaker


async def seed_scene_images(db: Database, n: int = 6) -> list[int]:
    """`n` procedural pictures with their scene graphs in the game's pool."""
    rng = random.Random(99)
    ids = []
    for i in range(n):
        scene = scenes.generate_scene(rng, "simple", seed=i)
        image_id, _ = await store_image(db, prepare_image(scenes.render_png(scene, 128)), pool="generated",
                                        complexity="simple", scene_json=scene.to_json())
        ids.append(image_id)
    return ids


def duel_service(db: Database, clock, *, seed: int = 1, min_seconds: float = 1.5, stock: int = 8,
                 redundancy: int = 3) -> DuelService:
    return DuelService(db, ScenePairMaker(size=96), clock=clock, rng=random.Random(seed),
                       config=DuelConfig(min_seconds=min_seconds, redundancy=redundancy, stock=stock))


async def item_truth(db: Database, item_id: str) -> dict:
    """{"gold", "right": displayed side of the right answer or None, "source", "pair_id"}."""
    def read(conn):
        row = conn.execute(select(duel_items.c.swapped, duel_pairs.c.gold, duel_pairs.c.truth, duel_pairs.c.source,
                                  duel_pairs.c.id).join(duel_pairs, duel_pairs.c.id == duel_items.c.pair_id)
                           .where(duel_items.c.id == item_id)).one()
        right = None
        if row.truth is not None:
            right = "left" if (row.truth == "a") != bool(row.swapped) else "right"
        return {"gold": bool(row.gold), "right": right, "source": row.source, "pair_id": row.id}
    return await db.run_read(read)


def other(side: str) -> str:
    return "right" if side == "left" else "left"
