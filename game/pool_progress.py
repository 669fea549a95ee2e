"""How far each image pool is on its way into the reliable pool (SPEC §1.2) — for
`gap images stats` and the bot's /stats.

Why a report of its own: a deployer who brings photographs starts with an
unplayable pool and grows its reliable part by three ways (declared by the
operator, measured on ground truth — scene graphs or annotations — and
measured by the crowd). The operator needs to see which way each image took,
how many still wait, and which pools cannot be played yet: a pool with no
reliable image is left out of sessions (its images could only ever be
untainted, which would tell players the split; game/rules.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from game.db import Database
from game.tables import images

WAYS = ("declared", "scene", "annotated", "measured", "crowd", "unknown")
WAY_LABELS = {"declared": "declared", "scene": "measured (scene graph)", "annotated": "measured (annotations)",
              "measured": "measured (other)", "crowd": "crowd-measured", "unknown": "unknown"}


@dataclass
class PoolProgress:
    """One pool: images and reliable images per way (`WAYS`)."""

    pool: str
    images: dict[str, int]
    reliable: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.images.values())

    @property
    def total_reliable(self) -> int:
        return sum(self.reliable.values())

    def line(self) -> str:
        parts = [f"{WAY_LABELS[w]} {self.reliable[w]}/{self.images[w]}" for w in WAYS if self.images[w]]
        note = "" if self.total_reliable else " — not played yet: no reliable image in this pool"
        return f"{self.pool}: {self.total_reliable} of {self.total} reliable ({', '.join(parts)}){note}"


def way_of(declared: bool, measured: bool, scene: bool, annotated: bool, crowd_verdicts: int | None) -> str:
    """Which way decides an image's place in the reliable pool (the first that applies)."""
    if declared:
        return "declared"
    if measured:
        return "scene" if scene else "annotated" if annotated else "measured"
    return "crowd" if crowd_verdicts else "unknown"


async def pool_progress(db: Database) -> list[PoolProgress]:
    """Per pool (by name), how many images took each way and how many of them are reliable."""
    async with db.read() as conn:
        rows = (await conn.execute(select(
            images.c.pool, images.c.reliable, images.c.declared_reliable, images.c.model_accuracy,
            images.c.scene_json.is_not(None).label("scene"), images.c.annotations_json.is_not(None).label("annotated"),
            images.c.crowd_verdicts))).all()
    out: dict[str, PoolProgress] = {}
    for r in rows:
        p = out.setdefault(r.pool, PoolProgress(r.pool, dict.fromkeys(WAYS, 0), dict.fromkeys(WAYS, 0)))
        way = way_of(bool(r.declared_reliable), r.model_accuracy is not None, bool(r.scene), bool(r.annotated),
                     r.crowd_verdicts)
        p.images[way] += 1
        p.reliable[way] += bool(r.reliable)
    return [out[k] for k in sorted(out)]


def progress_lines(pools: list[PoolProgress]) -> list[str]:
    """The report: one line per pool, then the totals per way."""
    if not pools:
        return ["no images yet: gap images generate N, or gap images import DIR"]
    lines = [p.line() for p in pools]
    total = {w: sum(p.images[w] for p in pools) for w in WAYS}
    reliable = {w: sum(p.reliable[w] for p in pools) for w in WAYS}
    lines.append("reliable pool: " + ", ".join(f"{WAY_LABELS[w]} {reliable[w]}/{total[w]}" for w in WAYS)
                 + f"; total {sum(reliable.values())} of {sum(total.values())} images")
    return lines
