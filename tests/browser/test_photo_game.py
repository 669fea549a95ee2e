"""A photo-only deployment plays end to end (SPEC §1.2): real photographs shipped inside a
PyPI wheel (scikit-image), imported with our annotations, bootstrapped by a curated declared
set, played for a whole session in Chromium with the embedded model; then `gap evaluate`
turns the session's verdicts on honest answers into crowd evidence per photo."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from browser_support import start_demo, stop
from tests.photos import ANNOTATIONS, annotated_names, skimage_data_dir

pytestmark = pytest.mark.browser
CURATED = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "coins.png"]


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-photos")
    curated = tmp / "curated"
    curated.mkdir()
    for name in CURATED:
        shutil.copy(skimage_data_dir() / name, curated / name)
    server = start_demo(tmp, model=None, image_seconds=120, setup=(
        ["images", "import", str(skimage_data_dir()), "--annotations", str(ANNOTATIONS), "--only-annotated",
         "--pool", "photos"],
        ["images", "import", str(curated), "--reliable", "--pool", "photos"],
    ))
    yield server
    stop(server)


def test_a_session_on_real_photographs(photo_server, new_page, artifacts):
    pools = photo_server.query("SELECT pool, COUNT(*), SUM(reliable), SUM(declared_reliable) FROM images GROUP BY pool")
    assert pools == [("imported:photos", len(annotated_names()), len(CURATED), len(CURATED))]  # no drawings added

    page, watch = new_page()
    page.goto(photo_server.demo_url)
    page.get_by_role("button", name="Play", exact=True).click()
    question = page.get_by_role("textbox", name="Your question")
    for number in range(1, 11):
        expect(page.locator("#progress")).to_have_text(f"{number} / 10")
        expect(question).to_be_enabled()
        page.wait_for_function("() => { const i = document.querySelector('#image'); "
                               "return i && i.complete && i.naturalWidth > 100; }")
        if number == 1:
            page.screenshot(path=artifacts / "photo-game-360x640.png")
        question.fill("Is there a cat in the picture?")
        question.press("Enter")
        expect(page.get_by_role("button", name="Correct", exact=True)).to_be_visible(timeout=60_000)
        if number % 2:
            page.get_by_role("button", name="Correct", exact=True).click()
            expect(question).to_be_enabled()
            question.fill("How many people are there?")
            question.press("Enter")
            expect(page.get_by_role("button", name="Wrong", exact=True)).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Wrong", exact=True).click()
        page.get_by_role("textbox", name="Correct answer").fill(f"my answer {number}")
        page.get_by_role("textbox", name="Correct answer").press("Enter")
    expect(page.get_by_role("heading", name="Session over")).to_be_visible()
    expect(page.locator("#summary-list > li")).to_have_count(10)
    page.screenshot(path=artifacts / "photo-summary-360x640.png")
    assert not watch.errors, watch.errors

    served = photo_server.query(
        "SELECT i.source_name, i.mime, si.tainted FROM session_images si JOIN images i ON i.id = si.image_id")
    assert len(served) == 10 and {name for name, _, _ in served} <= set(annotated_names())
    assert sum(t for _, _, t in served) == 5
    assert all(name in CURATED for name, _, tainted in served if tainted)

    # The crowd's evidence: every judged honest answer lands on its photo (SETTLE_MS = 2 s first).
    time.sleep(2.5)
    done = subprocess.run([sys.executable, "-m", "gap.cli", "evaluate", "--database",
                           f"sqlite+aiosqlite:///{photo_server.db_path}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "crowd:" in done.stdout
    honest = photo_server.query("SELECT COUNT(*) FROM answers WHERE tainted = 0 AND verdict IS NOT NULL")[0][0]
    stored = photo_server.query("SELECT SUM(n_correct + n_wrong), COUNT(DISTINCT image_id) FROM crowd_counts")[0]
    assert honest > 0 and stored[0] == honest and stored[1] >= 5
    # This player said Wrong on every image. Once the evaluation has seen enough false alarms it mutes
    # them (SPEC §2, anti-gaming) and their verdicts, kept as evidence, move no photo's posterior; one
    # session is not always enough (most tainted answers were tainted), and then their verdicts count on
    # the photos the crowd decides on (not the declared ones).
    [(muted,)] = photo_server.query("SELECT muted FROM player_estimates")
    [(on_undecided,)] = photo_server.query(
        "SELECT COUNT(*) FROM answers a JOIN images i ON i.id = a.image_id WHERE a.tainted = 0 "
        "AND a.verdict IS NOT NULL AND i.declared_reliable = 0 AND i.model_accuracy IS NULL")
    assert photo_server.query("SELECT COALESCE(SUM(crowd_verdicts), 0) FROM images") == [
        (0 if muted else on_undecided,)]
