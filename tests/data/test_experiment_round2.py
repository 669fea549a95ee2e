"""Model round 2 of the closed loop (SPEC §3.2), in miniature: a finished experiment is resumed
with --round2-sessions, the GAP arm's adapter is promoted into the real server, the same players
play again over HTTP, and REPORT.md's "Model rounds" carries the numbers `game.rounds` reads from
the database — with the new answers recorded under the adapter's model id."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from game import rounds
from game.db import Database
from lab.experiment import Experiment, ExperimentConfig, ExperimentMismatch
from settings import EMBEDDED_MODEL_DIR



def _answers_by_model(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT model_id, count(*) FROM answers GROUP BY model_id").fetchall())
    finally:
        con.close()


async def _report_from_db(path: Path, theta: float) -> list[rounds.RoundStats]:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        return await rounds.round_report(db, theta)
    finally:
        await db.dispose()


@pytest.mark.slow
@pytest.mark.skipif(not (EMBEDDED_MODEL_DIR / "config.json").exists(), reason="the embedded checkpoint is not built")
def test_round_two_plays_the_promoted_adapter_and_reports_each_round(tmp_path: Path):
    # θ 0.5 and two sessions (players pass the gold gate): a run this small must export something for the
    # GAP arm to be trained
    cfg = ExperimentConfig.small(pool_images=24, players=5, sessions=2, eval_per_type=2, ft_max_steps=3,
                                 ft_min_steps=2, image_seconds=1.0, pool_styles=(("dark", 0.25),),
                                 trained_arms=("gap",), theta=0.5)
    logs: list[str] = []
    first = Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), cfg, log=logs.append).run()
    assert "round2" not in first and "## Model rounds" not in (tmp_path / "REPORT.md").read_text()
    db_path = tmp_path / "gap.sqlite3"
    (base_id,) = _answers_by_model(db_path)
    assert (tmp_path / "adapters" / "gap" / "adapter_config.json").exists()

    # an adapter that does not load: a clear error before anyone plays, no answers recorded (a copy of the run)
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path, broken, ignore=shutil.ignore_patterns("broken"))
    (broken / "adapters" / "gap" / "adapter_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(RuntimeError, match="round 2 does not serve the promoted adapter .*cannot load"):
        Experiment(broken, str(EMBEDDED_MODEL_DIR), dataclasses.replace(cfg, round2_sessions=1),
                   log=logs.append).run()
    assert _answers_by_model(broken / "gap.sqlite3") == {base_id: _answers_by_model(db_path)[base_id]}
    assert not (broken / "stages" / "round2.done").exists()

    # a finished run takes round 2 without redoing anything else
    with_round2 = dataclasses.replace(cfg, round2_sessions=1)
    logs.clear()
    results = Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), with_round2, log=logs.append).run()
    assert [line for line in logs if "done earlier" not in line] == ["[round2] …", logs[-1]]
    r2 = results["round2"]
    assert r2["n_errors"] == 0 and r2["played_sessions"] == 5 and r2["answers"] > 0
    by_model = _answers_by_model(db_path)
    assert set(by_model) == {base_id, r2["model_id"]} and r2["model_id"] != base_id
    assert r2["model_id"].startswith("gap@")
    round2_truth = json.loads((tmp_path / "truth-round2.json").read_text())
    first_truth = json.loads((tmp_path / "truth.json").read_text())
    # the same population: the same telegram ids and kinds
    assert [(p["telegram_id"], p["kind"]) for p in round2_truth["players"]] == \
        [(p["telegram_id"], p["kind"]) for p in first_truth["players"]]
    assert len(round2_truth["answers"]) == r2["answers"]
    con = sqlite3.connect(db_path)
    try:
        served = dict(con.execute("SELECT id, model_id FROM answers").fetchall())
        (promoted,) = con.execute("SELECT spec, promoted_by, model_id FROM model_rounds").fetchall()
    finally:
        con.close()
    assert {served[a["answer_id"]] for a in round2_truth["answers"]} == {r2["model_id"]}
    assert {served[a["answer_id"]] for a in first_truth["answers"]} == {base_id}
    assert promoted == (str((tmp_path / "adapters" / "gap").resolve()), "experiment", r2["model_id"])

    # the report's numbers are the database's
    stats = asyncio.run(_report_from_db(db_path, cfg.theta))
    assert [(s.model_id, s.round) for s in stats] == [(base_id, None), (r2["model_id"], r2["round"])]
    report = (tmp_path / "REPORT.md").read_text()
    section = report[report.index("## Model rounds"):]
    for number, s in zip((0, r2["round"]), stats):
        assert s.questions == by_model[s.model_id] and s.untainted_questions <= s.questions
        # true error rate: the truth file's mistakes among this round's judged untainted answers
        truth = first_truth if number == 0 else round2_truth
        judged = [a for a in truth["answers"] if a["answer_id"] in _untainted_ids(db_path)]
        wrong = sum(a["mistake"] for a in judged)
        row = next(line for line in section.splitlines() if line.startswith(f"| {number} | `"))
        assert row.startswith(f"| {number} | `{s.model_id}` | {s.questions} | {s.untainted_questions} | {s.finds} | "
                              f"{s.confirmed} | {s.error_rate:.1%} | {wrong / len(judged):.1%} ({wrong}/{len(judged)}) | "
                              f"{s.finds_per_player_minute:.2f} ("), row
        assert sum(n for n, _ in s.by_stratum.values()) == s.untainted_questions
        assert sum(c for _, c in s.by_stratum.values()) == s.confirmed
    lines = rounds.report_lines(stats, cfg.theta)
    assert all(f"weakest strata: {s.weak_strata()[0][0]}" in line for s, line in zip(stats, lines[1:]) if s.confirmed)
    assert "| simple:dark |" in section and (tmp_path / "rounds.png").exists()
    # the operator's view of the same database: `gap model rounds --json`
    cli = subprocess.run([sys.executable, "-m", "gap.cli", "model", "rounds", "--json", "--theta", str(cfg.theta)],
                         env={**os.environ, "GAP_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}"},
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    models = json.loads(cli.stdout)["models"]
    assert [(m["model_id"], m["confirmed"], m["by_stratum"]) for m in models] == \
        [(s.model_id, s.confirmed, {k: list(v) for k, v in s.by_stratum.items()}) for s in stats]
    assert [m["weak_strata"] for m in models] == [[list(w) for w in s.weak_strata()] for s in stats]

    # resumable: nothing is redone, the same numbers come back
    logs.clear()
    again = Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), with_round2, log=logs.append).run()
    assert logs and all("done earlier" in line for line in logs)
    assert again["round2"] == r2 and _answers_by_model(db_path) == by_model
    # another number of round-2 sessions would mix two runs: refused
    with pytest.raises(ExperimentMismatch, match="round 2 with 1 sessions"):
        Experiment(tmp_path, str(EMBEDDED_MODEL_DIR), dataclasses.replace(cfg, round2_sessions=2))


def _untainted_ids(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT a.id FROM answers a JOIN session_images s "
                                          "ON a.session_image_id = s.id WHERE NOT s.tainted")}
    finally:
        con.close()


def test_round2_sessions_is_checked_before_any_work(tmp_path: Path, capsys):
    from gap.cli import main

    out = tmp_path / "run"
    for bad in ("0", "-1", "many"):
        with pytest.raises(SystemExit):
            main(["experiment", "--small", "--out", str(out), "--round2-sessions", bad])
        assert "expected a number of sessions from 1 to 1000" in capsys.readouterr().err
    assert main(["experiment", "--small", "--standin", "--out", str(out), "--round2-sessions", "1"]) == 2
    assert "a --standin run trains none" in capsys.readouterr().err
    assert not out.exists()


def test_a_learner_remembers_what_paid_in_the_earlier_round():
    from lab.simulation import make_population, player_bandit
    from lab.simulation_state import Journal

    players = make_population(10, 0)
    learner = next(p for p in players if p.learner)
    steady = next(p for p in players if not p.learner)
    earlier = [{"aid": f"a{i}", "family": "color", "kind": "star", "outcome": "find"} for i in range(6)]
    memory = {learner.telegram_id: earlier, steady.telegram_id: earlier}
    fresh, remembering = player_bandit(learner, Journal()), player_bandit(learner, Journal(), memory)
    assert fresh.families_ == {} and remembering.families_ == {"color": [6, 6]}
    assert remembering.family_mean("color") > fresh.family_mean("color")
    assert player_bandit(steady, Journal(), memory) is None   # random flaggers and spammers never learn
    other = next(p for p in players if p.learner and p is not learner)
    assert player_bandit(other, Journal(), memory).families_ == {}   # each player remembers only their own


def test_round_two_is_skipped_with_a_note_when_the_gap_arm_was_not_trained(tmp_path: Path):
    exp = Experiment(tmp_path, str(tmp_path / "base"), ExperimentConfig.small(round2_sessions=2))
    exp.stages.mark("finetune", {"gap": {"skipped": "no examples"}})
    result = asyncio.run(exp._round2())
    assert result == {"skipped": "the GAP arm was not trained (no examples): there is no model to promote",
                      "sessions": 2}
    assert not (tmp_path / "gap.sqlite3").exists()   # nothing promoted, nothing played
    assert exp._rounds_section(result) == ["", "## Model rounds", "",
                                           "Round 2 was not played: " + result["skipped"] + "."]
