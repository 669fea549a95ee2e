"""`kill -9` in the middle of a session: after a restart the player resumes the
same image with the same absolute deadline, and every acknowledged question and
verdict is in the database. Runs the real `gap serve` as a subprocess."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, select

from game.tables import answers, session_images
from tests.conftest import TEST_BOT_TOKEN
from tests.webapp.conftest import auth_header

REPO = Path(__file__).resolve().parents[2]
GAP = [sys.executable, "-m", "gap.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(GAP + ["serve", "--host", "127.0.0.1"], env=env, cwd=env["WORKDIR"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{log.read_text()[-3000:]}")
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await __import__("asyncio").sleep(0.2)
    raise AssertionError(f"server not healthy in {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    db_file = tmp_path / "durable.sqlite3"
    env = {**os.environ, "GAP_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}", "GAP_MODEL": "fake:20",
           "GAP_BOT_TOKEN": TEST_BOT_TOKEN, "PORT": str(free_port()), "WORKDIR": str(tmp_path),
           "PYTHONPATH": str(REPO), "GAP_IMAGE_SECONDS": "600"}
    for cmd in (["images", "generate", "14", "--no-measure"], ["images", "reliable", "--threshold", "0", "--questions", "1"]):
        subprocess.run(GAP + cmd, env=env, cwd=tmp_path, check=True, capture_output=True)
    env["DB_FILE"] = str(db_file)
    return env


async def test_kill_9_and_resume(server_env, tmp_path: Path):
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{server_env['PORT']}"
    headers = auth_header(31337)
    proc = start_server(server_env, log)
    try:
        await wait_healthy(base, proc, log)
        async with aiohttp.ClientSession(base, headers=headers) as http:
            async with http.post("/api/sessions") as resp:
                state = await resp.json()
            sid = state["session_id"]
            acknowledged = []
            for i, verdict in enumerate(["correct", "wrong"]):
                async with http.post(f"/api/sessions/{sid}/questions",
                                     json={"request_id": f"q{i}", "text": "How many shapes?"}) as resp:
                    assert resp.status == 200
                    aid = (await resp.json())["answer_id"]
                body = {"request_id": f"v{i}", "verdict": verdict, "correction": "two" if verdict == "wrong" else None}
                async with http.post(f"/api/answers/{aid}/verdict", json=body) as resp:
                    assert resp.status == 200
                    state = await resp.json()
                acknowledged.append((aid, verdict))
            async with http.post(f"/api/sessions/{sid}/questions",
                                 json={"request_id": "q-last", "text": "What colour is the circle?"}) as resp:
                assert resp.status == 200
                pending = (await resp.json())["answer_id"]
        assert state["image"]["index"] == 1
        deadline = state["image"]["deadline_ms"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = start_server(server_env, log)
        await wait_healthy(base, proc, log)
        async with aiohttp.ClientSession(base, headers=headers) as http:
            async with http.get("/api/sessions/current") as resp:
                assert resp.status == 200
                resumed = await resp.json()
            assert resumed["session_id"] == sid
            assert resumed["image"]["index"] == 1 and resumed["image"]["deadline_ms"] == deadline
            assert [a["answer_id"] for a in resumed["image"]["answers"]] == [pending]
            # A retry of an acknowledged request after the crash replays, stores nothing new.
            async with http.post(f"/api/answers/{acknowledged[1][0]}/verdict",
                                 json={"request_id": "v1", "verdict": "wrong", "correction": "twelve"}) as resp:
                assert resp.status == 200 and (await resp.json())["image"]["deadline_ms"] == deadline
            async with http.post(f"/api/answers/{pending}/verdict",
                                 json={"request_id": "v-last", "verdict": "correct"}) as resp:
                assert resp.status == 200
        engine = create_engine(f"sqlite:///{server_env['DB_FILE']}")
        with engine.connect() as conn:
            stored = {r.id: r for r in conn.execute(select(answers)).all()}
            first = conn.execute(select(session_images).where(session_images.c.position == 0)).one()
        engine.dispose()
        for aid, verdict in acknowledged:
            assert stored[aid].verdict == verdict and stored[aid].honest_answer and stored[aid].judged_at
        assert stored[acknowledged[1][0]].correction == "two"
        assert len(stored) == 3 and stored[pending].verdict == "correct"
        assert first.end_reason == "wrong"
        proc.send_signal(signal.SIGTERM)  # graceful shutdown path
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
