"""Helpers for the browser tests: Debian's Chromium driven by Playwright against `gap demo`
running as a real process (real aiohttp server on a real port, real SQLite
file, Alembic migrations, initData signed with the server's bot token).

Never skipped: a missing Chromium is a failure with the command that fixes it.
Telegram's script is unreachable here (no network), so by default the tests
route telegram.org to a network error — the page must work without it; one
test serves a recording stand-in of Telegram's WebApp object instead.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote
from urllib.request import Request, urlopen

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("GAP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MOBILE = {"width": 360, "height": 640}
BOT_TOKEN = "7000000001:browser-tests-token-not-a-real-bot"
SERVER_START_TIMEOUT = float(os.environ.get("GAP_BROWSER_SERVER_TIMEOUT", "240"))

_user_ids = itertools.count(int(time.time()) % 1_000_000 * 100 + 5_000_000_000)


def sign(user: dict, auth_date: int | None = None) -> str:
    from webapp.auth import sign_init_data

    return sign_init_data(BOT_TOKEN, user, auth_date)


@dataclass
class Server:
    """A running `gap demo` process and how to reach it."""

    base_url: str
    demo_url: str
    db_path: Path
    image_seconds: float
    proc: subprocess.Popen
    log_path: Path
    users: dict[int, str] = field(default_factory=dict)

    def new_user(self, first_name: str = "Tester") -> tuple[int, str]:
        """A fresh player (own session) and its initData."""
        user_id = next(_user_ids)
        init = sign({"id": user_id, "first_name": first_name})
        self.users[user_id] = init
        return user_id, init

    def page_url(self, init_data: str, theme: dict | None = None) -> str:
        fragment = f"tgWebAppData={quote(init_data, safe='')}&tgWebAppVersion=7.10&tgWebAppPlatform=unknown"
        if theme:
            fragment += "&tgWebAppThemeParams=" + quote(json.dumps(theme), safe="")
        return f"{self.base_url}/#{fragment}"

    def api(self, method: str, path: str, init_data: str, body: dict | None = None) -> tuple[int, dict]:
        """Call the JSON API directly (to compare what the page shows with the server)."""
        data = json.dumps(body).encode() if body is not None else None
        req = Request(self.base_url + path, data=data, method=method,
                      headers={"Authorization": f"tma {init_data}", "Content-Type": "application/json"})
        try:
            with urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except Exception as exc:  # urllib raises HTTPError for 4xx/5xx
            if hasattr(exc, "code"):
                return exc.code, json.loads(exc.read() or b"{}")
            raise

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Read the real SQLite file the server writes (WAL: readers never block it)."""
        import sqlite3

        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


async def _seed_pool(db_url: str, count: int) -> None:
    """Render procedural scenes with the core's generator and mark half of them
    reliable: the fast fake model is never 'reliable' by measurement, and the
    game needs 5 reliable images per session (SPEC §1.2)."""
    from game.db import Database
    from game.images import images_with_scenes, set_reliability
    from game.migrate import upgrade
    from gap.commands.images import generate_pool

    await asyncio.to_thread(upgrade, db_url)
    db = Database(db_url)
    try:
        await generate_pool(db, count, seed=1000)
        ids = [row[0] for row in await images_with_scenes(db)]
        await set_reliability(db, {image_id: (1.0 if i % 2 == 0 else 0.5) for i, image_id in enumerate(ids)}, 0.9)
    finally:
        await db.dispose()


def start_demo(tmp: Path, *, model: str | None, image_seconds: float, seed_images: int = 0,
               bot_token: str | None = BOT_TOKEN, setup: tuple[list[str], ...] = (),
               env_extra: dict[str, str] | None = None) -> Server:
    """Start `gap demo --no-browser --port 0` and wait for the URL it prints.
    `bot_token=None` leaves GAP_BOT_TOKEN unset: the demo makes its local token.
    `setup`: `gap` commands run first on the same database, as a deployer would (e.g. image imports)."""
    tmp.mkdir(parents=True, exist_ok=True)
    db_path = tmp / "gap.sqlite3"
    db_url = f"sqlite+aiosqlite:///{db_path}"
    if seed_images:  # in a thread: Playwright's sync API may already run an event loop here
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _seed_pool(db_url, seed_images)).result()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAP_") and k != "PORT"}
    env.update({"GAP_DATABASE_URL": db_url, "GAP_IMAGE_SECONDS": str(image_seconds), "PYTHONUNBUFFERED": "1"})
    if bot_token:
        env["GAP_BOT_TOKEN"] = bot_token
    env.update(env_extra or {})
    if model:
        env["GAP_MODEL"] = model
    for command in setup:
        done = subprocess.run([sys.executable, "-m", "gap.cli", *command], cwd=tmp, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"gap {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    log_path = tmp / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "gap.cli", "demo", "--no-browser", "--port", "0"],
                            cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # never let the server block on a full pipe; keep everything in the log
        with open(log_path, "w") as log:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    url = None
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        match = re.search(r"gap demo: open (http://127\.0\.0\.1:\d+/\S*)", line)
        if match:
            url = match.group(1)
    if url is None:
        proc.kill()
        proc.wait()
        raise AssertionError(f"gap demo did not print its URL within {SERVER_START_TIMEOUT:.0f}s:\n"
                             + log_path.read_text()[-4000:])
    base = re.match(r"(http://127\.0\.0\.1:\d+)", url).group(1)  # type: ignore[union-attr]
    return Server(base_url=base, demo_url=url, db_path=db_path, image_seconds=image_seconds, proc=proc,
                  log_path=log_path)


def stop(server: Server) -> int:
    """Ctrl-C (SIGINT), as a person stops the demo; returns the exit code."""
    server.proc.send_signal(signal.SIGINT)
    try:
        return server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        return -9


def offline_telegram(route) -> None:
    """No network: Telegram's script fails to load, as on a machine without internet."""
    route.abort("internetdisconnected")


class PageWatch:
    """Collects what must never happen on a page: JS errors, dialogs, CSP violations."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.csp: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)
        page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, msg) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            self.csp.append(msg.text)




def timer_seconds(page) -> int:
    """The countdown's text (m:ss) in seconds."""
    text = page.locator("#timer-text").inner_text().strip()
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)
