"""No visible split (SPEC §1.2): when the pool mixes sources (drawings, photo folders), what a
player can see of an image — its source, size, aspect, format and byte size — must not tell
tainted from untainted. Over many planned sessions a classifier on those features predicts
the tainted flag no better than chance (balanced accuracy ≤ 55 %).

The classifier (lab/split_leak.py) is scored on images it did not train on (folds grouped by
image): which *individual* image is reliable is the model's business (SPEC §1.2 draws untainted
images from the whole pool, so a reliable image is tainted more often than an unreliable one);
what must not leak is the *kind* of image. The same test on the unstratified plan shows it can fail."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from game import rules
from game.images import import_files, list_image_files, import_pool_name, pool_counts
from game.storage import tx_pools
from game.service import GameService
from game.tables import images
from game.rules import Look
from lab.split_leak import leak_score, plan_many, read_pool
from tests.conftest import TEST_HASH_KEY, solid_png

def synthetic_pool(rng: random.Random) -> tuple[dict[int, Look], list[int]]:
    """Drawings (square PNGs; the model is reliable on most simple ones — small files — and few
    complex ones, as the embedded model is), a photo folder with a few annotated or
    crowd-measured reliable photos, and a folder with none."""
    seen: dict[int, Look] = {}
    reliable: list[int] = []
    shapes = [(768, 576), (576, 768), (768, 512), (768, 768), (640, 480)]
    for i in range(140):
        if i < 60:
            simple = rng.random() < 0.5      # simple drawings: smaller files, and the model's favourites
            v = Look("generated", "image/png", 384, 384, int(rng.gauss(6000 if simple else 12000, 1500)))
            share = 0.9 if simple else 0.2
        elif i < 110:
            w, h = rng.choice(shapes)
            v = Look("imported:holiday", "image/png" if rng.random() < 0.2 else "image/jpeg", w, h,
                     int(rng.gauss(90_000, 25_000)))
            share = 0.2
        else:
            w, h = rng.choice(shapes)
            v = Look("imported:museum", "image/jpeg", w, h, int(rng.gauss(120_000, 30_000)))
            share = 0.0
        seen[i] = v
        if rng.random() < share:
            reliable.append(i)
    return seen, reliable


def test_a_classifier_on_what_players_see_is_at_chance():
    rng = random.Random(11)
    seen, reliable = synthetic_pool(rng)
    source_of = {i: v.source for i, v in seen.items()}
    stratified = plan_many(seen, reliable, 1500)
    score = leak_score(stratified, seen)
    assert score <= 0.55, score
    # Each source (and each run of look-alike images) is exactly as often tainted as untainted;
    # a source with no reliable image is not shown.
    shown = [(source_of[p.image_id], p.tainted) for plan in stratified for p in plan]
    for source in ("generated", "imported:holiday"):
        assert sum(t for s, t in shown if s == source) * 2 == sum(1 for s, _ in shown if s == source)
    assert not any(s == "imported:museum" for s, _ in shown)
    # The same pool planned without strata (drawings mostly tainted, photos mostly not) or by
    # source alone (simple drawings — small files — mostly tainted): the classifier sees it.
    assert leak_score(plan_many(seen, reliable, 1500, strata="none"), seen) > 0.6
    assert leak_score(plan_many(seen, reliable, 1500, strata="source"), seen) > 0.55


async def test_gap_demo_beside_photos_never_makes_one_source_the_only_tainted(db, db_url, tmp_path, model):
    """A deployer's photo folder with no reliable image, then `gap demo`'s pool set-up (drawings
    measured by the model): the photos are left out of play instead of being always untainted."""
    from gap.commands.demo import ensure_image_pool

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(13):
        (folder / f"p{i}.png").write_bytes(solid_png(300 + i, 60))
    await import_files(db, list_image_files(folder), pool=import_pool_name("photos"))
    service = GameService(db, model, hash_key=TEST_HASH_KEY, rng=random.Random(1))
    counts = await ensure_image_pool(SimpleNamespace(db=db, model=model, service=service), count=33, min_reliable=10)
    assert counts["images"] == 33 and counts["reliable"] >= 10 and counts["playable"] == 20
    def served(pools) -> list[tuple[str, bool]]:
        """What 300 sessions would serve, planned as the service plans them (strata by look)."""
        reliable = [i for i, r, _ in pools if r]
        strata = rules.look_strata(reliable, {i: look for i, _, look in pools})
        return [(source_of[p.image_id], p.tainted) for s in range(300)
                for p in rules.plan_session(random.Random(s), reliable, sorted(source_of), strata)]

    pools = await db.run_read(tx_pools)
    source_of = {i: look.source for i, _, look in pools}
    assert {source_of[i] for i, r, _ in pools if r} == {"generated"}
    assert {s for s, _ in served(pools)} == {"generated"}
    # Once a few photos are declared reliable, photos are tainted exactly as often as not.
    async with db.write() as conn:
        photo_ids = sorted(i for i in source_of if source_of[i] == "imported:photos")[:5]
        await conn.execute(images.update().where(images.c.id.in_(photo_ids)).values(declared_reliable=True,
                                                                                    reliable=True))
    photos = [t for s, t in served(await db.run_read(tx_pools)) if s == "imported:photos"]
    assert photos and sum(photos) * 2 == len(photos)
    assert (await pool_counts(db))["playable"] == 33
    seen, reliable = await read_pool(db_url)
    assert leak_score(plan_many(seen, reliable, 600), seen) <= 0.55
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(images))).scalar_one() == 33


@pytest.mark.parametrize("seed", range(3))
def test_plans_stay_valid_for_lopsided_pools(seed):
    """Tiny or lopsided pools still give 10 distinct images, 5 tainted from the reliable pool, or refuse."""
    rng = random.Random(seed)
    for trial in range(2000):
        n = rng.randint(5, 30)
        source_of = {i: rng.choice("abcd"[:rng.randint(1, 4)]) for i in range(n)}
        reliable = [i for i in range(n) if rng.random() < rng.random()]
        try:
            plan = rules.plan_session(random.Random(trial), reliable, list(range(n)), source_of)
        except ValueError:
            sources = {source_of[i] for i in reliable}
            assert len(reliable) < 5 or sum(1 for i in range(n) if source_of[i] in sources) < 10
            continue
        assert len({p.image_id for p in plan}) == 10 and sum(p.tainted for p in plan) == 5
        assert all(p.image_id in reliable for p in plan if p.tainted)


def test_look_strata_cut_each_source_into_runs_of_look_alike_images():
    looks = {i: Look("a", "image/png", 10, 10, 100 * i) for i in range(10)}
    looks.update({10 + i: Look("b", "image/jpeg", 20, 10, 50 * i) for i in range(4)})
    strata = rules.look_strata([1, 3, 4, 8, 9], looks)
    assert [strata[i] for i in range(10)] == ["a#0"] * 4 + ["a#1"] * 5 + ["a#2"]   # 2 reliable per run; tail joins
    assert {strata[10 + i] for i in range(4)} == {"b#unplayable"}
    assert {rules.look_strata([5], looks)[i] for i in range(10)} == {"a#0"}   # one reliable: one run
