"""Simulated duellers over the real HTTP API (SPEC §3.4): accuracy-weighted labels agree with
the truth more than majority vote, the removal rule removes ≥ 90 % of random players and
keeps ≥ 95 % of careful ones, points rise with accuracy, too-fast taps are refused and counted.

The simulation opens batches in a seeded order (lab/duel_simulation.py) and the server's
randomness is seeded, so every number checked here is the same on every run (only the count
of refused taps depends on timing). The checks held on seeds 1–8 (README, "Duels"), at their
narrowest: weighted − majority agreement +0.013, careful players' points 5.2× random ones'."""
from __future__ import annotations

import random

from aiohttp.test_utils import TestServer

from game.duels import DuelConfig, DuelService
from lab.duel_simulation import simulate
from models.scene_pairs import ScenePairMaker
from settings import Settings
from tests.conftest import TEST_BOT_TOKEN
from tests.game.duel_support import seed_scene_images
from webapp.app import create_app
from webapp.duels_api import setup_duels

COUNTS = {"careful": 14, "sloppy": 14, "random": 12, "always-left": 6}
SEED = 1      # of the server and of the players: the README's table row 1


async def test_simulated_duellers_over_http(db, db_url, tmp_path, service, model):
    await seed_scene_images(db, 12)
    duels = DuelService(db, ScenePairMaker(size=64), rng=random.Random(SEED),
                        config=DuelConfig(min_seconds=0.04, redundancy=5, stock=20))
    settings = Settings(bot_token=None, database_url=db_url, model="fake:0")
    app = create_app(service, settings, model, bot_token=TEST_BOT_TOKEN, extra_setup=[setup_duels(duels)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        result = await simulate(str(server.make_url("")).rstrip("/"), TEST_BOT_TOKEN, db_url,
                                tmp_path / "gap.sqlite3", COUNTS, batches=10, seed=SEED, concurrency=12)
    finally:
        await server.close()
    print(result)
    kinds = result["kinds"]
    assert kinds["random"]["removed_share"] >= 0.9
    assert kinds["always-left"]["removed_share"] >= 0.9
    assert kinds["careful"]["removed_share"] <= 0.05
    assert kinds["careful"]["gold_accuracy"] > 0.9 and 0.3 < kinds["random"]["gold_accuracy"] < 0.7
    # points rise with accuracy, in total and per batch played (random players play more batches than
    # careful ones before they are removed)
    points = [kinds[k]["mean_points"] for k in ("careful", "sloppy", "random")]
    assert points[0] > points[1] > points[2] and points[0] > 4 * points[2]
    per_batch = [kinds[k]["points_per_batch"] for k in ("careful", "sloppy", "random")]
    assert per_batch[0] > per_batch[1] > per_batch[2]
    assert kinds["sloppy"]["too_fast_refused"] > 0 and kinds["careful"]["too_fast_refused"] == 0
    assert result["stats"]["too_fast_refused"] == kinds["sloppy"]["too_fast_refused"]
    assert result["duels_with_truth"] > 50
    assert result["weighted_agreement"] > result["majority_agreement"]
    several = result["three_or_more_labels"]       # where weighting can beat a vote at all
    assert several["duels"] > 0.9 * result["duels_with_truth"]
    assert several["weighted_agreement"] > several["majority_agreement"]
