"""`gap simulate` survives interruptions: a real server on a real port (fake model,
real SQLite), the simulation cancelled mid-run — at a session boundary, right after
the server applied a verdict whose response was lost, right after it stored an
answer not yet judged, and by SIGINT to the real CLI — then resumed from its state
directory. After the resume every (player, session) finished exactly once, the
server holds exactly the judged answers of the truth (same ids, same verdicts), and
the truth has the format of an uninterrupted run. What learning players learnt (the
outcomes each session's summary revealed) is journaled once per session, agrees with
the server, and rebuilds each learner's bandit on resume."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest
from sqlalchemy import select

from game import tables as T
from game.db import Database
from lab.local_server import running_server
from settings import load_settings
from lab.player_learning import FindBandit
from lab.simulation import AnswerTruth, Client, SimPlayer, player_bandit, simulate
from lab.simulation_state import JOURNAL_FILE, Journal, StateMismatch
from tests.data.game_pool import make_game

TOKEN = "123456:SIM-resume-token-for-tests"
TRUTH_KEYS = {"players", "answers", "sessions", "errors", "lost_answers", "outcomes"}


async def server_view(url: str) -> tuple[dict[str, tuple[str, str | None]], Counter, Counter]:
    """(judged answer id → (verdict, correction), sessions per player, finished sessions per player)."""
    db = Database(url)
    try:
        async with db.read() as conn:
            judged = {r.id: (r.verdict, r.correction) for r in (await conn.execute(
                select(T.answers.c.id, T.answers.c.verdict, T.answers.c.correction)
                .where(T.answers.c.verdict.is_not(None)))).all()}
            rows = (await conn.execute(select(T.sessions.c.player_id, T.sessions.c.status))).all()
    finally:
        await db.dispose()
    return judged, Counter(r.player_id for r in rows), Counter(r.player_id for r in rows if r.status == "finished")


async def server_outcomes(url: str) -> dict[str, str]:
    """judged answer id → what the summary reveals about it, straight from the tables."""
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(
                select(T.answers.c.id, T.answers.c.verdict, T.answers.c.tainted, T.session_images.c.tainted.label("image"))
                .join(T.session_images, T.session_images.c.id == T.answers.c.session_image_id)
                .where(T.answers.c.verdict.is_not(None)))).all()
    finally:
        await db.dispose()
    return {r.id: ("catch" if r.verdict == "wrong" else "missed_lure") if r.tainted
            else "correct" if r.verdict == "correct" else "false_alarm" if r.image else "find" for r in rows}


def assert_learnt_once_and_as_the_server_says(result, revealed: dict[str, str]) -> None:
    """Every judged answer's outcome learnt exactly once, in its session, as the server's tables say."""
    learnt = [(o["aid"], o["outcome"]) for o in result.outcomes]
    assert len(learnt) == len({aid for aid, _ in learnt})
    assert dict(learnt) == revealed
    by_answer = {a.answer_id: a for a in result.answers}
    assert all(by_answer[o["aid"]].family == o["family"] and by_answer[o["aid"]].kind == o["kind"]
               and by_answer[o["aid"]].telegram_id == o["p"] for o in result.outcomes)


def assert_complete_and_consistent(result, state_dir: Path, url_view, n_players: int, sessions: int) -> None:
    judged, per_player, finished_per_player = url_view
    truth = result.truth_json()
    assert set(truth) == TRUTH_KEYS
    assert all(set(a) == {f.name for f in fields(AnswerTruth)} for a in truth["answers"])
    json.dumps(truth)
    assert not result.errors, result.errors
    assert result.lost_answers == []
    assert result.sessions == n_players * sessions
    # every (player, session) finished exactly once, journaled once
    ends = [(r["p"], r["s"]) for r in Journal(directory=state_dir).records() if r["k"] == "end"]
    assert len(ends) == len(set(ends)) == n_players * sessions
    assert set(ends) == {(p.telegram_id, s) for p in result.players for s in range(sessions)}
    # the server played exactly that many sessions per player, all to the end (none abandoned, none extra)
    assert len(per_player) == n_players
    assert set(per_player.values()) == {sessions} and finished_per_player == per_player
    # no answer twice; the truth holds exactly the answers the server has a verdict for, with that verdict
    ids = [a["answer_id"] for a in truth["answers"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(judged)
    for a in truth["answers"]:
        assert judged[a["answer_id"]] == (("wrong", a["correction"]) if a["flagged"] else ("correct", None))


async def test_cancelled_run_resumes_to_the_same_truth_as_an_uninterrupted_one(tmp_path):
    url = await make_game(tmp_path)
    state = tmp_path / "state"
    settings = load_settings(database_url=url, bot_token=TOKEN, model="fake:0", image_seconds=0.5, bot_enabled=False)
    async with running_server(settings) as server:
        some_done = asyncio.Event()

        def progress(done: int, total: int) -> None:
            if done >= 2:
                some_done.set()

        run = asyncio.create_task(simulate(server, TOKEN, url, 6, seed=2, sessions_per_player=2, concurrency=6,
                                           progress=progress, state_dir=state))
        await some_done.wait()
        run.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await run
        interrupted = Journal.open(state, {"seed": 2, "players": 6, "sessions": 2},
                                   json.loads((state / "population.json").read_text())["population"])
        interrupted.close()
        assert 2 <= interrupted.sessions < 12
        in_flight = [log for log in interrupted.players.values() if log.open_session is not None]
        assert in_flight, "the cancellation should have caught sessions in flight"

        result = await simulate(server, TOKEN, url, 6, seed=2, sessions_per_player=2, concurrency=6, state_dir=state)
    assert result.resumed_sessions == interrupted.sessions
    assert_complete_and_consistent(result, state, await server_view(url), 6, 2)
    assert_learnt_once_and_as_the_server_says(result, await server_outcomes(url))
    # a learner's bandit is rebuilt from the journal: at the interruption it knew exactly its finished
    # sessions' outcomes (no session in flight counted), and the resumed run added the rest
    learners = [p for p in result.players if p.learner]
    assert learners and all(player_bandit(p, interrupted) is None for p in result.players if not p.learner)
    resumed = Journal.open(state, {"seed": 2, "players": 6, "sessions": 2},
                           json.loads((state / "population.json").read_text())["population"])
    resumed.close()
    for p in learners:
        tid = p.telegram_id
        done_then = interrupted.player(tid).finished
        then, now = player_bandit(p, interrupted), player_bandit(p, resumed)
        expected_then = FindBandit().fit(o for o in result.outcomes if o["p"] == tid and o["s"] < done_then)
        expected_now = FindBandit().fit(o for o in result.outcomes if o["p"] == tid)
        assert (then.arms_, then.families_) == (expected_then.arms_, expected_then.families_)
        assert (now.arms_, now.families_) == (expected_now.arms_, expected_now.families_)
        assert sum(n for _, n in now.arms_.values()) > 0


def flaggers(n: int) -> list[SimPlayer]:
    """Players who flag every answer: one question per image, so no image waits for its deadline."""
    return [SimPlayer(telegram_id=8_100_000 + i, kind="careful", sensitivity=1.0, false_alarm=1.0, fatigue=0.0,
                      think_seconds=1.0, questions_per_image=3, typo_rate=0.0,
                      family_weights={"count": 1.0, "color": 1.0}) for i in range(n)]


async def run_until(server: str, url: str, state: Path, players: list[SimPlayer], monkeypatch,
                    kind: str, nth: int) -> None:
    """Run the simulation and cancel it right after the server answered the `nth` request of `kind`
    (ask | verdict): the server acted on it, the simulator never saw the response."""
    real_call = Client.call
    seen = Counter()
    main = None

    async def call(self, method: str, path: str, body: dict | None = None):
        response = await real_call(self, method, path, body)
        k = "ask" if path.endswith("/questions") else "verdict" if path.endswith("/verdict") else "other"
        seen[k] += 1
        if k == kind and seen[k] == nth:
            main.cancel()
            await asyncio.sleep(0)  # the cancellation lands here: the response is lost
        return response

    monkeypatch.setattr(Client, "call", call)
    main = asyncio.create_task(simulate(server, TOKEN, url, len(players), sessions_per_player=2, concurrency=4,
                                        players=players, state_dir=state))
    with pytest.raises(asyncio.CancelledError):
        await main
    monkeypatch.setattr(Client, "call", real_call)


async def test_requests_in_doubt_are_settled_by_replaying_their_request_ids(tmp_path, monkeypatch):
    url = await make_game(tmp_path)
    state = tmp_path / "state"
    players = flaggers(4)
    meta = {"seed": 0, "players": 4, "sessions": 2}
    population = json.loads(json.dumps([p.__dict__ for p in players]))
    # the image deadline is far away: a resumed player finds its unanswered question still on screen
    settings = load_settings(database_url=url, bot_token=TOKEN, model="fake:0", image_seconds=60.0, bot_enabled=False)
    async with running_server(settings) as server:
        # 1. the server applied a verdict, the simulator lost the response
        await run_until(server, url, state, players, monkeypatch, "verdict", 7)
        journal = Journal.open(state, meta, population)
        journal.close()
        in_doubt = [log.pending_verdict["answer"]["answer_id"] for log in journal.players.values()
                    if log.pending_verdict is not None]
        judged, _, _ = await server_view(url)
        applied = [aid for aid in in_doubt if aid in judged]
        assert applied, "the 7th verdict reached the server but was never confirmed to the simulator"
        assert not set(applied) & set(journal.judged)

        # 2. resumed, then the server stored an answer whose response the simulator lost
        await run_until(server, url, state, players, monkeypatch, "ask", 12)
        journal = Journal.open(state, meta, population)
        journal.close()
        assert set(applied) <= set(journal.judged)  # settled by resending the same request id
        asked = {(log.pending_ask["sid"], log.pending_ask["question"]) for log in journal.players.values()
                 if log.pending_ask is not None}
        db = Database(url)
        async with db.read() as conn:
            waiting = {(r.session_id, r.question): r.id for r in (await conn.execute(
                select(T.answers.c.id, T.answers.c.session_id, T.answers.c.question)
                .where(T.answers.c.verdict.is_(None)))).all()}
        await db.dispose()
        unjudged = [waiting[k] for k in asked if k in waiting]
        assert unjudged, "the 12th question was answered on the server but never seen by the simulator"

        # 3. resumed to the end: the answer left on screen is judged, nothing counted twice
        result = await simulate(server, TOKEN, url, 4, sessions_per_player=2, concurrency=4, players=players,
                                state_dir=state)
    assert set(unjudged) <= {a.answer_id for a in result.answers}
    view = await server_view(url)
    assert_complete_and_consistent(result, state, view, 4, 2)
    # the verdicts settled after a crash are learnt by the summary of their session, once
    assert_learnt_once_and_as_the_server_says(result, await server_outcomes(url))
    assert len(view[0]) == 4 * 2 * 10  # every image of every session flagged once: none lost, none doubled


def test_state_of_another_simulation_is_refused(tmp_path):
    population = [{"telegram_id": 1}]
    Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 2}, population).close()
    for meta in ({"seed": 2, "players": 1, "sessions": 2}, {"seed": 1, "players": 1, "sessions": 3}):
        with pytest.raises(StateMismatch, match="rerun with the stored arguments"):
            Journal.open(tmp_path, meta, population)
    with pytest.raises(StateMismatch, match="population differs"):
        Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 2}, [{"telegram_id": 2}])
    running = Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 2}, population)
    with pytest.raises(StateMismatch, match="another `gap simulate` is using"):
        Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 2}, population)
    running.close()
    Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 2}, population).close()


def test_a_line_cut_short_by_a_kill_is_dropped(tmp_path):
    population = [{"telegram_id": 1}]
    journal = Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 1}, population)
    journal.write({"k": "start", "p": 1, "s": 0, "sid": "S"})
    journal.close()
    with open(tmp_path / JOURNAL_FILE, "a") as fh:
        fh.write('{"k":"ask","p":1,"s":0,"si')  # killed mid-write (before its request was sent)
    journal = Journal.open(tmp_path, {"seed": 1, "players": 1, "sessions": 1}, population)
    journal.write({"k": "end", "p": 1, "s": 0, "sid": "S"})
    journal.close()
    lines = (tmp_path / JOURNAL_FILE).read_text().splitlines()
    assert [json.loads(x)["k"] for x in lines] == ["start", "end"]
    assert journal.player(1).pending_ask is None and journal.sessions == 1


def _ctrl_c_as_from_a_terminal() -> None:
    """The child starts with Ctrl-C's default action, as a shell starts it: a disposition the test
    process may have inherited or been left with (ignored) must not decide what the CLI does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_ctrl_c_on_the_cli_exits_non_zero_and_the_same_command_resumes(tmp_path):
    url = await make_game(tmp_path)
    truth_out = tmp_path / "truth.json"
    state = Path(str(truth_out) + ".state")
    settings = load_settings(database_url=url, bot_token=TOKEN, model="fake:0", image_seconds=0.5, bot_enabled=False)
    gap = Path(sys.executable).with_name("gap")
    env = {**os.environ, "GAP_BOT_TOKEN": TOKEN, "GAP_DATABASE_URL": url}
    async with running_server(settings) as server:
        # three sessions a player: the first "end" comes a third of the way in, so SIGINT lands
        # mid-run even when a loaded machine is slow to poll the journal
        cmd = [str(gap), "simulate", "--players", "4", "--sessions", "3", "--seed", "3", "--server", server,
               "--truth-out", str(truth_out)]
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                    preexec_fn=_ctrl_c_as_from_a_terminal)
        journal = state / JOURNAL_FILE
        while proc.returncode is None and not (journal.exists() and '"k":"end"' in journal.read_text()):
            await asyncio.sleep(0.1)
        sent_while_running = proc.returncode is None
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
        assert sent_while_running, "the run ended before its first session's end was seen"
        assert proc.returncode == 130, (out, err, signal.getsignal(signal.SIGINT))
        assert b"Resume by rerunning the same command" in err and TOKEN.encode() not in err + out
        assert not truth_out.exists()

        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, (out, err)
        assert b"resuming from" in err and b"12 sessions" in out
    truth = json.loads(truth_out.read_text())
    assert set(truth) == TRUTH_KEYS and truth["sessions"] == 12 and truth["lost_answers"] == []
    judged, per_player, finished = await server_view(url)
    assert {a["answer_id"] for a in truth["answers"]} == set(judged) and len(truth["answers"]) == len(judged)
    assert set(per_player.values()) == {3} and finished == per_player


async def test_an_interrupted_experiment_simulate_stage_continues_its_sessions(tmp_path):
    """`gap experiment` resumes at stage granularity; inside the simulate stage the journal
    (OUT/simulation) makes a rerun continue the sessions instead of replaying them on the same database."""
    from lab.experiment import Experiment, ExperimentConfig

    cfg = ExperimentConfig.small(standin=True, pool_images=24, players=4, sessions=2, image_seconds=0.5)
    exp = Experiment(tmp_path, str(tmp_path / "no-model"), cfg, log=lambda line: None)
    await asyncio.to_thread(exp.stage, "pool", lambda: asyncio.run(exp._pool()))
    stage = asyncio.create_task(exp._simulate())
    journal = tmp_path / "simulation" / JOURNAL_FILE
    while not stage.done() and not (journal.exists() and '"k":"end"' in journal.read_text()):
        await asyncio.sleep(0.05)
    stage.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stage
    assert exp.stages.done("simulate") is None and not (tmp_path / "truth.json").exists()

    results = await asyncio.to_thread(Experiment(tmp_path, str(tmp_path / "no-model"), cfg,
                                                 log=lambda line: None).run)
    sim = results["simulate"]
    assert sim["sessions"] == 8 and sim["n_errors"] == 0 and sim["lost_answers"] == 0
    assert 1 <= sim["resumed_sessions"] < 8
    # the players' learning is measured across the interruption: every session's outcomes, per group
    learning = sim["learning"]["groups"]
    assert sum(row["questions"] for g in learning.values() for k, row in g.items() if k.startswith("session")) \
        == sum(row["questions"] for g in learning.values() for k, row in g.items() if k == "all") == sim["answers"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    judged, per_player, finished = await server_view(exp.db_url)
    assert sorted(a["answer_id"] for a in truth["answers"]) == sorted(judged)
    assert set(per_player.values()) == {2} and finished == per_player
    assert results["evaluate"]["finds"] > 0
