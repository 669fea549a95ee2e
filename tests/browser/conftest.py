"""Browser-test fixtures: Chromium (never skipped), `gap demo` servers, pages.
The helpers and the reasoning live in browser_support.py.

Module scope on purpose: Playwright's sync API runs an event loop in the main
thread while it is open, which would break other areas' asyncio tests that run
later in the same pytest session; servers (subprocesses) also go away early."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    MOBILE,
    PageWatch,
    Server,
    offline_telegram,
    start_demo,
    stop,
)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make browser-deps` "
                    "(apt-get install -y chromium fonts-noto-color-emoji)", pytrace=False)
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory) -> Iterator[Server]:
    """The demo with the embedded model through the real loader; 120 s per image."""
    server = start_demo(tmp_path_factory.mktemp("demo-embedded"), model=None, image_seconds=120)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory) -> Iterator[Server]:
    """The demo with the fixed-latency fake model (XSS, errors, theme, weight)."""
    server = start_demo(tmp_path_factory.mktemp("demo-fast"), model="fake:30", image_seconds=90, seed_images=24)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def short_timer_server(tmp_path_factory) -> Iterator[Server]:
    """The demo with a 3-second image timer (GAP_IMAGE_SECONDS) for the timeout flows."""
    server = start_demo(tmp_path_factory.mktemp("demo-short"), model="fake:30", image_seconds=3, seed_images=24)
    yield server
    stop(server)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def new_page(browser):
    """`new_page(color_scheme=..., telegram=route_handler)` → (page, watch), at 360×640."""
    contexts = []

    def make(color_scheme: str = "light", telegram=offline_telegram, viewport=MOBILE):
        context = browser.new_context(viewport=viewport, color_scheme=color_scheme, device_scale_factor=1,
                                      has_touch=False, locale="en-US")
        context.set_default_timeout(30_000)
        contexts.append(context)
        context.route("https://telegram.org/**", telegram)
        page = context.new_page()
        return page, PageWatch(page)

    yield make
    for context in contexts:
        context.close()
