"""Peer validation in a real browser (SPEC §3.3): after the session summary, and from the
home screen, a player checks other players' finds with the buttons "Answer is wrong" /
"Answer is right", one find after another until none is left; player text is shown
literally; two agreeing players confirm a find and its finder gets the +20 bonus."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser_support import BOT_TOKEN, Server

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def player_id(server: Server, user_id: int) -> int:
    from game.players import derive_hash_key, player_key

    rows = server.query("SELECT id FROM players WHERE player_key = ?",
                        (player_key(derive_hash_key(None, BOT_TOKEN), user_id),))
    assert rows, "the player was not created"
    return rows[0][0]


def play_all_wrong_over_api(server: Server, init: str) -> str:
    """A whole session through the JSON API, every first answer judged Wrong."""
    status, state = server.api("POST", "/api/sessions", init)
    assert status == 200, state
    sid = state["session_id"]
    for i in range(10):
        status, got = server.api("POST", f"/api/sessions/{sid}/questions", init,
                                 {"request_id": f"a{i}", "text": f"{XSS} how many?"})
        assert status == 200, got
        status, state = server.api("POST", f"/api/answers/{got['answer_id']}/verdict", init,
                                   {"request_id": f"v{i}", "verdict": "wrong", "correction": f"{XSS} {i}"})
        assert status == 200, state
    assert state["status"] == "finished"
    return sid


READY = ("() => !document.getElementById('validate-empty').hidden"
         " || !document.getElementById('btn-agree').disabled")


def check_all(page, button: str) -> int:
    """Press `button` on every find shown until the page says none is left; how many."""
    done = 0
    empty = page.locator("#validate-empty")
    page.wait_for_function(READY)
    while not empty.is_visible():
        correction = page.locator("#validate-correction").inner_text()
        page.get_by_role("button", name=button, exact=True).click()
        done += 1
        expect(page.locator("#validate-count")).to_have_text(f"Checked: {done}")
        page.wait_for_function(READY)
        if not empty.is_visible():
            expect(page.locator("#validate-correction")).not_to_have_text(correction)
        assert done <= 20, "the queue never ran dry"
    return done


def test_checking_finds_after_the_summary_and_from_home(fast_server, new_page, artifacts):
    alice_user, alice = fast_server.new_user("Alice")
    play_all_wrong_over_api(fast_server, alice)
    alice_pid = player_id(fast_server, alice_user)

    # Bob plays a session in the page, then checks finds from the summary screen.
    bob_user, bob = fast_server.new_user("Bob")
    page, watch = new_page()
    page.goto(fast_server.page_url(bob))
    page.get_by_role("button", name="Play", exact=True).click()
    for i in range(10):
        expect(page.locator("#progress")).to_have_text(f"{i + 1} / 10")
        box = page.get_by_role("textbox", name="Your question")
        box.fill("How many shapes are there?")
        box.press("Enter")
        page.get_by_role("button", name="Wrong", exact=True).click()
        correction = page.get_by_role("textbox", name="Correct answer")
        correction.fill(f"{i} shapes")
        correction.press("Enter")
    expect(page.get_by_role("heading", name="Session over")).to_be_visible()
    page.get_by_role("button", name="Check other players' finds").click()
    expect(page.get_by_role("heading", name="Check a find")).to_be_visible()
    expect(page.get_by_role("button", name="Answer is wrong", exact=True)).to_be_enabled()
    # Player text is text: the markup shows literally and runs nothing.
    expect(page.locator("#validate-question")).to_have_text(f"{XSS} how many?")
    expect(page.locator("#validate-correction")).to_contain_text(XSS)
    assert page.locator("#screen-validate img").count() == 1
    assert page.evaluate("() => document.getElementById('validate-image').naturalWidth") > 0
    page.screenshot(path=artifacts / "validate-360x640.png")
    assert check_all(page, "Answer is wrong") == 5                  # Alice's five finds, never Bob's own
    expect(page.get_by_text("No finds left to check right now")).to_be_visible()
    page.screenshot(path=artifacts / "validate-empty-360x640.png")
    page.get_by_role("button", name="Back", exact=True).click()
    expect(page.get_by_role("heading", name="Session over")).to_be_visible()
    bob_pid = player_id(fast_server, bob_user)
    votes = fast_server.query("SELECT v.agrees, a.player_id FROM validations v JOIN answers a ON a.id = v.answer_id "
                              "WHERE v.validator_player_id = ?", (bob_pid,))
    assert sorted(votes) == [(1, alice_pid)] * 5
    assert fast_server.query("SELECT COUNT(*) FROM points_ledger WHERE reason = 'find_bonus'") == [(0,)]
    assert not watch.errors and not watch.dialogs and not watch.csp

    # Carol checks from the home screen: Bob's finds (no votes yet) and Alice's; agreeing
    # with Bob confirms Alice's finds, and Alice gets +20 for each.
    _, carol = fast_server.new_user("Carol")
    page2, watch2 = new_page()
    page2.goto(fast_server.page_url(carol))
    page2.get_by_role("button", name="Check other players' finds").click()
    assert check_all(page2, "Answer is wrong") == 10
    page2.get_by_role("button", name="Back", exact=True).click()
    expect(page2.get_by_role("button", name="Play", exact=True)).to_be_visible()
    bonuses = fast_server.query("SELECT player_id, points FROM points_ledger WHERE reason = 'find_bonus'")
    assert sorted(bonuses) == [(alice_pid, 20)] * 5
    (session_id,), = fast_server.query("SELECT id FROM sessions WHERE player_id = ?", (alice_pid,))
    status, summary = fast_server.api("GET", f"/api/sessions/{session_id}/summary", alice)
    assert status == 200
    checked = [a for img in summary["images"] if not img["tainted"] for a in img["answers"]]
    assert [a["validation"] for a in checked] == ["confirmed"] * 5 and all(a["bonus"] == 20 for a in checked)
    status, board = fast_server.api("GET", "/api/leaderboard?period=all", alice)
    assert status == 200 and board["me"]["points"] == summary["total_points"]
    assert not watch2.errors and not watch2.dialogs and not watch2.csp
