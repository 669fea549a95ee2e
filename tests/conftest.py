"""Shared fixtures: a real SQLite file migrated by Alembic, seeded image pools,
a controllable clock and the deterministic fixed-latency model.

Tests (or modules, via `pytestmark`) marked `both_backends` get every
database fixture twice: on SQLite and on a fresh database of a throwaway
PostgreSQL cluster started once per session (tests/pg.py), migrated the same
way (SPEC §4.1). GAP_TEST_POSTGRES=0 runs only the SQLite half."""
from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from game.db import Database
from game.images import prepare_image, store_image
from game.migrate import upgrade
from game.service import GameConfig, GameService
from models.fake import FixedLatencyModel
from tests.pg import PostgresCluster

TEST_BOT_TOKEN = "123456:TEST-token-for-the-test-suite"
TEST_HASH_KEY = b"test-player-hash-key"


class FakeClock:
    """Epoch milliseconds that only move when a test says so."""

    def __init__(self, start_ms: int = 1_790_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def solid_png(index: int, size: int = 32) -> bytes:
    """A small distinct image per index (distinct bytes, so no dedupe)."""
    color = ((index * 37) % 256, (index * 91) % 256, (index * 53 + 7) % 256)
    img = Image.new("RGB", (size, size), color)
    img.putpixel((index % size, (index // size) % size), (255 - color[0], 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def seed_images(db: Database, total: int = 20, reliable: int = 10) -> list[int]:
    """Store `total` images, the first `reliable` of them in the reliable pool."""
    ids = []
    for i in range(total):
        image_id, _ = await store_image(db, prepare_image(solid_png(i)), pool="test",
                                        source_name=f"seed-{i}.png", reliable=i < reliable,
                                        model_accuracy=1.0 if i < reliable else 0.5)
        ids.append(image_id)
    return ids


BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: database fixtures run on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`both_backends` tests that use a database fixture run once per backend ([sqlite], [postgresql])."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        backends = BACKENDS[:1] if os.environ.get("GAP_TEST_POSTGRES") == "0" else BACKENDS
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test: "sqlite" unless the test is marked `both_backends`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server for the whole session, stopped (and deleted) at its end."""
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a new database with no tables yet: a SQLite file path, or a fresh PostgreSQL database."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_cluster").new_database()
    return f"sqlite+aiosqlite:///{tmp_path / 'gap.sqlite3'}"


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
async def db(db_url: str):
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model() -> FixedLatencyModel:
    return FixedLatencyModel(latency_ms=0)


@pytest.fixture
async def service(db: Database, model, clock: FakeClock) -> GameService:
    await seed_images(db)
    return GameService(db, model, hash_key=TEST_HASH_KEY, clock=clock, rng=random.Random(7),
                       config=GameConfig(image_seconds=120, taint_prob=0.8, false_alarm_penalty=10))
