"""The composition root: settings → database → model → game service → bot runtime → web app.

`gap serve`, `gap demo` and the research tools reuse these, so the wiring exists
once (SPEC §4). Everything else receives its dependencies from here; only the
`gap` command reads the environment (settings.py)."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.deps import BotDeps, mini_app_url_for
from bot.runtime import BotRuntime
from game import rounds
from game.db import Database
from game.duels import DuelConfig, DuelService
from game.limits import Limits, Rate
from game.migrate import upgrade
from game.players import derive_hash_key
from game.service import GameConfig, GameService
from models.base import ModelError, VQAModel
from models.health import MonitoredModel
from models.swap import SwappableModel
from settings import Settings

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


def limits(settings: Any) -> Limits:
    """The abuse limits of the settings (README "Abuse limits")."""
    return Limits(
        player={"question": Rate.parse(settings.limit_questions), "verdict": Rate.parse(settings.limit_verdicts),
                "session": Rate.parse(settings.limit_sessions)},
        origin={"question": Rate.parse(settings.limit_ip_questions),
                "verdict": Rate.parse(settings.limit_ip_verdicts),
                "session": Rate.parse(settings.limit_ip_sessions)},
        chat={"update": Rate.parse(settings.limit_chat_updates)},
        gate_new_minutes=float(settings.gate_new_minutes),
        gate_network_accounts=int(settings.gate_accounts_per_network))


def model_options(settings: Any) -> dict[str, Any]:
    """The loader's keyword arguments from the settings: taint strategy, deadline, model-server client."""
    from models.openai_backend import OpenAIOptions

    defaults = OpenAIOptions()
    return {"strategy": getattr(settings, "taint_strategy", "decode"),
            "answer_style": getattr(settings, "answer_style", "free"),
            "timeout_s": float(getattr(settings, "model_timeout_s", defaults.timeout_s)),
            "openai": OpenAIOptions(
                connect_timeout_s=float(getattr(settings, "openai_connect_timeout_s", defaults.connect_timeout_s)),
                request_timeout_s=float(getattr(settings, "openai_request_timeout_s", defaults.request_timeout_s)),
                api_key=secret(getattr(settings, "openai_api_key", None)))}


async def load_model(spec: str, strategy: str | None = None, settings: Any = None, **overrides: Any) -> VQAModel:
    """The model named by GAP_MODEL (models.loader: a directory, openai:<url> or fake:<ms>), with the
    settings' strategy and timeouts when given. Loaded in a thread: a promotion (SPEC §3.2) loads while
    the running server keeps answering."""
    from models.loader import load_model as load

    kwargs: dict[str, Any] = model_options(settings) if settings is not None else {}
    if strategy:
        kwargs["strategy"] = strategy
    return await asyncio.to_thread(load, spec, **{**kwargs, **overrides})


@dataclass
class Components:
    """The running parts, for callers that need more than the web app (bot, demo)."""

    settings: Settings
    db: Database
    model: VQAModel
    service: GameService
    duels: DuelService | None = None

    async def aclose(self) -> None:
        try:
            await self.model.aclose()
        finally:
            await self.db.dispose()


COMPONENTS_KEY = web.AppKey("gap_components", Components)


def open_database(settings: Any, url: str | None = None) -> Database:
    """The game database at `url` (default: the settings' URL) with the settings' GAP_DB_* tuning."""
    return Database(url or settings.database_url, inline_reads=settings.db_inline_reads,
                    inline_writes=settings.db_inline_writes, synchronous=settings.db_synchronous)


async def build_components(settings: Any, *, model: VQAModel | None = None, migrate: bool = True) -> Components:
    """Migrate the database (unless told not to), load the model, build the service.

    Without a model given, the latest promoted round's model is served (SPEC §3.2), else GAP_MODEL;
    either way it sits in a SwappableModel, so a later promotion replaces it without a restart."""
    if migrate:
        await asyncio.to_thread(upgrade, settings.database_url)
    db = open_database(settings)
    try:
        swappable = (SwappableModel(model if isinstance(model, MonitoredModel) else MonitoredModel(model))
                     if model is not None else await _load_serving_model(settings, db))
    except BaseException:
        await db.dispose()
        raise
    service = GameService(db, swappable, hash_key=player_hash_key(settings), config=game_config(settings),
                          limits=limits(settings))
    return Components(settings=settings, db=db, model=swappable, service=service, duels=duel_service(db, settings))


def duel_service(db: Database, settings: Any) -> DuelService:
    """Preference duels (SPEC §3.4) over the same database, with procedural pairs."""
    from models.scene_pairs import ScenePairMaker

    return DuelService(db, ScenePairMaker(), config=DuelConfig(min_seconds=float(settings.duel_min_seconds),
                                                               redundancy=int(settings.duel_redundancy)))


async def _load_serving_model(settings: Any, db: Database) -> SwappableModel:
    current = await rounds.latest(db)
    if current is not None:
        if (model := await _load_round(db, current, settings)) is not None:
            return SwappableModel(model, current.spec)
        log.error("serving GAP_MODEL %r instead", settings.model)
    model = await load_probed(settings.model, settings, refuse_failing=False)
    return SwappableModel(model, settings.model)


async def load_probed(spec: str, settings: Any, *, refuse_failing: bool = True) -> MonitoredModel:
    """The model, asked one question before it serves (SPEC §5.2). A round's model that fails the probe
    is refused like one that does not load (the running model keeps serving); GAP_MODEL itself serves
    anyway, so that /healthz answers 503 with the error instead of the server not starting."""
    model = MonitoredModel(await load_model(spec, settings=settings))
    if not await model.probe():
        if refuse_failing:
            await model.aclose()
            raise ModelError(f"it failed its start-up probe: {model.last_error}")
        log.error("the model %s failed its start-up probe: %s", spec, model.last_error)
    return model


def follow_rounds(components: Components, poll_seconds: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup_ctx that polls the latest model round and hot-swaps the serving model when it changes."""
    async def follow(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_follow(components, poll_seconds), name="gap-model-rounds")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return follow


async def _follow(parts: Components, poll_seconds: float) -> None:
    model = parts.model
    assert isinstance(model, SwappableModel)
    tried: set[int] = set()
    while True:
        await asyncio.sleep(poll_seconds)
        try:
            current = await rounds.latest(parts.db)
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not stop the follower
            log.warning("model rounds: cannot read the latest round: %r", exc)
            continue
        if current is None or current.spec == model.spec or current.number in tried:
            continue
        tried.add(current.number)
        if (new := await _load_round(parts.db, current, parts.settings)) is None:
            log.error("model rounds: still serving %s", model.model_id)
            continue
        await model.swap(new, current.spec)
        log.info("model rounds: now serving round %d (%s)", current.number, new.model_id)


async def _load_round(db: Database, current: rounds.Round, settings: Any) -> MonitoredModel | None:
    """Round `current`'s model, probed, with the outcome recorded on the round (SPEC §3.2); None when
    it does not load or fails its probe — the caller keeps serving what it had."""
    now = int(time.time() * 1000)
    try:
        model = await load_probed(current.spec, settings)
    except ModelError as exc:
        log.error("model rounds: round %d's model %r does not load: %s", current.number, current.spec, exc)
        await rounds.record_failure(db, current.number, str(exc), now)
        return None
    await rounds.record_serving(db, current.number, model.model_id, now)
    return model


def build_bot(settings: Settings, service: GameService) -> BotRuntime | None:
    """The Telegram bot runtime sharing the web app's service, or None when this process runs no bot:
    no GAP_BOT_TOKEN, or GAP_BOT_ENABLED=false (extra web workers; initData is still checked)."""
    if settings.bot_token is None:
        log.info("GAP_BOT_TOKEN is not set: the Telegram bot is off")
        return None
    if not settings.bot_enabled:
        log.info("GAP_BOT_ENABLED is false: the Telegram bot is off in this process (initData still checked)")
        return None
    return BotRuntime(BotDeps(settings=settings, service=service, mini_app_url=mini_app_url_for(settings)))


async def build_app(settings: Settings, *, components: Components | None = None, model: VQAModel | None = None,
                    bot_token: str | None = None, extra_setup: Iterable = ()) -> web.Application:
    """The complete web application. Components it builds itself are closed with the app;
    components handed in stay the caller's to close."""
    from webapp.app import create_app

    parts = components or await build_components(settings, model=model)
    resources: list[Callable[[web.Application], AsyncIterator[None]]] = []
    if components is None:
        async def close_components(_app: web.Application) -> AsyncIterator[None]:
            yield
            await parts.aclose()
        resources.append(close_components)
    if settings.round_poll_seconds > 0 and isinstance(parts.model, SwappableModel):
        resources.append(follow_rounds(parts, settings.round_poll_seconds))
    from webapp.duels_api import setup_duels

    duels = parts.duels or duel_service(parts.db, settings)
    app = create_app(parts.service, settings, parts.model, bot_token=bot_token, bot=build_bot(settings, parts.service),
                     resources=resources, extra_setup=[setup_duels(duels), *extra_setup])
    app[COMPONENTS_KEY] = parts
    return app
