"""`gap demo`: play the game locally in a browser, without Telegram.

Why it is built this way: the demo must exercise exactly the production path.
So it runs the same web application as `gap serve`, and the page authenticates
with initData signed by a bot token — a local one kept next to the database
(or GAP_BOT_TOKEN when set) — that the server validates like Telegram's. Only
the binding differs: 127.0.0.1, never reachable from the network.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from game.db import sqlite_file

log = logging.getLogger("gap.demo")

DEMO_HOST = "127.0.0.1"
DEMO_USER = {"id": 1_000_001, "first_name": "Demo", "last_name": "Player", "username": "gap_demo",
             "language_code": "en"}
TOKEN_FILE_NAME = ".gap-demo-bot-token"
POOL_IMAGES = 40               # rendered on first run, kept in the database
MIN_RELIABLE = 10              # tainted images need the reliable pool (SPEC §1.2); 5 per session


def token_file_for(database_url: str) -> Path:
    """Where the local demo token lives: next to a SQLite file, else in the working directory."""
    if (database := sqlite_file(database_url)) is not None:
        return database.parent / TOKEN_FILE_NAME
    return Path.cwd() / TOKEN_FILE_NAME


def demo_bot_token(settings: Any) -> tuple[str, str]:
    """(token, where it came from): GAP_BOT_TOKEN when set, else a persisted local token.

    The local token has Telegram's shape (`<digits>:<secret>`) and is written with
    mode 0600, so restarting the demo keeps the same players and URLs valid."""
    if settings.bot_token is not None and settings.bot_token.get_secret_value():
        return settings.bot_token.get_secret_value(), "GAP_BOT_TOKEN"
    path = token_file_for(settings.database_url)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token, str(path)
    token = f"{secrets.randbelow(9 * 10**9) + 10**9}:{secrets.token_urlsafe(30)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, str(path)


def demo_url(host: str, port: int, init_data: str) -> str:
    """The page URL with initData in the fragment, the way Telegram launches a Mini App."""
    fragment = f"tgWebAppData={quote(init_data, safe='')}&tgWebAppVersion=7.10&tgWebAppPlatform=unknown"
    return f"http://{host}:{port}/#{fragment}"


async def ensure_image_pool(components: Any, *, count: int = POOL_IMAGES,
                            min_reliable: int = MIN_RELIABLE) -> dict[str, int]:
    """Fill an empty pool on first run: render procedural scenes with the core's
    generator, measure the model's accuracy on each (with progress bars) and
    store the reliable pool. A pool that already works is left alone.

    Sessions stratify by pool (SPEC §1.2), so the demo's drawings never become the only
    tainted source beside photographs: a photo folder with no reliable image is left out of
    play (and listed as such) until it is annotated, declared or measured by the crowd.

    Tainted images must come from the reliable pool (SPEC §1.2). When the model
    reaches the usual threshold on too few images (a weak or early checkpoint),
    the demo takes the most accurate images instead and says so, so that the
    game can still be played locally."""
    from tqdm import tqdm

    from game.images import pool_counts, set_reliability
    from game.pool_progress import pool_progress, progress_lines
    from gap.commands.images import DEFAULT_QUESTIONS, DEFAULT_THRESHOLD, generate_pool, measure_accuracies

    counts = await pool_counts(components.db)
    if counts["playable"] >= 10 and counts["reliable"] >= 5:
        return counts
    for i in tqdm(range(counts["images"], count), desc="gap demo: rendering images", unit="img", file=sys.stdout):
        await generate_pool(components.db, 1, seed=i)
    total = (await pool_counts(components.db))["images"]
    with tqdm(total=total, desc="gap demo: measuring the model", unit="img", file=sys.stdout) as bar:
        accuracies = await measure_accuracies(components.db, components.model, questions=DEFAULT_QUESTIONS,
                                              progress=bar.update)
    threshold = DEFAULT_THRESHOLD
    ranked = sorted(accuracies.values(), reverse=True)
    if sum(1 for a in ranked if a >= threshold) < min_reliable and len(ranked) >= min_reliable:
        threshold = ranked[min_reliable - 1]
        print(f"gap demo: the model reaches {DEFAULT_THRESHOLD:.0%} accuracy on too few images; "
              f"using the {min_reliable} most accurate (accuracy ≥ {threshold:.0%}) as the reliable pool",
              flush=True)
    await set_reliability(components.db, accuracies, threshold)
    components.service.invalidate_pools()
    counts = await pool_counts(components.db)
    print(f"gap demo: pool ready: {counts['images']} images, {counts['reliable']} reliable", flush=True)
    for line in progress_lines(await pool_progress(components.db)):
        print(f"gap demo: {line}", flush=True)
    return counts


def open_in_browser(url: str) -> None:
    """Best effort, never blocking: only with a graphical session (a console browser
    such as w3m would take over the terminal), in a background thread."""
    graphical = sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY")
                                                            or os.environ.get("WAYLAND_DISPLAY"))
    if not graphical:
        return

    def attempt() -> None:
        try:
            webbrowser.open(url)
        except Exception:  # noqa: BLE001 - no browser is fine: the URL is printed
            pass

    threading.Thread(target=attempt, name="gap-demo-browser", daemon=True).start()


async def run_demo(settings: Any, *, port: int, open_browser: bool) -> int:
    """Migrate, load the model, fill the pool, serve on 127.0.0.1 until interrupted."""
    from aiohttp import web

    from gap.app import build_app, build_components
    from models.base import ModelError
    from webapp.auth import sign_init_data

    token, token_source = demo_bot_token(settings)
    settings = settings.model_copy(update={"bot_token": SecretStr(token), "host": DEMO_HOST, "port": port})

    print("gap demo: migrating the database and loading the model…", flush=True)
    started = time.perf_counter()
    try:
        components = await build_components(settings)
    except ModelError as exc:
        print(f"gap demo: cannot load the model {settings.model!r}: {exc}\n"
              "gap demo: set GAP_MODEL to a model directory (or openai:<url>), or restore data/model",
              file=sys.stderr)
        return 1
    print(f"gap demo: model {getattr(components.model, 'model_id', '?')} ready "
          f"in {time.perf_counter() - started:.1f}s", flush=True)
    try:
        await ensure_image_pool(components)
        await components.service.upsert_player(DEMO_USER["id"], f"{DEMO_USER['first_name']} {DEMO_USER['last_name']}")
        # The Telegram bot stays off: a local token is no real bot, and the demo must not
        # talk to Telegram. The Mini App auth still uses the token (bot_token=...).
        app = await build_app(settings.model_copy(update={"bot_token": None}), components=components,
                              bot_token=token)
    except BaseException:
        await components.aclose()
        raise

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, DEMO_HOST, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await components.aclose()
        print(f"gap demo: cannot listen on {DEMO_HOST}:{port} ({exc.strerror}); try --port", file=sys.stderr)
        return 1
    bound_port = runner.addresses[0][1] if runner.addresses else port
    url = demo_url(DEMO_HOST, bound_port, sign_init_data(token, DEMO_USER))
    print(f"gap demo: Mini App auth with the bot token from {token_source} (the Telegram bot itself is off)",
          flush=True)
    print(f"gap demo: open {url}", flush=True)
    print("gap demo: press Ctrl-C to stop", flush=True)
    if open_browser:
        open_in_browser(url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        await stop.wait()
    finally:
        print("gap demo: stopping", flush=True)
        await runner.cleanup()
        await components.aclose()
    return 0


def _demo(args: argparse.Namespace, settings: Any) -> int:
    port = settings.port if args.port is None else args.port
    if not getattr(args, "verbose", False):  # a person reads this output: keep it to the demo's own lines
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("gap.bot").setLevel(logging.WARNING)   # the demo says itself that the bot is off
    try:
        return asyncio.run(run_demo(settings, port=port, open_browser=not args.no_browser))
    except KeyboardInterrupt:
        return 0


def register(sub: argparse._SubParsersAction) -> None:
    """`gap demo [--port N] [--no-browser]`."""
    demo = sub.add_parser("demo", help="play locally in a browser (127.0.0.1 only, signed demo initData)")
    demo.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: PORT or 8080; 0 = any free)")
    demo.add_argument("--no-browser", action="store_true", help="print the URL but do not open a browser")
    demo.set_defaults(func=_demo)
