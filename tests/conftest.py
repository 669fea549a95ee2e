"""Shared fixtures: a real SQLite file migrated by Alembic, seeded image pools,
a controllable clock and the deterministic fixed-latency model."""
from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from game.db import Database
from game.images import prepare_image, store_image
from game.migrate import upgrade
from game.service import GameConfig, GameService
from models.fake import FixedLatencyModel

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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gap.sqlite3'}"
    upgrade(url)
    return url


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
