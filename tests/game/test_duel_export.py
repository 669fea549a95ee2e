"""Duel data out (SPEC §3.1, §3.4): `gap export --format pairs`, `--format dpo --duels`,
`gap rank` and `gap duels stats`, on choices played through the duel service."""
from __future__ import annotations

import asyncio
import json
import random

import pytest

from game.duel_export import load_choices, majority_labels, rank_items, weighted_labels
from game.duels_stats import duel_summary
from gap.cli import main
from tests.game.duel_support import duel_service, item_truth, other, seed_scene_images


async def play(duels, db, clock, player_id: int, accuracy: float, batches: int, rng: random.Random) -> None:
    for _ in range(batches):
        state = await duels.start(player_id)
        while state["status"] == "playing":
            item = state["item"]
            clock.advance(2 + rng.random())
            right = (await item_truth(db, item["item_id"]))["right"]
            pick = right if rng.random() < accuracy else other(right)
            state = await duels.choose(player_id, item["item_id"], "r" + item["item_id"], pick)
        if state["status"] == "removed":
            return


@pytest.fixture
async def played(db, clock, service):
    await seed_scene_images(db)
    duels = duel_service(db, clock, redundancy=6, stock=6)
    rng = random.Random(4)
    for i, acc in enumerate([1.0, 1.0, 0.95, 0.5, 0.5, 0.0]):
        await play(duels, db, clock, await service.upsert_player(300 + i), acc, 3, rng)
    return duels


async def test_pairs_export_lines_and_images(db, played, tmp_path):
    from game.duel_export import export_pairs

    card = await export_pairs(db, tmp_path / "pairs")
    lines = [json.loads(x) for x in (tmp_path / "pairs" / "train.jsonl").read_text().splitlines()]
    assert card["examples"] == len(lines) > 0 and card["labellers"] == 6
    for line in lines:
        assert line["label_0"] + line["label_1"] == 1.0
        assert 0 < line["labeller_accuracy"] < 1 and line["labeller_weight"] >= 0
        if line["kind"] == "caption":
            assert line["caption"].startswith("There is")
            assert (tmp_path / "pairs" / line["image_0"]).read_bytes().startswith(b"\x89PNG")
            assert (tmp_path / "pairs" / line["image_1"]).exists()
        else:
            assert line["question"] and (tmp_path / "pairs" / line["image"]).exists()
            assert line["answer_0"] != line["answer_1"]
    weights = {}
    for line in lines:
        weights.setdefault(line["labeller"], line["labeller_weight"])
    assert max(weights.values()) > 1.5 and min(weights.values()) == 0   # careful vs worse than chance
    assert "labeller_weight" in (tmp_path / "pairs" / "README.md").read_text()


async def test_weighted_labels_beat_majority_here_and_dpo_export(db, played, tmp_path):
    from game.duel_export import export_dpo

    choices, records = await load_choices(db)
    truth = {c.pair_id: c.truth for c in choices}
    weighted, majority = weighted_labels(choices, records), majority_labels(choices)
    right_w = sum(side == truth[p] for p, (side, _) in weighted.items())
    right_m = sum(side == truth[p] for p, side in majority.items())
    assert right_w / len(weighted) > right_m / max(len(majority), 1)
    card = await export_dpo(db, tmp_path / "dpo")
    lines = [json.loads(x) for x in (tmp_path / "dpo" / "train.jsonl").read_text().splitlines()]
    assert card["examples"] == len(lines) > 0
    for line in lines:
        assert line["chosen"][0]["content"][0]["text"] != line["rejected"][0]["content"][0]["text"]
        assert (tmp_path / "dpo" / line["images"][0]).exists()


async def test_rank_and_stats(db, played):
    rows = await rank_items(db, n_boot=20)
    assert rows and all(r["ci_low"] <= r["score"] + 1e-6 <= r["ci_high"] + 2e-6 for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    stats = await duel_summary(db)
    assert stats["players"] == 6 and stats["removed"] >= 1 and stats["too_fast_refused"] == 0
    assert stats["seconds_per_duel"]["caption"]["median"] >= 2.0


def test_cli_export_pairs_and_rank(db_url, tmp_path, monkeypatch, capsys, clock):
    from game.db import Database
    from game.service import GameService
    from models.fake import FixedLatencyModel
    from tests.conftest import TEST_HASH_KEY

    async def setup():
        db = Database(db_url)
        service = GameService(db, FixedLatencyModel(0), hash_key=TEST_HASH_KEY, clock=clock)
        duels = duel_service(db, clock)
        rng = random.Random(1)
        for i in range(3):
            await play(duels, db, clock, await service.upsert_player(900 + i), 1.0, 2, rng)
        await db.dispose()

    asyncio.run(setup())
    monkeypatch.setenv("GAP_DATABASE_URL", db_url)
    assert main(["export", "--format", "pairs", "--out", str(tmp_path / "p")]) == 0
    assert "[pairs, duels]" in capsys.readouterr().out
    assert (tmp_path / "p" / "train.jsonl").read_text().count("\n") == 30
    assert main(["export", "--format", "vqa", "--duels", "--out", str(tmp_path / "x")]) == 2
    assert main(["rank", "--json", "--bootstrap", "10"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert rows and {"score", "ci_low", "ci_high", "prompt", "side"} <= set(rows[0])
    assert main(["duels", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["choices"] == 30
