"""Faults on a fleet (SPEC §4.2): two `gap serve` workers on one PostgreSQL, the same players
sending to both as a load balancer would (a request that fails is retried, with the same
request_id, on the other worker). Mid-load one worker is killed with SIGKILL, later
PostgreSQL itself (postmaster and backends) and then restarted. Afterwards every
acknowledged question and verdict is stored exactly once, every session can still be
played, and the surviving worker keeps serving."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from game.db import Database
from game.migrate import upgrade
from game.tables import answers, requests
from lab.local_server import UNLIMITED
from tests.conftest import TEST_BOT_TOKEN, seed_images
from tests.pg import PostgresCluster
from tests.webapp.conftest import auth_header
from tests.webapp.test_durability import free_port

REPO = Path(__file__).resolve().parents[2]
PLAYERS = 6


@dataclass
class Tally:
    requests: int = 0
    failures: int = 0
    questions: dict[str, str] = field(default_factory=dict)   # acknowledged request_id -> answer_id
    verdicts: dict[str, str] = field(default_factory=dict)    # acknowledged request_id -> answer_id


def start_worker(url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GAP_")}, "GAP_DATABASE_URL": url,
           "GAP_MODEL": "fake:5", "GAP_BOT_TOKEN": TEST_BOT_TOKEN, "GAP_BOT_ENABLED": "false", "PORT": str(port),
           "PYTHONPATH": str(REPO), "GAP_IMAGE_SECONDS": "600", "GAP_ROUND_POLL_SECONDS": "0",
           **{f"GAP_{name.upper()}": rate for name, rate in UNLIMITED.items()}}
    return subprocess.Popen([sys.executable, "-m", "gap.cli", "serve", "--host", "127.0.0.1"], env=env,
                            cwd=log.parent, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_healthy(http: aiohttp.ClientSession, base: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(base + "/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{base} not healthy")


async def send(http, bases: list[str], turn: int, method: str, path: str, headers: dict, tally: Tally,
               body: dict | None = None, deadline: float = 60) -> dict:
    """One request as a load balancer sends it: to the next worker, retried on the other one
    (same body, same request_id) after a connection error or a 5xx, until it is answered."""
    stop = time.monotonic() + deadline
    attempt = turn
    while True:
        base = bases[attempt % len(bases)]
        attempt += 1
        tally.requests += 1
        try:
            async with http.request(method, base + path, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                data = await resp.json(content_type=None)
                if resp.status < 500:
                    assert resp.status == 200, (method, path, resp.status, data)
                    return data
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        tally.failures += 1
        assert time.monotonic() < stop, f"{method} {path} was never answered"
        await asyncio.sleep(0.05 * min(attempt, 10))


async def play(http, bases: list[str], player: int, tally: Tally, until: float) -> None:
    headers = auth_header(8000 + player)
    step = 0
    while time.monotonic() < until:
        state = await send(http, bases, player + step, "POST", "/api/sessions", headers, tally)
        if state["status"] != "playing":
            continue
        rid = f"p{player}-q{step}"
        got = await send(http, bases, player + step + 1, "POST", f"/api/sessions/{state['session_id']}/questions",
                         headers, tally, {"request_id": rid, "text": "How many shapes are there?"})
        tally.questions[rid] = got["answer_id"]
        vid = f"p{player}-v{step}"
        verdict = {"request_id": vid, "verdict": "wrong", "correction": f"a purple unicorn {step}"} \
            if step % 2 else {"request_id": vid, "verdict": "correct"}
        await send(http, bases, player + step + 2, "POST", f"/api/answers/{got['answer_id']}/verdict",
                   headers, tally, verdict)
        tally.verdicts[vid] = got["answer_id"]
        step += 1


async def test_kill_a_worker_then_postgresql_mid_load(tmp_path: Path):
    cluster = PostgresCluster(durable_commits=True).start()
    workers: list[subprocess.Popen] = []
    try:
        url = cluster.new_database()
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        await seed_images(db, total=30, reliable=15)
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        workers = [start_worker(url, p, tmp_path / f"worker-{i}.log") for i, p in enumerate(ports)]
        tally = Tally()
        async with aiohttp.ClientSession() as http:
            for base in bases:
                await wait_healthy(http, base)
            until = time.monotonic() + 7
            load = asyncio.gather(*(play(http, bases, p, tally, until) for p in range(PLAYERS)))
            await asyncio.sleep(1.5)
            workers[0].send_signal(signal.SIGKILL)  # one worker dies mid-load
            await asyncio.sleep(1.5)
            before_crash = len(tally.verdicts)
            await asyncio.to_thread(cluster.crash_and_restart, 1.0)  # then PostgreSQL itself
            await load
            assert len(tally.verdicts) > before_crash  # the fleet served again after the database came back
            # every session is still playable, on the surviving worker
            for p in range(PLAYERS):
                state = await send(http, bases[1:], 0, "POST", "/api/sessions", auth_header(8000 + p), tally)
                assert state["status"] == "playing"
            await wait_healthy(http, bases[1], timeout=10)
        async with db.read() as conn:
            stored = {r.id: r for r in (await conn.execute(select(answers.c.id, answers.c.verdict))).all()}
            per_request = dict((await conn.execute(select(requests.c.request_id, func.count())
                                                   .group_by(requests.c.request_id))).all())
            asks = (await conn.execute(select(func.count()).select_from(requests)
                                       .where(requests.c.kind == "ask"))).scalar_one()
        await db.dispose()
        lost = [rid for rid, aid in tally.questions.items() if aid not in stored or per_request.get(rid) != 1]
        unjudged = [rid for rid, aid in tally.verdicts.items() if stored[aid].verdict is None
                    or per_request.get(rid) != 1]
        print(f"\nfleet faults: {tally.requests} requests, {tally.failures} failed and retried, "
              f"{len(tally.questions)} questions and {len(tally.verdicts)} verdicts acknowledged, "
              f"losses {len(lost) + len(unjudged)}")
        assert len(tally.questions) >= PLAYERS and tally.failures > 0
        assert lost == [] and unjudged == []
        assert len(stored) == asks  # no answer without the one request that stored it: nothing twice
        assert workers[1].poll() is None  # the surviving worker is still up
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(timeout=30)
        cluster.stop()
