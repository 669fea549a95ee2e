"""Schemathesis against a real `gap serve` (subprocess, SQLite file, fixed-latency model):
generated requests for every operation of /api/openapi.json — stateless, and stateful
along the description's links (start → ask → judge) — get no server error, and every
response, errors included, matches the documented schema. Bounded: a fixed number of
examples per operation, derandomized so a failure reproduces."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from game.db import Database
from game.migrate import upgrade
from lab.local_server import UNLIMITED
from tests.conftest import TEST_BOT_TOKEN
from tests.webapp.conftest import auth_header
from tests.webapp.test_durability import free_port

REPO = Path(__file__).resolve().parents[2]
AUTH = auth_header(424242, first_name="Fuzz")
EXAMPLES = 15


async def _seed(url: str) -> None:
    """Procedural scenes (their content is known, so describe rounds have pictures too), half reliable."""
    from game.images import images_with_scenes, set_reliability
    from gap.commands.images import generate_pool

    db = Database(url)
    try:
        await generate_pool(db, 24, seed=1000)
        ids = [row[0] for row in await images_with_scenes(db)]
        await set_reliability(db, {image_id: (1.0 if i % 2 == 0 else 0.5) for i, image_id in enumerate(ids)}, 0.9)
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{tmp / 'fuzz.sqlite3'}"
    upgrade(url)
    asyncio.run(_seed(url))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GAP_")}, "GAP_DATABASE_URL": url,
           "GAP_MODEL": "fake:0", "GAP_BOT_TOKEN": TEST_BOT_TOKEN, "GAP_BOT_ENABLED": "false", "PORT": str(port),
           "PYTHONPATH": str(REPO), "GAP_IMAGE_SECONDS": "600",
           **{f"GAP_{name.upper()}": rate for name, rate in UNLIMITED.items()}}
    log = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "gap.cli", "serve", "--host", "127.0.0.1"], env=env, cwd=tmp,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urlopen(base + "/healthz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("gap serve did not start:\n" + log.read_text()[-3000:]) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def fuzz(base: str, headers: dict[str, str] | None, examples: int) -> list[str]:
    """Run Hypothesis over each operation's generated requests; the operations covered."""
    schema = schemathesis.openapi.from_url(base + "/api/openapi.json")
    covered = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate(headers=headers)

        check()
        covered.append(operation.label)
    return covered


def test_every_operation_answers_in_its_documented_shape(fuzz_server):
    covered = fuzz(fuzz_server, AUTH, EXAMPLES)
    assert len(covered) >= 8 and "POST /api/answers/{answer_id}/verdict" in covered, "; ".join(covered)


def test_requests_without_auth_get_the_error_shape(fuzz_server):
    """No Authorization: 401 in the documented error shape (the description itself is public)."""
    assert len(fuzz(fuzz_server, None, 5)) >= 8


def test_stateful_play_along_the_links(fuzz_server):
    """Sequences built from the links (start → ask → judge → ask again / summary) with generated
    bodies: real session and answer ids reach the deep paths of the game."""
    from hypothesis.stateful import run_state_machine_as_test

    # The game's own flow only: hypothesis replays choice sequences and requires the same rules to be
    # enabled each time, so every operation here must answer a new player the same way whatever earlier
    # scenarios did. Pools shared between players (others' finds and descriptions, the duel stock) do
    # not; the stateless runs and the flows' own tests check those responses against their schemas.
    schema = schemathesis.openapi.from_url(fuzz_server + "/api/openapi.json").exclude(
        path_regex=r"^/api/(describe|descriptions|duels|validations)")
    calls: list[str] = []

    # valid requests only (negative ones are the stateless tests' job), and no random Authorization:
    # ours is passed explicitly, so the ignored_auth check also probes each operation without it
    schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE], with_security_parameters=False)

    players = iter(range(425_000, 426_000))

    class Play(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self):
            # each scenario is a new player: one scenario's unjudged answer must not block the next
            # ("judge the last answer before asking again" is a 409 by the rules)
            self.auth = auth_header(next(players), first_name="Fuzz")

        def get_call_kwargs(self, case):
            return {"headers": self.auth}

        def after_call(self, response, case):
            calls.append(f"{case.method} {case.operation.path} {response.status_code}")

    run_state_machine_as_test(Play, settings=settings(max_examples=30, stateful_step_count=10, deadline=None,
                                                      derandomize=True, database=None,
                                                      suppress_health_check=list(HealthCheck)))
    import collections
    assert any(c.startswith("POST /api/answers/{answer_id}/verdict 200") for c in calls), collections.Counter(calls)
