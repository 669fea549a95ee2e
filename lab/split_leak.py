"""Can a player tell tainted from untainted images by their look? (SPEC §1.2, no visible split)

Plans many sessions with the game's own planner (game/rules.plan_session) over a
pool and scores a classifier that predicts the tainted flag from what a player
can see of each served image: its source, width, height, aspect, format and byte
size. Balanced accuracy 0.5 is chance. The classifier is cross-validated with
folds grouped by image, so it must generalise to images it has not seen: which
individual image is reliable is the model's business (SPEC §1.2 draws untainted
images from the whole pool), what must not leak is the *kind* of image.

    python -m lab.split_leak --database sqlite+aiosqlite:///gap.sqlite3 --sessions 2000
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import numpy as np

from game import rules
from game.rules import Look


def features(v: Look, sources: list[str]) -> list[float]:
    return [*(float(v.source == s) for s in sources), v.width, v.height, v.width / v.height,
            float(v.mime == "image/png"), v.size]


def plan_many(seen: dict[int, Look], reliable: list[int], sessions: int, *, strata: str = "look",
              seed: int = 0) -> list[list[rules.PlannedImage]]:
    """`sessions` plans over the pool, stratified as the game does ("look": game/rules.look_strata),
    by source only ("source"), or not at all ("none")."""
    stratum_of = {"look": lambda: rules.look_strata(reliable, seen), "source": lambda: {i: v.source for i, v in seen.items()},
                  "none": lambda: None}[strata]()
    everything = sorted(seen)
    return [rules.plan_session(random.Random(f"{seed}:{s}"), reliable, everything, stratum_of)
            for s in range(sessions)]


def leak_score(plans: list[list[rules.PlannedImage]], seen: dict[int, Look]) -> float:
    """Balanced accuracy of a decision tree predicting `tainted` from what a player sees,
    cross-validated with folds grouped by image. (A tree splits on exact sizes, aspects and
    formats as a player's eye would; gradient boosting scored within ±0.05 of it on the test
    pools, at 200 times the cost.)"""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    sources = sorted({v.source for v in seen.values()})
    rows = [(features(seen[p.image_id], sources), p.tainted, p.image_id) for plan in plans for p in plan]
    x = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    groups = np.array([r[2] for r in rows])
    folds = min(5, len(set(groups.tolist())))
    clf = DecisionTreeClassifier(max_depth=6, min_samples_leaf=40, random_state=0)
    predicted = cross_val_predict(clf, x, y, cv=GroupKFold(n_splits=folds), groups=groups)
    return float(balanced_accuracy_score(y, predicted))


async def read_pool(database_url: str) -> tuple[dict[int, Look], list[int]]:
    """What players see of every image in a database, and the reliable ids."""
    from sqlalchemy import func, select

    from game.db import Database
    from game.tables import images

    db = Database(database_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(select(images.c.id, images.c.pool, images.c.width, images.c.height,
                                              images.c.mime, func.length(images.c.content).label("size"),
                                              images.c.reliable))).all()
    finally:
        await db.dispose()
    seen = {r.id: Look(r.pool, r.mime, r.width, r.height, int(r.size)) for r in rows}
    return seen, [r.id for r in rows if r.reliable]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a GAP database")
    parser.add_argument("--sessions", type=int, default=2000)
    args = parser.parse_args(argv)
    seen, reliable = asyncio.run(read_pool(args.database))
    out = {"images": len(seen), "reliable": len(reliable), "sessions": args.sessions}
    for strata in ("look", "source", "none"):
        out[f"balanced_accuracy_{strata}"] = leak_score(plan_many(seen, reliable, args.sessions, strata=strata), seen)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
