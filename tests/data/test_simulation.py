"""Simulated players against a real server on a real port (fixed-latency model):
whole sessions over HTTP, authenticated by signed initData, truth recorded."""
from __future__ import annotations

import json

from sqlalchemy import func, select

from game import tables as T
from game.db import Database
from lab.local_server import running_server
from settings import load_settings
from lab.simulation import make_population, simulate, with_typo
from tests.data.game_pool import make_game

TOKEN = "123456:SIM-token-for-tests"


def test_population_is_seeded_and_mixed():
    a, b = make_population(40, seed=3), make_population(40, seed=3)
    assert [p.sensitivity for p in a] == [p.sensitivity for p in b]
    kinds = [p.kind for p in a]
    assert kinds.count("random") == 8 and kinds.count("spammer") >= 1 and kinds.count("careful") > 10
    assert all(p.sensitivity == p.false_alarm for p in a if p.kind == "random")
    assert make_population(40, seed=4)[0].sensitivity != a[0].sensitivity


def test_typos_change_one_character():
    import random

    rng = random.Random(0)
    for word in ("three", "left", "blue"):
        typo = with_typo(word, rng)
        assert typo != word or len(set(word)) < len(word)
        assert abs(len(typo) - len(word)) <= 1


async def test_simulated_players_play_whole_sessions_over_http(tmp_path):
    url = await make_game(tmp_path)
    settings = load_settings(database_url=url, bot_token=TOKEN, model="fake:0", image_seconds=1.0)
    async with running_server(settings) as server:
        result = await simulate(server, TOKEN, url, 6, seed=1, sessions_per_player=1, concurrency=6)
    assert not result.errors, result.errors
    assert result.sessions == 6 and len(result.answers) >= 6 * 10
    truth = result.truth_json()
    json.dumps(truth)
    assert {a["answer_id"] for a in truth["answers"]} and all("mistake" in a for a in truth["answers"])
    db = Database(url)
    async with db.read() as conn:
        finished = (await conn.execute(select(func.count()).select_from(T.sessions)
                                       .where(T.sessions.c.status == "finished"))).scalar_one()
        judged = (await conn.execute(select(func.count()).select_from(T.answers)
                                     .where(T.answers.c.verdict.is_not(None)))).scalar_one()
    await db.dispose()
    assert finished == 6
    assert judged == len(result.answers)
