"""The bot inside the aiohttp app: one process serves the Mini App, the API and
the Telegram bot (SPEC §4: webapp/ and bot/ are adapters over one core; §4.2 webhook).

`setup_telegram(app, ...)` is the one call the composition root makes. It adds
the webhook route (webhook mode) and ties the PTB Application's life to the
web app's: started on start-up in the background (so Telegram being down never
delays or breaks the web server), stopped on shutdown (aiohttp's SIGTERM/SIGINT
handling runs on_shutdown, so polling stops and updates in flight finish).
"""
from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from bot.deps import BotDeps, mini_app_url_for
from bot.runtime import DEFAULT_RETRY_DELAYS, BotRuntime
from settings import Settings

log = logging.getLogger("gap.bot")

BOT_RUNTIME: web.AppKey[BotRuntime] = web.AppKey("gap_bot_runtime", BotRuntime)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024


def setup_telegram(
    app: web.Application,
    settings: Settings,
    service: Any,
    *,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    poll_timeout: float = 10.0,
) -> BotRuntime | None:
    """Attach the bot to `app` (webhook route + lifecycle). Without GAP_BOT_TOKEN the
    bot is off and None is returned; the web app works either way.

    `service` is the game.service.GameService the web app uses (same rules, same data)."""
    if settings.bot_token is None:
        log.info("GAP_BOT_TOKEN is not set: the Telegram bot is off")
        return None
    if not getattr(settings, "bot_enabled", True):
        log.info("GAP_BOT_ENABLED is false: the Telegram bot is off in this process (initData still checked)")
        return None
    deps = BotDeps(settings=settings, service=service, mini_app_url=mini_app_url_for(settings))
    runtime = BotRuntime(deps, retry_delays=retry_delays, poll_timeout=poll_timeout)
    app[BOT_RUNTIME] = runtime
    if runtime.webhook_mode:
        assert runtime.webhook_path is not None
        app.router.add_post(runtime.webhook_path, telegram_webhook)

    async def _start(_app: web.Application) -> None:
        await runtime.start()

    async def _stop(_app: web.Application) -> None:
        await runtime.stop()

    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)  # before on_cleanup, where the database is closed
    return runtime


async def telegram_webhook(request: web.Request) -> web.Response:
    """Telegram's POST: check the secret header (403 otherwise), queue the update, 200.

    503 while the bot is still starting (Telegram retries later); 400 for a body
    that is not a JSON update."""
    runtime = request.app[BOT_RUNTIME]
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), runtime.webhook_secret.encode()):
        return web.json_response({"error": {"code": "forbidden", "message": "bad secret token"}}, status=403)
    if not runtime.ready.is_set():
        return web.json_response({"error": {"code": "starting", "message": "the bot is starting"}}, status=503)
    if request.content_length is not None and request.content_length > MAX_UPDATE_BYTES:
        return web.json_response({"error": {"code": "too_large", "message": "update too large"}}, status=413)
    try:
        data = json.loads(await request.read())
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        return web.json_response({"error": {"code": "invalid", "message": "not a Telegram update"}}, status=400)
    await runtime.accept_webhook_update(data)
    return web.json_response({"ok": True})


def setup(app: web.Application, settings: Settings, service: Any) -> BotRuntime | None:
    """The hook webapp.app.create_app calls (see `setup_telegram`)."""
    return setup_telegram(app, settings, service)
