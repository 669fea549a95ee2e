"""The Telegram webhook inside the aiohttp app: one process serves the Mini App,
the API and the Telegram bot (SPEC §4: webapp/ and bot/ are adapters over one core; §4.2 webhook).

The composition root (gap/app.py) builds the bot runtime and hands it to
`attach_bot`, like python-telegram-bot's custom-webhook example: our route
authenticates Telegram's POST and puts the update on the runtime's queue. The
runtime's life is tied to the web app's in one `cleanup_ctx`: started on start-up
in the background (so Telegram being down never delays or breaks the web
server), stopped on shutdown before the database the root opened earlier is closed.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger("gap.bot")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024


class WebhookTarget(Protocol):
    """What the web app needs of a bot runtime (bot.runtime.BotRuntime is one)."""

    webhook_path: str | None
    webhook_secret: str
    ready: asyncio.Event

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def accept_webhook_update(self, data: dict[str, Any]) -> None: ...


BOT_RUNTIME: web.AppKey[WebhookTarget] = web.AppKey("gap_bot_runtime", WebhookTarget)  # type: ignore[type-abstract]


def attach_bot(app: web.Application, runtime: WebhookTarget) -> None:
    """Serve `runtime`'s webhook route (webhook mode) and run it while the app runs."""
    app[BOT_RUNTIME] = runtime
    if runtime.webhook_path is not None:
        app.router.add_post(runtime.webhook_path, telegram_webhook)

    async def run_bot(_app: web.Application) -> AsyncIterator[None]:
        await runtime.start()
        yield
        await runtime.stop()

    app.cleanup_ctx.append(run_bot)


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
