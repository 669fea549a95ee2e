"""Shared fixtures: the shipped checkpoint, loaded once per module through the real loader."""
from __future__ import annotations

import asyncio
import random

import pytest

from settings import EMBEDDED_MODEL_DIR
from models.scenes import render_png, scene_from_seed


@pytest.fixture(scope="module")
def embedded():
    """Loaded once per module; its batcher follows each test's event loop."""
    from models.loader import load_model

    model = load_model(str(EMBEDDED_MODEL_DIR), max_batch=16, max_wait_ms=5, timeout_s=120)
    yield model
    asyncio.run(model.aclose())


@pytest.fixture(scope="module")
def simple_png() -> bytes:
    return render_png(scene_from_seed("heldout", 3, "simple"), 384)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """`family_dir(name)`: a tiny random-weight model directory of a VLM family (lab.tiny_families),
    built on first use and shared by the whole session."""
    from lab.tiny_families import build_family

    built: dict[str, object] = {}

    def get(name: str):
        if name not in built:
            built[name] = build_family(name, tmp_path_factory.mktemp(f"family-{name}"))
        return built[name]

    return get
