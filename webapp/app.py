"""The aiohttp application factory. It receives everything it serves (the game
service, the settings, the model) from the composition root (gap/app.py);
other areas plug in through `extra_setup` callables and optional modules."""
from __future__ import annotations

import importlib.util
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from game.service import GameService
from models.base import VQAModel
from webapp.api import MAX_BODY_BYTES, error_middleware, error_response, setup_api

log = logging.getLogger("gap.webapp")

SETTINGS_KEY = web.AppKey("gap_settings", object)
MODEL_KEY = web.AppKey("gap_model", object)

Setup = Callable[[web.Application], None]
Hook = Callable[[web.Application], Awaitable[None]]


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
    from webapp.api import SERVICE_KEY

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
    settings: Any,
    model: VQAModel,
    *,
    bot_token: str | None = None,
    extra_setup: Iterable[Setup] = (),
    on_startup: Iterable[Hook] = (),
    on_cleanup: Iterable[Hook] = (),
) -> web.Application:
    """Build the web application: JSON API, images, /healthz, then the Mini App
    page (`webapp.page.setup(app, settings)` when that module exists), then the
    Telegram webhook (`webapp.telegram.setup(app, settings, service)` when that
    module exists), then `extra_setup` callables, each given the app."""
    token = bot_token or (settings.bot_token.get_secret_value() if getattr(settings, "bot_token", None) else None)
    if not token:
        raise ValueError("a bot token is required to authenticate Mini App requests (GAP_BOT_TOKEN)")
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS_KEY] = settings
    app[MODEL_KEY] = model
    setup_api(app, service, token, float(getattr(settings, "init_data_max_age", 86400)))
    app.router.add_get("/healthz", healthz)
    if importlib.util.find_spec("webapp.page") is not None:
        from webapp import page

        page.setup(app, settings)
    if importlib.util.find_spec("webapp.telegram") is not None:
        from webapp import telegram

        telegram.setup(app, settings, service)
    for setup in extra_setup:
        setup(app)
    app.on_startup.extend(on_startup)
    app.on_cleanup.extend(on_cleanup)
    return app
