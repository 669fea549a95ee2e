"""The aiohttp application factory. It receives everything it serves (the game
service, the settings, the model, the bot runtime, the resources to close) from
the composition root (gap/app.py) and opens nothing itself."""
from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from aiohttp import web

from game.service import GameService
from models.base import VQAModel
from settings import Settings
from webapp import page
from webapp.api import MAX_BODY_BYTES, SERVICE_KEY, error_middleware, error_response, setup_api
from webapp.telegram import WebhookTarget, attach_bot

log = logging.getLogger("gap.webapp")

SETTINGS_KEY = web.AppKey("gap_settings", Settings)
MODEL_KEY = web.AppKey("gap_model", VQAModel)

Setup = Callable[[web.Application], None]
Resource = Callable[[web.Application], AsyncIterator[None]]  # an aiohttp cleanup_ctx generator


async def _model_ready(model: Any) -> bool:
    ready = getattr(model, "ready", True)
    if callable(ready):
        ready = ready()
    if inspect.isawaitable(ready):
        ready = await ready
    return bool(ready)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers and the model answers; 503 otherwise, naming the model's last
    error (SPEC §5.2: a model that fails its probe → 503; no auth)."""
    try:
        await request.app[SERVICE_KEY].ping()
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        log.warning("healthz: database not ready: %s", type(exc).__name__)
        return error_response(503, "database_unavailable", "the database is not reachable")
    model = request.app[MODEL_KEY]
    health = getattr(model, "health", None)
    if health is not None:  # models.health.MonitoredModel: probed, with the last failure
        state = await health()
        detail = {"model_id": getattr(model, "model_id", None), **state.as_dict()}
        if not state.ready:
            return web.json_response({"error": {"code": "model_unavailable", "message": "the model fails: "
                                                + (state.last_error or "unknown error")}, "model": detail},
                                     status=503, headers={"Cache-Control": "no-store"})
        return web.json_response({"status": "ok", "model": detail["model_id"], "model_state": detail},
                                 headers={"Cache-Control": "no-store"})
    if not await _model_ready(model):
        return error_response(503, "model_unavailable", "the model is not ready")
    return web.json_response({"status": "ok", "model": getattr(model, "model_id", None)},
                             headers={"Cache-Control": "no-store"})


def create_app(
    service: GameService,
    settings: Settings,
    model: VQAModel,
    *,
    bot_token: str | None = None,
    bot: WebhookTarget | None = None,
    resources: Iterable[Resource] = (),
    extra_setup: Iterable[Setup] = (),
) -> web.Application:
    """Build the web application: JSON API, images, /healthz, the Mini App page, the
    Telegram webhook when a bot runtime is given, then `extra_setup` callables.

    `resources` are cleanup_ctx generators of what the caller opened (closed in reverse
    order when the app stops); the bot runs in its own context after them, so it stops
    before the database it uses is closed."""
    token = bot_token or (settings.bot_token.get_secret_value() if settings.bot_token else None)
    if not token:
        raise ValueError("a bot token is required to authenticate Mini App requests (GAP_BOT_TOKEN)")
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS_KEY] = settings
    app[MODEL_KEY] = model
    app.cleanup_ctx.extend(resources)
    setup_api(app, service, token, float(settings.init_data_max_age))
    app.router.add_get("/healthz", healthz)
    page.setup(app, settings)
    if bot is not None:
        attach_bot(app, bot)
    for setup in extra_setup:
        setup(app)
    return app
