"""A rate-limited player sees how long to wait, counted down, and loses nothing typed
(a real `gap demo` whose question limit is two an hour)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from browser_support import Server, start_demo, stop
from test_flows import ask, open_game

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory) -> Iterator[Server]:
    server = start_demo(tmp_path_factory.mktemp("demo-limited"), model="fake:30", image_seconds=90, seed_images=24,
                        env_extra={"GAP_LIMIT_QUESTIONS": "2/1h"})
    yield server
    stop(server)


def test_the_page_counts_down_a_rate_limit(limited_server, new_page, artifacts):
    _, init = limited_server.new_user()
    page, watch = new_page()
    open_game(page, limited_server, init)
    for text in ("What colour is the circle?", "How many squares?"):
        ask(page, text)
        page.get_by_role("button", name="Correct", exact=True).click()
    question = page.get_by_role("textbox", name="Your question")
    expect(question).to_be_enabled()
    question.fill("Is there a triangle?")
    question.press("Enter")

    banner = page.locator("#banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Please wait")
    first = int(banner.get_attribute("data-wait"))
    assert 0 < first <= 3600
    expect(question).to_have_value("Is there a triangle?")   # kept for later
    expect(question).to_be_enabled()
    page.wait_for_function("w => Number(document.querySelector('#banner').dataset.wait) < w", arg=first)
    page.screenshot(path=artifacts / "rate-limited-360x640.png")
    assert limited_server.query("SELECT COUNT(*) FROM answers") == [(2,)]
    assert watch.errors == [] and watch.dialogs == []
