"""A whole 10-image session in Chromium against `gap demo` with the embedded model
loaded by the real loader, through the exact URL the demo prints (initData
signed with the demo's bot token): first-run tutorial, example chips, verdicts,
corrections, the summary's reveal and the leaderboard."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_full_session_with_the_embedded_model(embedded_server, new_page, artifacts):
    page, watch = new_page()
    page.goto(embedded_server.demo_url)

    # First run: the tutorial is open and explains the points.
    tutorial = page.locator("#tutorial")
    expect(tutorial).to_have_attribute("open", "")
    expect(tutorial).to_contain_text("+20")
    expect(tutorial).to_contain_text("−10")
    page.screenshot(path=artifacts / "full-home-360x640.png")
    page.get_by_role("button", name="Play", exact=True).click()

    question = page.get_by_role("textbox", name="Your question")
    chips = page.get_by_role("group", name="Example questions").get_by_role("button")
    for number in range(1, 11):
        expect(page.locator("#progress")).to_have_text(f"{number} / 10")
        expect(question).to_be_enabled()
        if number == 1:
            page.screenshot(path=artifacts / "full-game-360x640.png")
        # An example chip fills the box; Enter sends it.
        chips.nth(number % chips.count()).click()
        expect(question).not_to_have_value("")
        question.press("Enter")
        expect(page.get_by_role("button", name="Correct", exact=True)).to_be_visible(timeout=60_000)
        answer = page.locator("#chat .bubble.a").last
        expect(answer).not_to_have_text("Thinking…")
        if number == 1:
            page.screenshot(path=artifacts / "full-answer-360x640.png")
        if number % 3 == 0:       # sometimes keep going on the same image first
            page.get_by_role("button", name="Correct", exact=True).click()
            expect(question).to_be_enabled()
            question.fill("How many objects are there?")
            page.get_by_role("button", name="Ask", exact=True).click()
            expect(page.get_by_role("button", name="Wrong", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Wrong", exact=True).click()
        correction = page.get_by_role("textbox", name="Correct answer")
        correction.fill(f"my answer {number}")
        if number == 1:
            page.screenshot(path=artifacts / "full-correction-360x640.png")
        correction.press("Enter")

    expect(page.get_by_role("heading", name="Session over")).to_be_visible()
    items = page.locator("#summary-list > li")
    expect(items).to_have_count(10)
    page.screenshot(path=artifacts / "full-summary-360x640.png")

    # The page shows exactly what the server's summary says.
    session_id = embedded_server.query("SELECT id FROM sessions ORDER BY created_at DESC LIMIT 1")[0][0]
    init = embedded_server.demo_url.split("tgWebAppData=")[1].split("&")[0]
    from urllib.parse import unquote

    status, summary = embedded_server.api("GET", f"/api/sessions/{session_id}/summary", unquote(init))
    assert status == 200
    expect(page.locator("#summary-points")).to_have_text(str(summary["total_points"]))
    assert sum(1 for image in summary["images"] if image["tainted"]) == 5
    expect(page.locator("#summary-list .badge.tainted")).to_have_count(5)
    finds = sum(1 for image in summary["images"] if not image["tainted"]
                for a in image["answers"] if a["verdict"] == "wrong")
    assert finds == 5                     # one Wrong per untainted image
    expect(page.locator("#summary-finds")).to_contain_text("5 finds await validation")
    rows = embedded_server.query("SELECT COUNT(*), COUNT(correction) FROM answers WHERE session_id = ?",
                                 (session_id,))
    assert rows == [(13, 10)]             # 10 images + 3 extra questions; one correction per image

    page.get_by_role("button", name="Leaderboard", exact=True).click()
    expect(page.get_by_role("tab", name="This week")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="All time").click()
    expect(page.get_by_role("tab", name="All time")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#leaders-list")).to_contain_text("Demo Player (you)")   # 5 scored verdicts
    page.screenshot(path=artifacts / "full-leaderboard-360x640.png")
    page.get_by_role("button", name="Back", exact=True).click()
    expect(page.get_by_role("button", name="Play again", exact=True)).to_be_visible()
    assert not watch.errors and not watch.dialogs and not watch.csp
