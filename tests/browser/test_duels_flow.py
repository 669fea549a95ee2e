"""Preference duels in a real browser (SPEC §3.4): the first-use tutorial (a wrong tap is
corrected, a right one explains the rules), a batch of five one-tap duels whose buttons
wait out the minimum time, the end-of-batch result, the next batch (resumed by the bot's
`?mode=duels` entry); player text in answer duels is shown literally."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser_support import BOT_TOKEN, Server

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


def player_id(server: Server, user_id: int) -> int:
    from game.players import derive_hash_key, player_key

    (pid,), = server.query("SELECT id FROM players WHERE player_key = ?",
                           (player_key(derive_hash_key(None, BOT_TOKEN), user_id),))
    return pid


def corrections_over_api(server: Server, init: str) -> None:
    """A GAP session whose every answer is judged Wrong with a markup-laden correction:
    answer duels "model vs a player's correction" come from it."""
    status, state = server.api("POST", "/api/sessions", init)
    assert status == 200, state
    for i in range(10):
        status, got = server.api("POST", f"/api/sessions/{state['session_id']}/questions", init,
                                 {"request_id": f"a{i}", "text": "How many shapes are there?"})
        assert status == 200, got
        status, state = server.api("POST", f"/api/answers/{got['answer_id']}/verdict", init,
                                   {"request_id": f"v{i}", "verdict": "wrong", "correction": f"{XSS} {i + 20}"})
        assert status == 200, state


def right_side(server: Server, pid: int) -> str:
    """The displayed side of the current duel's right answer (every pair here has a known truth)."""
    (swapped, truth), = server.query(
        "SELECT i.swapped, p.truth FROM duel_items i JOIN duel_pairs p ON p.id = i.pair_id "
        "WHERE i.player_id = ? AND i.shown_at IS NOT NULL AND i.choice IS NULL", (pid,))
    if truth is None:
        return "left"
    return "left" if (truth == "a") != bool(swapped) else "right"


def play_batch(page, server: Server, pid: int) -> None:
    for i in range(5):
        expect(page.locator("#duel-progress")).to_have_text(f"Duel {i + 1} / 5")
        pick = page.locator("#duel-" + right_side(server, pid))
        expect(pick).to_be_enabled()                 # after the minimum time
        for side in ("#duel-left", "#duel-right"):
            if page.locator(side + " img").count():
                page.wait_for_function(f"() => document.querySelector('{side} img').naturalWidth > 0")
            else:
                assert page.locator(side + " .duel-text").inner_text()  # text, shown as text
        pick.click()


def test_tutorial_batch_result_and_next_batch(fast_server, new_page, artifacts):
    _, alice = fast_server.new_user("Alice")
    corrections_over_api(fast_server, alice)
    user, init = fast_server.new_user("Dana")
    page, watch = new_page()
    page.goto(fast_server.page_url(init))
    page.get_by_role("button", name="Duels: pick the better one").click()
    expect(page.get_by_role("heading", name="Duels")).to_be_visible()
    # the tutorial: a wrong tap is explained, the right one unlocks the rules and Start
    page.get_by_role("button", name="Picture A").click()
    expect(page.locator("#tut-feedback")).to_contain_text("Not quite")
    expect(page.get_by_role("button", name="Start duels")).to_be_hidden()
    page.get_by_role("button", name="Picture B").click()
    expect(page.locator("#tut-feedback")).to_contain_text("Right!")
    expect(page.locator("#tut-rules")).to_contain_text("5 duels")
    page.screenshot(path=artifacts / "duel-tutorial-360x640.png")
    page.get_by_role("button", name="Start duels").click()
    expect(page.locator("#duel-progress")).to_have_text("Duel 1 / 5")
    page.screenshot(path=artifacts / "duel-360x640.png")
    pid = player_id(fast_server, user)
    play_batch(page, fast_server, pid)
    expect(page.locator("#duel-progress")).to_have_text("Batch done")
    expect(page.locator("#duel-checks")).to_contain_text("Checks right:")
    assert int(page.locator("#duel-points").inner_text()) > 0
    page.screenshot(path=artifacts / "duel-result-360x640.png")
    page.get_by_role("button", name="Next 5 duels").click()
    expect(page.locator("#duel-progress")).to_have_text("Duel 1 / 5")

    rows = fast_server.query("SELECT elapsed_ms, too_fast, choice FROM duel_items WHERE player_id = ? "
                             "AND choice IS NOT NULL", (pid,))
    assert len(rows) == 5 and all(r[2] in ("a", "b") for r in rows)
    assert min(r[0] for r in rows) >= 1500 and sum(r[1] for r in rows) == 0   # the page waited, never refused
    (tut,), = fast_server.query("SELECT tutorial_done_at IS NOT NULL FROM duel_players WHERE player_id = ?", (pid,))
    assert tut == 1
    shown = fast_server.query("SELECT COUNT(*) FROM duel_pairs WHERE source = 'correction'")
    assert shown[0][0] >= 1                            # Alice's corrections became answer duels
    # no markup from player text ran or was parsed into elements
    assert page.locator("#screen-duel .duel-text img").count() == 0
    assert not watch.errors and not watch.dialogs and not watch.csp

    # the bot's button opens the duels directly; the tutorial is not shown again
    page2, watch2 = new_page()
    page2.goto(fast_server.page_url(init).replace("/#", "/?mode=duels#"))
    expect(page2.locator("#duel-progress")).to_have_text("Duel 1 / 5")
    expect(page2.locator("#duel-tutorial")).to_be_hidden()
    page2.get_by_role("button", name="Back", exact=True).click()
    expect(page2.get_by_role("button", name="Play", exact=True)).to_be_visible()
    assert not watch2.errors and not watch2.csp
