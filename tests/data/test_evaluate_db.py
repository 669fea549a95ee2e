"""`gap evaluate` and `gap export` against a real migrated database (SQLite file and
PostgreSQL) with sessions played through the real GameService: incremental,
restartable, every format."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from game import tables as T
from game.evaluation import EvalConfig
from game.evaluation_store import run_evaluation
from game.evaluation_tables import answer_posteriors_query, player_estimates
from game.exports import FORMATS, export_finds, question_answer, read_records

pytestmark = pytest.mark.both_backends

QUESTIONS = ["How many circles are there?", "What color is the square?", "Is there a red star?",
             "Is the circle on the left or the right?"]


async def play_sessions(service, clock, n_players: int, rng: random.Random, careful: set[int]) -> None:
    """Players answer with a sensitivity/false-alarm of their own; the test reads the stored
    tainted flag to decide (the evaluation is under test here, not the simulator)."""
    for p in range(n_players):
        pid = await service.upsert_player(1000 + p, f"p{p}")
        s, f = (0.95, 0.05) if p in careful else (0.5, 0.5)
        state = await service.start_or_resume(pid)
        sid = state["session_id"]
        while state["status"] == "playing":
            for q in range(3):
                ans = await service.ask(pid, sid, f"a{p}-{state['image']['index']}-{q}-{rng.random()}", rng.choice(QUESTIONS))
                async with service.db.read() as conn:
                    row = (await conn.execute(select(T.answers.c.tainted, T.session_images.c.tainted.label("img"))
                                              .select_from(T.answers.join(T.session_images))
                                              .where(T.answers.c.id == ans["answer_id"]))).one()
                mistake = row.tainted or (not row.img and rng.random() < 0.4)
                flag = rng.random() < (s if mistake else f)
                clock.advance(5)
                state = await service.verdict(pid, ans["answer_id"], f"v{rng.random()}", "wrong" if flag else "correct",
                                              "a correction" if flag else None)
                if flag:
                    break
            else:
                clock.advance(121)
                state = await service.start_or_resume(pid)


async def test_evaluate_is_incremental_and_exports_every_format(service, clock, db, tmp_path):
    rng = random.Random(1)
    await play_sessions(service, clock, 8, rng, careful={0, 1, 2, 3, 4, 5})
    # Beta(1,1) priors: with 8 players the empirical-Bayes prior is a coin toss (tested on populations elsewhere)
    cfg = EvalConfig(theta=0.5, gold_min=2, mute_min_obs=4, prior="uniform")
    first = await run_evaluation(db, cfg, now_ms=clock.now + 10_000)
    assert first.new_answers > 50 and first.players == 8 and first.finds > 0
    async with db.read() as conn:
        n_posts = (await conn.execute(select(func.count()).select_from(answer_posteriors_query().subquery()))).scalar_one()
        est = {r.player_id: r for r in (await conn.execute(select(player_estimates))).all()}
    assert n_posts == first.finds
    async with db.read() as conn:
        grps = {r.grp for r in (await conn.execute(answer_posteriors_query())).all()}
    assert grps <= {f"unknown:{t}" for t in ("count", "color", "exists", "position")} and grps
    assert len(est) == 8
    # no new answers: nothing is read twice, the estimates do not move
    again = await run_evaluation(db, cfg, now_ms=clock.now + 20_000)
    assert again.new_answers == 0 and again.total_answers == first.total_answers
    async with db.read() as conn:
        est2 = {r.player_id: r for r in (await conn.execute(select(player_estimates))).all()}
    assert all(est2[p].s_mean == pytest.approx(est[p].s_mean) for p in est)
    # more play: only the new answers are read
    clock.advance(1000)
    await play_sessions(service, clock, 2, rng, careful={0})
    third = await run_evaluation(db, cfg, now_ms=clock.now + 10_000, player_model=True, plot_path=tmp_path / "pm.png")
    assert 0 < third.new_answers and third.total_answers == first.total_answers + third.new_answers
    assert third.player_model is not None and (tmp_path / "pm.png").exists()
    careful_s = [est2[p].s_mean for p in est2]
    assert max(careful_s) > 0.8

    for fmt in [f for f in FORMATS if f != "hf"]:  # hf: Parquet, loaded by `datasets` in test_export_tools.py
        out = tmp_path / fmt
        card = await export_finds(db, fmt, 0.5, out)
        records = read_records(out)
        assert len(records) == card["examples"] > 0
        for obj in records:
            image, question, answer = question_answer(obj)
            assert (out / image).is_file() and question in QUESTIONS and answer == "a correction"
        text = (out / "README.md").read_text()
        assert "θ (posterior threshold): 0.5" in text and "| question type |" in text
        assert card["skipped_same_sides"] == 0  # every correction here says "a correction"
    vqa = read_records(tmp_path / "vqa")
    assert all(r["posterior"] >= 0.5 for r in vqa)
    assert set(vqa[0]) >= {"image", "question", "model_answer", "correct_answer", "posterior"}
    sg = read_records(tmp_path / "sharegpt")[0]
    assert set(sg) == {"id", "images", "conversations"} and sg["conversations"][0]["from"] == "human"
    dpo = read_records(tmp_path / "dpo")[0]
    assert dpo["rejected"][0]["content"][0]["text"] != dpo["chosen"][0]["content"][0]["text"]
    trl = read_records(tmp_path / "trl-sft")[0]
    assert [m["role"] for m in trl["messages"]] == ["user", "assistant"] and len(trl["images"]) == 1
    # random flaggers' finds never pass θ or are muted
    async with db.read() as conn:
        statuses = {r.answer_id: r.status for r in (await conn.execute(answer_posteriors_query())).all()}
    exported = {r["id"] for r in vqa}
    assert all(statuses[a] == "ok" for a in exported)
    json.dumps(third.lines())

    # streaming: pages of 2 rows make the same export as one page
    calls = []
    paged = await export_finds(db, "vqa", 0.5, tmp_path / "paged", chunk=2, progress=lambda *a: calls.append(a))
    assert [r["id"] for r in read_records(tmp_path / "paged")] == [r["id"] for r in vqa] and paged["examples"] > 2
    assert len(calls) == (len(vqa) + 1) // 2 and calls[-1] == (len(vqa), len(vqa))  # a progress bar's feed
    # a find whose correction says the same as the served answer is skipped in every format, and counted
    same = vqa[0]["id"]
    async with db.write() as conn:
        served = (await conn.execute(select(T.answers.c.served_answer).where(T.answers.c.id == same))).scalar_one()
        await conn.execute(T.answers.update().where(T.answers.c.id == same).values(correction=f" {served.upper()}! "))
    for fmt in ("vqa", "dpo", "trl-sft"):
        card = await export_finds(db, fmt, 0.5, tmp_path / f"same-{fmt}")
        assert card["skipped_same_sides"] == 1 and card["examples"] == len(vqa) - 1
        assert same not in {r["id"] for r in read_records(tmp_path / f"same-{fmt}")}
        assert "skipped_same_sides: 1" in (tmp_path / f"same-{fmt}" / "README.md").read_text()

    # confirmations: "correct" verdicts of trusted players on untainted images, the model's answer as target
    card = await export_finds(db, "vqa", 0.5, tmp_path / "confirmed", confirmed=True)
    both = read_records(tmp_path / "confirmed")
    conf = [r for r in both if r["id"] not in exported]
    assert len(both) == card["examples"] == len(vqa) - 1 + len(conf) and conf
    async with db.read() as conn:
        rows = {r.id: r for r in (await conn.execute(
            select(T.answers.c.id, T.answers.c.verdict, T.answers.c.tainted, T.answers.c.served_answer,
                   T.session_images.c.tainted.label("img"), T.answers.c.player_id)
            .select_from(T.answers.join(T.session_images)))).all()}
        est3 = {r.player_id: r for r in (await conn.execute(select(player_estimates))).all()}
    for r in conf:
        a = rows[r["id"]]
        assert a.verdict == "correct" and not a.tainted and not a.img
        assert r["correct_answer"] == r["model_answer"] == a.served_answer and r["posterior"] >= 0.5
        assert not est3[a.player_id].muted and not est3[a.player_id].gated
    # a stricter θ keeps fewer confirmations; dpo cannot hold them (no rejected answer)
    strict = await export_finds(db, "vqa", 0.95, tmp_path / "strict", confirmed=True)
    assert strict["examples"] < card["examples"]
    dpo_card = await export_finds(db, "dpo", 0.5, tmp_path / "dpo-confirmed", confirmed=True)
    assert dpo_card["examples"] == len(vqa) - 1 and "not exported in `dpo`" in (tmp_path / "dpo-confirmed" / "README.md").read_text()

    # --strata: only images of those pool strata ("simple" takes its styled sub-strata too)
    async with db.write() as conn:
        ids = [r.id for r in (await conn.execute(select(T.images.c.id).order_by(T.images.c.id))).all()]
        for i, image_id in enumerate(ids):
            await conn.execute(update(T.images).where(T.images.c.id == image_id)
                               .values(complexity=("complex", "simple", "simple:dark")[i % 3]))
    async with db.read() as conn:
        stratum_of = dict((await conn.execute(select(T.images.c.opaque_id, T.images.c.complexity))).all())
    parts = {}
    for strata in (("complex",), ("simple",), ("simple:dark",)):
        out = tmp_path / f"strata-{strata[0]}"
        part = await export_finds(db, "vqa", 0.5, out, confirmed=True, strata=strata)
        recs = read_records(out)
        parts[strata[0]] = {r["id"] for r in recs}
        assert part["examples"] == len(recs) > 0
        keys = {Path(r["image"]).stem for r in recs}
        assert {stratum_of[k] for k in keys} == ({"simple", "simple:dark"} if strata == ("simple",) else set(strata))
        assert f"strata {strata[0]} only" in (out / "README.md").read_text()
    assert parts["complex"] | parts["simple"] == {r["id"] for r in both} and not parts["complex"] & parts["simple"]
    assert parts["simple:dark"] < parts["simple"]



def test_cli_evaluate_and_export(empty_db_url, tmp_path, capsys):
    """`gap evaluate` and `gap export` as commands against a database file played through the service."""
    import asyncio

    from game.db import Database
    from game.migrate import upgrade
    from game.service import GameConfig, GameService
    from gap.cli import main
    from models.fake import FixedLatencyModel
    from tests.conftest import TEST_HASH_KEY, FakeClock, seed_images

    url = empty_db_url
    upgrade(url)
    clock = FakeClock(start_ms=1_700_000_000_000)  # in the past, so every verdict is settled now

    async def play():
        db = Database(url)
        await seed_images(db)
        service = GameService(db, FixedLatencyModel(latency_ms=0), hash_key=TEST_HASH_KEY, clock=clock,
                              rng=random.Random(7), config=GameConfig(image_seconds=120, taint_prob=0.8))
        await play_sessions(service, clock, 4, random.Random(3), careful={0, 1, 2, 3})
        await db.dispose()

    asyncio.run(play())
    assert main(["evaluate", "--database", url, "--theta", "0.3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["new_answers"] > 0 and out["players"] == 4
    assert main(["evaluate", "--database", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new_answers"] == 0
    assert main(["export", "--database", url, "--format", "trl-sft", "--theta", "0.0", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "examples" in out and "skipped 0 pairs" in out and len(out.splitlines()) == 1
    assert (tmp_path / "x" / "train.jsonl").exists() and (tmp_path / "x" / "README.md").exists()
    # another format into the same directory is refused, and the export there is kept
    assert main(["export", "--database", url, "--format", "hf", "--theta", "0.0", "--out", str(tmp_path / "x")]) == 2
    assert "already holds another export" in capsys.readouterr().err
    assert (tmp_path / "x" / "train.jsonl").exists() and not (tmp_path / "x" / "data").exists()
    assert main(["export", "--database", url, "--format", "hf", "--theta", "0.0", "--out", str(tmp_path / "h"),
                 "--license", "cc-by-4.0"]) == 0
    assert (tmp_path / "h" / "data" / "train-00000-of-00001.parquet").is_file()
    assert "\nlicense: cc-by-4.0\n" in (tmp_path / "h" / "README.md").read_text()
    # a stratum filter that matches nothing exports nothing; a malformed one is a clear error
    assert main(["export", "--database", url, "--theta", "0.0", "--strata", "complex", "--out", str(tmp_path / "s")]) == 0
    assert "wrote 0 examples" in capsys.readouterr().out
    assert main(["export", "--database", url, "--strata", "simple;drop", "--out", str(tmp_path / "t")]) == 2
    assert "not a stratum name" in capsys.readouterr().err and not (tmp_path / "t").exists()


async def test_player_model_time_is_time_to_the_first_tainted_verdict(service, clock, db):
    """t must not be caused by the outcome: a flag ends the image, a pass lets the player go on, so
    the image's whole time would be shorter *because* of success. t is the time to the first verdict
    on a tainted answer."""
    from game.evaluation_store import player_model_data

    pid = await service.upsert_player(4321, "timer")
    state = await service.start_or_resume(pid)
    sid, expected = state["session_id"], []
    for step in range(40):
        if state["status"] != "playing":
            break
        ans = await service.ask(pid, sid, f"q{step}", "How many circles are there?")
        async with db.read() as conn:
            img_tainted = (await conn.execute(select(T.session_images.c.tainted)
                                              .select_from(T.answers.join(T.session_images))
                                              .where(T.answers.c.id == ans["answer_id"]))).scalar_one()
        if not img_tainted:
            clock.advance(2)
            state = await service.verdict(pid, ans["answer_id"], f"v{step}", "wrong", "a correction")
            continue
        clock.advance(4)  # first verdict on the tainted answer after 4 s: a pass
        state = await service.verdict(pid, ans["answer_id"], f"v{step}", "correct", None)
        ans2 = await service.ask(pid, sid, f"q{step}b", "What color is the square?")
        clock.advance(30)  # the flag comes 30 s later and ends the image
        state = await service.verdict(pid, ans2["answer_id"], f"v{step}b", "wrong", "a correction")
        expected.append(4.0)
    data = await player_model_data(db)
    assert expected and sorted(data["t"].tolist()) == expected
    assert data["success"].all()  # every tainted image was flagged in the end
