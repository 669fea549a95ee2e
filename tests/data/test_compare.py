"""Model or crowd? (SPEC §3.5) end to end: simulated describers with known accuracy per
attribute play the describe round over a real server, a stand-in describing model with
the opposite strengths describes the same images, and the comparison ranks the two
sources per attribute the way their accuracies say; `gap compare` writes the report
and chart, and a rerun describes nothing twice."""
from __future__ import annotations

import asyncio
import hashlib
import random

from sqlalchemy import func, select

from game import descriptions as store
from game.attributes import annotation_attributes, count_band, image_attributes, scene_attributes
from game.compare import Doc, SourceComparison, crowd_cost, image_splits, model_cost
from game.compare_report import chart_png, markdown, write_report
from game.compare_run import CompareConfig, compare_sources, describe_missing
from game.db import Database
from game.description_tables import descriptions
from game.migrate import upgrade
from gap.cli import main
from gap.commands.images import generate_pool
from lab.describers import DescriberProfile, SimulatedDescribingModel, simulate_describers
from lab.local_server import running_server
from models.scenes import Scene, scene_from_seed
from settings import load_settings

TOKEN = "123456:DESCRIBE-token-for-tests"
CROWD = DescriberProfile("crowd", {"largest_color": 0.95, "count": 0.95, "largest_shape": 0.3, "largest_side": 0.5},
                         default=0.8)
MODEL = DescriberProfile("model", {"largest_color": 0.3, "count": 0.3, "largest_shape": 0.95, "largest_side": 0.95},
                         default=0.8)


def test_attributes_from_scenes_and_annotations():
    assert [count_band(n) for n in (1, 2, 3, 4, 6, 7, 8, 9, 10)] == ["1", "2", "3", "4-6", "4-6", "7-8", "7-8",
                                                                    "9+", "9+"]
    scene = scene_from_seed("pool", 7, "complex")
    got = scene_attributes(scene)
    largest = max(scene.objects, key=lambda o: o.r)
    assert got["largest_color"] == largest.color and got["largest_shape"] == largest.shape
    assert got["count"] == count_band(len(scene.objects)) and got["has_text"] in ("yes", "no")
    assert image_attributes(scene.to_json(), None) == got
    note = {"file": "a.jpg", "attributes": {"Shirt": " Red ", "hair": "long", "n": 2, "nested": {"x": 1}, "e": ""}}
    assert annotation_attributes(note) == {"Shirt": "red", "hair": "long", "n": "2"}
    photo = {"file": "b.png", "qa": [{"question": "How many  people are there?", "answers": ["1", "one"]},
                                     {"question": "Broken", "answers": []}, "junk", {"answers": ["x"]}]}
    assert annotation_attributes(photo) == {"How many people are there?": "1"}
    assert image_attributes(None, "{not json") == {} and image_attributes(None, None) == {}


def test_splits_are_by_image_and_reproducible():
    splits = image_splits(range(50), 4, seed=1)
    assert splits == image_splits(range(50), 4, seed=1) and splits != image_splits(range(50), 4, seed=2)
    for train, test in splits:
        assert len(test) == 10 and len(train) == 40 and not train & test


def test_costs():
    crowd = crowd_cost([10, 0, 10, 0], [20.0, 30.0, 40.0, 50.0], point_value=0.05)
    assert crowd.per_description == 20 * 0.05 / 4 and crowd.mean_seconds == 35.0
    model = model_cost("model", [0.5, 1.5], gpu_hour_price=3.6)
    assert model.per_description == 1.0 * 3.6 / 3600


def test_an_uninformative_source_scores_worse():
    rng = random.Random(0)
    labels = {i: {"color": rng.choice(["red", "blue", "green"])} for i in range(60)}
    docs = [Doc(i, "crowd", f"a {v['color']} star") for i, v in labels.items()]
    docs += [Doc(i, "model", rng.choice(["a star", "a shape", "something"])) for i in labels]
    table = SourceComparison(trials=5, trees=20).fit(docs, labels)
    row, = table.rows_
    assert table.settings_ == [("crowd", "crowd"), ("model", "model"), ("model", "crowd")]
    assert row.cells[("crowd", "crowd")].mean > 0.95 and row.cells[("model", "model")].mean < 0.6
    assert row.winner() == "crowd" and row.change(("model", "model")) < -30


async def _scenes_by_sha(db: Database) -> dict[str, Scene]:
    rows = await db.run_read(store.tx_descriptions)
    known = await db.run_read(store.tx_known_images, sorted({d.image_id for d in rows}))
    return {hashlib.sha256(k.content).hexdigest(): Scene.from_json(k.scene_json) for k in known}


async def test_report_ranks_sources_by_their_known_accuracy(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cmp.sqlite3'}"
    upgrade(url)
    db = Database(url)
    await generate_pool(db, 60, seed=21)
    settings = load_settings(database_url=url, bot_token=TOKEN, bot_enabled=False, model="fake:0")
    async with running_server(settings) as server:
        totals = await simulate_describers(server, TOKEN, url, CROWD, 12, images_each=5, ratings_each=4, seed=2)
    assert totals == {"described": 60, "rated": 48}
    model = SimulatedDescribingModel(MODEL, await _scenes_by_sha(db))
    assert await describe_missing(db, model) == 60
    assert await describe_missing(db, model) == 0          # resumable: nothing is described twice

    report = await compare_sources(db, CompareConfig(trials=4, trees=10, point_value=0.05))
    rows = {r.attribute: r for r in report.rows}
    assert set(rows) == {"largest_color", "largest_shape", "largest_side", "largest_half", "count", "has_text"}
    for attribute in ("largest_color", "count"):           # the crowd is the more accurate source
        assert rows[attribute].winner() == "crowd", markdown(report)
        assert rows[attribute].change(("model", "model")) < -20
    for attribute in ("largest_shape", "largest_side"):     # the model is
        assert rows[attribute].winner() == "model", markdown(report)
        assert rows[attribute].change(("model", "model")) > 20
    assert all(c.trials == 4 for r in report.rows for c in r.cells.values())
    async with db.read() as conn:
        paid = (await conn.execute(select(func.sum(descriptions.c.points))
                                   .where(descriptions.c.source == "crowd"))).scalar_one() or 0
    crowd, model_costs = report.costs[0], report.costs[1]
    assert crowd.descriptions == 60 and abs(crowd.per_description - paid * 0.05 / 60) < 1e-12
    assert model_costs.source == "model" and 0 <= model_costs.per_description < 1e-3
    md, png = write_report(report, tmp_path / "report")
    text = md.read_text()
    assert "| largest_color | 60 |" in text and "crowd/crowd" in text and "Δ model/model" in text
    assert png.read_bytes().startswith(b"\x89PNG") and chart_png(report).startswith(b"\x89PNG")

    await db.dispose()


async def _crowd_described_game(url: str, images: int) -> None:
    upgrade(url)
    db = Database(url)
    await generate_pool(db, images, seed=4)
    await db.dispose()
    settings = load_settings(database_url=url, bot_token=TOKEN, bot_enabled=False, model="fake:0")
    async with running_server(settings) as server:
        await simulate_describers(server, TOKEN, url, CROWD, 4, images_each=5, ratings_each=2, seed=9)


def test_gap_compare_writes_the_report_and_resumes(tmp_path, monkeypatch, capsys):
    """`gap compare` with the fixed-latency fake (a VQA model: described by questions); stdout is the report."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
    asyncio.run(_crowd_described_game(url, 20))
    monkeypatch.setenv("GAP_DATABASE_URL", url)
    out_dir = tmp_path / "cli"
    assert main(["compare", "--trials", "3", "--trees", "5", "--model", "fake:0", "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# Model or crowd?") and "`fake-fixed-latency-0ms`" in out and "| count |" in out
    assert "20 new model descriptions, 0 rewrites" in err
    assert (out_dir / "REPORT.md").read_text().startswith(out.rstrip("\n"))
    assert (out_dir / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert main(["compare", "--trials", "2", "--trees", "2", "--model", "fake:0", "--out", str(out_dir)]) == 0
    assert "0 new model descriptions" in capsys.readouterr().err
    assert main(["compare", "--trials", "1", "--out", str(out_dir)]) == 2
    unreachable = "openai:http://127.0.0.1:9/v1?model=vlm"                  # nothing listens there
    monkeypatch.setenv("GAP_MODEL_TIMEOUT_S", "2")
    assert main(["compare", "--trials", "2", "--model", unreachable, "--out", str(out_dir)]) == 1
    assert "gap compare: the model failed" in capsys.readouterr().err


class EchoEndpoint:
    """OpenAI-compatible chat completions: a fixed description for an image, the text itself
    (tidied) for a rewrite."""

    def __init__(self) -> None:
        self.rewrites = 0

    async def chat(self, request):
        from aiohttp import web

        body = await request.json()
        content = body["messages"][-1]["content"]
        if any(c["type"] == "image_url" for c in content):
            reply = "Some shapes in several colours."
        else:
            self.rewrites += 1
            reply = " ".join(content[-1]["text"].split())
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})


async def test_an_openai_model_rewrites_crowd_descriptions_for_the_fourth_setting(tmp_path):
    from aiohttp import web

    from game.compare_run import rewrite_missing
    from models.loader import load_model

    url = f"sqlite+aiosqlite:///{tmp_path / 'rw.sqlite3'}"
    await _crowd_described_game(url, 20)
    echo = EchoEndpoint()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    model = load_model(f"openai:http://127.0.0.1:{runner.addresses[0][1]}/v1?model=vlm")
    db = Database(url)
    try:
        assert await describe_missing(db, model) == 20
        assert await rewrite_missing(db, model) == 20 and echo.rewrites == 20
        assert await rewrite_missing(db, model) == 0 and echo.rewrites == 20     # resumable
        report = await compare_sources(db, CompareConfig(trials=3, trees=5))
        assert report.model_id == model.model_id
        assert report.settings == [("crowd", "crowd"), ("model", "model"), ("model", "crowd"), ("model", "rewrite")]
        assert [c.source for c in report.costs] == ["crowd", "model", "rewrite"]
        row = next(r for r in report.rows if r.attribute == "largest_color")
        rewrite, crowd = row.cells[("model", "rewrite")], row.cells[("crowd", "crowd")]
        assert rewrite.trials == 3
        # the % change is against crowd/crowd; with 3 trials of 5 trees that F1 is sometimes 0 (a
        # change from 0 is undefined: None, as documented) — it failed once in a fresh-clone run
        assert (row.change(("model", "rewrite")) is None) == (crowd.mean == 0)
        assert "Δ model/rewrite" in markdown(report) and not report.notes
    finally:
        await model.aclose()
        await db.dispose()
        await runner.cleanup()


def test_close_scores_are_a_tie():
    from game.compare import AttributeRow, Cell

    row = AttributeRow("x", 10, 2, {("crowd", "crowd"): Cell("crowd", "crowd", 0.60, 0.1, 5),
                                    ("model", "model"): Cell("model", "model", 0.61, 0.1, 5)})
    assert row.winner() == "tie" and round(row.change(("model", "model")), 3) == 1.667
    row.cells[("model", "model")] = Cell("model", "model", 0.63, 0.1, 5)
    assert row.winner() == "model"
    assert AttributeRow("y", 10, 2).winner() is None and AttributeRow("y", 10, 2).change(("model", "model")) is None


def test_simulated_describers_state_values_with_their_accuracy():
    import pytest

    from lab.describers import VALUES, fits, parse_accuracy, stated_values, write_description

    assert parse_accuracy("largest_color=0.9, count=0.5") == {"largest_color": 0.9, "count": 0.5}
    for bad in ("colour=0.9", "count=1.5", "count=x"):
        with pytest.raises(ValueError):
            parse_accuracy(bad)
    scenes = [scene_from_seed("pool", i, "complex") for i in range(300)]
    sharp = DescriberProfile("sharp", {"largest_color": 1.0, "largest_shape": 1.0}, default=0.0)
    rng = random.Random(1)
    truth_kept = {a: 0 for a in VALUES}
    for scene in scenes:
        said = stated_values(scene, sharp, rng)
        text = write_description(said, rng)
        assert said["largest_color"] in text and said["largest_shape"] in text and fits(scene, text)
        for attribute, value in said.items():
            truth_kept[attribute] += value == scene_attributes(scene)[attribute]
    assert truth_kept["largest_color"] == truth_kept["largest_shape"] == 300
    assert all(truth_kept[a] == 0 for a in VALUES if a not in ("largest_color", "largest_shape"))
