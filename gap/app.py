"""Composition helpers: settings → database → model → game service → web app.

`gap serve`, `gap demo` and the bot reuse these, so the wiring exists once.
Everything else receives its dependencies from here."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from game.db import Database
from game.migrate import upgrade
from game.players import derive_hash_key
from game.service import GameConfig, GameService
from models.base import VQAModel

log = logging.getLogger("gap.app")


def secret(value: Any) -> str | None:
    """The plain value of a SecretStr setting (or None)."""
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def player_hash_key(settings: Any) -> bytes:
    """GAP_PLAYER_HASH_KEY, else a key derived from the bot token."""
    return derive_hash_key(secret(settings.player_hash_key), secret(settings.bot_token))


def game_config(settings: Any) -> GameConfig:
    return GameConfig(image_seconds=float(settings.image_seconds), taint_prob=float(settings.taint_prob),
                      false_alarm_penalty=int(settings.false_alarm_penalty),
                      describe_seconds=float(settings.describe_seconds))


async def load_model(spec: str, strategy: str | None = None) -> VQAModel:
    """The model named by GAP_MODEL (models.loader: a directory, openai:<url> or fake:<ms>),
    with the taint strategy of the settings when given."""
    from models.loader import load_model as load

    return load(spec, strategy=strategy) if strategy else load(spec)


@dataclass
class Components:
    """The running parts, for callers that need more than the web app (bot, demo)."""

    settings: Any
    db: Database
    model: VQAModel
    service: GameService

    async def aclose(self) -> None:
        try:
            await self.model.aclose()
        finally:
            await self.db.dispose()


COMPONENTS_KEY = web.AppKey("gap_components", Components)


async def build_components(settings: Any, *, model: VQAModel | None = None, migrate: bool = True) -> Components:
    """Migrate the database (unless told not to), load the model, build the service."""
    if migrate:
        await asyncio.to_thread(upgrade, settings.database_url)
    db = Database(settings.database_url)
    if model is None:
        model = await load_model(settings.model, getattr(settings, "taint_strategy", None))
    service = GameService(db, model, hash_key=player_hash_key(settings), config=game_config(settings))
    return Components(settings=settings, db=db, model=model, service=service)


async def build_app(settings: Any, *, components: Components | None = None, model: VQAModel | None = None,
                    bot_token: str | None = None, extra_setup: Iterable = (), migrate: bool = True,
                    close_components: bool = True) -> web.Application:
    """The complete web application; closes the model and the database on cleanup."""
    from webapp.app import create_app

    parts = components or await build_components(settings, model=model, migrate=migrate)
    hooks = []
    if close_components:
        async def _close(_app: web.Application) -> None:
            await parts.aclose()
        hooks.append(_close)
    app = create_app(parts.service, settings, parts.model, bot_token=bot_token, extra_setup=extra_setup,
                     on_cleanup=hooks)
    app[COMPONENTS_KEY] = parts
    return app

