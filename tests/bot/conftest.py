"""A whole GAP server for bot tests: the real aiohttp app built by gap.app (real
migrated SQLite file, fake fixed-latency model, real GameService) on a real
local port, with the real PTB Application talking to the local fake Bot API.

`world` delivers real Update JSON either through the webhook route (HTTP POST
with the secret header) or through the fake's getUpdates (long polling), and
the tests assert on the Bot API calls the fake recorded."""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.runtime import BotRuntime
from gap.app import COMPONENTS_KEY, Components, build_app
from settings import Settings
from tests.bot.fake_bot_api import Call, FakeBotAPI, callback_update, message_update
from tests.conftest import TEST_BOT_TOKEN, seed_images
from webapp.telegram import BOT_RUNTIME, SECRET_HEADER

ADMIN_ID = 4242
PUBLIC_URL = "https://gap.example"
WEBHOOK_URL = "https://gap.example/telegram/webhook"
WEBHOOK_SECRET = "test-webhook-secret"
_user_ids = itertools.count(900_001)


def new_user_id() -> int:
    """A Telegram user id no other test uses (tests share nothing but may share a server)."""
    return next(_user_ids)


@dataclass
class World:
    fake: FakeBotAPI
    settings: Settings
    app: web.Application
    runner: web.AppRunner
    port: int
    http: aiohttp.ClientSession
    webhook: bool

    @property
    def runtime(self) -> BotRuntime:
        return self.app[BOT_RUNTIME]

    @property
    def components(self) -> Components:
        return self.app[COMPONENTS_KEY]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mark(self) -> int:
        """Index into the fake's call log: pass as `after=` to wait for calls from now on."""
        return len(self.fake.calls)

    async def post_webhook(self, update: dict[str, Any], secret: str | None = WEBHOOK_SECRET) -> aiohttp.ClientResponse:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        async with self.http.post(f"{self.url}/telegram/webhook", json=update, headers=headers) as resp:
            await resp.read()
            return resp

    async def deliver(self, update: dict[str, Any]) -> dict[str, Any]:
        """Hand `update` to the bot the way Telegram would in this world's mode."""
        if self.webhook:
            resp = await self.post_webhook(update)
            assert resp.status == 200, resp.status
        else:
            self.fake.queue_update(update)
        return update

    async def say(self, user_id: int, text: str | None, **extra: Any) -> dict[str, Any]:
        return await self.deliver(message_update(self.fake.next_update_id(), user_id, text, **extra))

    async def click(self, user_id: int, data: str, message: dict[str, Any]) -> dict[str, Any]:
        return await self.deliver(callback_update(self.fake.next_update_id(), user_id, data, message))

    async def reply_to(self, user_id: int, method: str, after: int, where: Callable[[Call], bool] = lambda c: True,
                       timeout: float = 20.0) -> Call:
        """The first `method` call to `user_id`'s chat since `after`."""
        return await self.fake.wait_for(
            method, lambda c: str(c.params.get("chat_id")) == str(user_id) and where(c), after=after, timeout=timeout)


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[WorldFactory]:
    """Build and start a server; everything is stopped and closed at the end of the test."""
    monkeypatch.chdir(tmp_path)  # /export writes ./exports
    started: list[tuple[FakeBotAPI, web.AppRunner, aiohttp.ClientSession]] = []

    async def factory(*, webhook: bool = True, image_seconds: float = 120.0, fail_methods: tuple[str, ...] = (),
                      api_url: str | None = None, wait_ready: bool = True, **overrides: Any) -> World:
        fake = FakeBotAPI()
        fake.fail_methods.update(fail_methods)
        await fake.start()
        db_path = tmp_path / f"gap-{len(started)}.sqlite3"
        values: dict[str, Any] = dict(
            bot_token=TEST_BOT_TOKEN, database_url=f"sqlite+aiosqlite:///{db_path}", model="fake:0",
            admin_ids=str(ADMIN_ID), image_seconds=image_seconds, telegram_api_url=api_url or fake.base_url,
            public_url=PUBLIC_URL, webhook_url=WEBHOOK_URL if webhook else None,
            webhook_secret=WEBHOOK_SECRET if webhook else None,
        )
        values.update(overrides)
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        app = await build_app(settings)
        await seed_images(app[COMPONENTS_KEY].db, total=20, reliable=10)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        http = aiohttp.ClientSession()
        started.append((fake, runner, http))
        world = World(fake, settings, app, runner, port, http, webhook)
        if wait_ready:
            await asyncio.wait_for(world.runtime.ready.wait(), 30)
        return world

    yield factory
    for fake, runner, http in reversed(started):
        await http.close()
        await runner.cleanup()
        await fake.stop()
