"""The describe round in a real browser (SPEC §3.5): from the home screen a player
describes a picture before its countdown ends (empty text is refused in the page, the
count follows the typing), the description is stored with the time taken; another
player rates it ("Fits" / "Does not fit") with the player's text shown literally, and
two fitting ratings pay the writer's points."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser_support import Server, start_demo, stop

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)> a big red star"


def rate_all(page, button: str) -> int:
    """Press `button` on every description shown until none is left; how many."""
    done = 0
    item = page.locator("#rate-item")
    while True:
        page.wait_for_function("() => document.getElementById('rate-item').hidden"
                               " || !document.getElementById('btn-fits').disabled")
        if not item.is_visible():
            return done
        page.get_by_role("button", name=button, exact=True).click()
        done += 1
        assert done <= 10, "the rating queue never ran dry"


def describe_in_page(server: Server, new_page, name: str, text: str):
    user, init = server.new_user(name)
    page, watch = new_page()
    page.goto(server.page_url(init))
    page.get_by_role("button", name="Describe a picture").click()
    expect(page.get_by_role("heading", name="Describe the picture")).to_be_visible()
    box = page.get_by_role("textbox", name="Your description")
    expect(box).to_be_focused()
    page.wait_for_function("() => document.getElementById('describe-image').naturalWidth > 0")
    left = int(page.locator("#describe-seconds").inner_text())
    assert 50 <= left <= 60
    return user, init, page, watch, box


def test_describe_then_rate(fast_server, new_page, artifacts):
    _, _, page, watch, box = describe_in_page(fast_server, new_page, "Alice", XSS)
    page.get_by_role("button", name="Send", exact=True).click()          # empty: refused in the page
    expect(page.locator("#describe-error")).to_have_text("Please type a description.")
    assert fast_server.query("SELECT COUNT(*) FROM descriptions") == [(0,)]
    box.fill(XSS)
    expect(page.locator("#describe-count")).to_have_text(f"{len(XSS)} / 300")
    page.screenshot(path=artifacts / "describe-360x640.png")
    box.press("Enter")
    expect(page.locator("#describe-done")).to_contain_text("Saved (")
    rows = fast_server.query("SELECT source, text, seconds, points FROM descriptions")
    assert len(rows) == 1 and rows[0][:2] == ("crowd", XSS) and 0 <= rows[0][2] < 60 and rows[0][3] == 0
    expect(page.locator("#rate-item")).to_be_hidden()                      # nobody else's to rate yet
    page.get_by_role("button", name="Describe another").click()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()   # the next picture has come
    expect(box).to_be_focused()
    box.fill("two blue circles on the left")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#describe-done")).to_contain_text("Saved (")
    page.get_by_role("button", name="Back", exact=True).click()
    expect(page.get_by_role("button", name="Play", exact=True)).to_be_visible()
    assert not watch.errors and not watch.dialogs and not watch.csp

    # Bob describes one picture, then rates Alice's two: player text shows literally.
    _, _, page2, watch2, box2 = describe_in_page(fast_server, new_page, "Bob", "a green square")
    box2.fill("a green square")
    box2.press("Enter")
    expect(page2.locator("#rate-item")).to_be_visible()
    expect(page2.locator("#rate-text")).to_have_text(XSS)
    assert page2.evaluate("() => document.getElementById('rate-image').naturalWidth") > 0
    page2.screenshot(path=artifacts / "describe-rate-360x640.png")
    assert rate_all(page2, "Fits") == 2
    assert fast_server.query("SELECT COUNT(*) FROM points_ledger WHERE reason = 'description'") == [(0,)]
    assert not watch2.errors and not watch2.dialogs and not watch2.csp

    # Carol agrees on Alice's first and rejects the second: one confirmed description, paid once.
    _, carol = fast_server.new_user("Carol")
    page3, watch3 = new_page()
    page3.goto(fast_server.page_url(carol))
    page3.get_by_role("button", name="Describe a picture").click()
    expect(page3.get_by_role("button", name="Send", exact=True)).to_be_enabled()   # the picture has come
    page3.get_by_role("textbox", name="Your description").fill("a yellow diamond")
    page3.get_by_role("textbox", name="Your description").press("Enter")
    expect(page3.locator("#rate-item")).to_be_visible()
    seen = []
    while page3.locator("#rate-item").is_visible():
        text = page3.locator("#rate-text").inner_text()
        seen.append(text)
        page3.get_by_role("button", name="Fits" if text == XSS else "Does not fit", exact=True).click()
        page3.wait_for_function("() => document.getElementById('rate-item').hidden"
                                " || !document.getElementById('btn-fits').disabled")
        assert len(seen) <= 5
    assert sorted(seen) == sorted([XSS, "two blue circles on the left", "a green square"])
    paid = fast_server.query("SELECT d.text, l.points FROM points_ledger l JOIN descriptions d "
                             "ON d.player_id = l.player_id WHERE l.reason = 'description' AND d.points > 0")
    assert paid == [(XSS, 10)]
    assert not watch3.errors and not watch3.dialogs and not watch3.csp


@pytest.fixture(scope="module")
def short_describe_server(tmp_path_factory):
    """The demo with a 6-second describe limit (GAP_DESCRIBE_SECONDS)."""
    server = start_demo(tmp_path_factory.mktemp("demo-describe-short"), model="fake:30", image_seconds=90,
                        seed_images=6, env_extra={"GAP_DESCRIBE_SECONDS": "6"})
    yield server
    stop(server)


def test_time_runs_out_and_nothing_is_stored(short_describe_server, new_page):
    server = short_describe_server
    _, init = server.new_user("Dora")
    page, watch = new_page()
    page.goto(server.page_url(init))
    page.get_by_role("button", name="Describe a picture").click()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    box = page.get_by_role("textbox", name="Your description")
    box.fill("too slow, a red star")
    expect(page.locator("#describe-error")).to_have_text("Time is up for this picture.", timeout=20_000)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    (task_id,), = server.query("SELECT id FROM describe_tasks")
    status, body = server.api("POST", f"/api/describe/{task_id}", init, {"request_id": "late", "text": "a red star"})
    assert status == 409 and body["error"]["code"] == "expired"
    assert server.query("SELECT COUNT(*) FROM descriptions") == [(0,)]
    page.get_by_role("button", name="Describe another").click()              # a fresh picture and clock
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    expect(box).to_have_value("too slow, a red star")                       # the typing was kept
    box.press("Enter")
    expect(page.locator("#describe-done")).to_contain_text("Saved (")
    assert server.query("SELECT text FROM descriptions") == [("too slow, a red star",)]
    assert not watch.errors and not watch.dialogs and not watch.csp
