"""The PTB Application's life inside the web server's process.

Why this module exists: the bot must never be the reason the Mini App or the
API is down. Start-up therefore returns at once and brings the bot up in the
background: `getMe` (Application.initialize) and every Bot API set-up call
(setWebhook, setChatMenuButton, setMyCommands, the polling bootstrap) are
retried with a growing delay when Telegram — or a self-hosted Bot API server
that lacks a method — refuses them. Failures are logged without the token.

Two modes (SPEC §5.1): with `GAP_WEBHOOK_URL` the Application has no Updater
and the aiohttp route (webapp/telegram.py) feeds updates into
`application.update_queue`; otherwise the Updater long-polls `getUpdates`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from telegram import BotCommand, MenuButtonWebApp, Update, WebAppInfo
from telegram.error import InvalidToken
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from bot.deps import BotDeps
from game import i18n
from game.i18n import N_
from bot.handlers import register_handlers
from bot.update_processor import PerChatUpdateProcessor

log = logging.getLogger("gap.bot")

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 300)
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
PLAYER_COMMANDS = [
    BotCommand("start", N_("Open the game")),
    BotCommand("play", N_("Play in this chat")),
    BotCommand("score", N_("Your points, rank and reliability")),
    BotCommand("help", N_("How the game works")),
]

# A Bot API URL contains the token: httpx logs request URLs at INFO, httpcore and
# PTB ("Set Bot API URL: …") at DEBUG. Keep those loggers above the levels that leak.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.INFO)
logging.getLogger("telegram").setLevel(logging.INFO)


def redact(text: str, secret: str | None) -> str:
    """`text` with the bot token (and its numeric-id-free tail) removed, for logs."""
    if secret:
        text = text.replace(secret, "<token>")
        tail = secret.split(":", 1)[-1]
        if len(tail) >= 8:
            text = text.replace(tail, "<token>")
    return text


def file_url_for(api_url: str) -> str:
    """The Bot API file URL that goes with `api_url` (…/bot → …/file/bot)."""
    base = api_url.rstrip("/")
    if base.endswith("/bot"):
        return base[: -len("bot")] + "file/bot"
    return base + "/file/bot"


def webhook_target(webhook_url: str) -> tuple[str, str]:
    """(URL given to setWebhook, local route path). A bare origin gets /telegram/webhook."""
    parts = urlsplit(webhook_url)
    path = parts.path if parts.path not in ("", "/") else DEFAULT_WEBHOOK_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), path


def webhook_secret_for(settings_secret: str | None, token: str) -> str:
    """The secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token.

    An operator-set GAP_WEBHOOK_SECRET wins; without one a secret is derived
    from the token, so the header is always checked (never an open webhook)."""
    if settings_secret:
        return settings_secret
    return hmac.new(b"gap-webhook-secret", token.encode(), hashlib.sha256).hexdigest()


class BotRuntime:
    """Owns one PTB Application: background start, set-up retries, clean stop."""

    def __init__(
        self,
        deps: BotDeps,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        poll_timeout: float = 10.0,
    ) -> None:
        settings = deps.settings
        if settings.bot_token is None:
            raise ValueError("the bot needs GAP_BOT_TOKEN")
        self.deps = deps
        self.token = settings.bot_token.get_secret_value()
        self.retry_delays = tuple(retry_delays) or (1.0,)
        self.poll_timeout = poll_timeout
        self.webhook_url: str | None = None
        self.webhook_path: str | None = None
        if settings.webhook_url:
            self.webhook_url, self.webhook_path = webhook_target(settings.webhook_url)
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        self.webhook_secret = webhook_secret_for(secret, self.token)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.webhook_secret):
            log.error("GAP_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ - (Telegram's rule); "
                      "setWebhook will be refused until it is fixed")
        self.application = self._build()
        self.ready = asyncio.Event()          # set once updates are being processed
        self.setup_done = asyncio.Event()     # set once every set-up call has succeeded
        self.pending_setup: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def webhook_mode(self) -> bool:
        return self.webhook_url is not None

    # ------------------------------------------------------------------ build
    def _build(self) -> Application:
        settings = self.deps.settings
        builder: ApplicationBuilder = (
            Application.builder()
            .token(self.token)
            .base_url(settings.telegram_api_url)
            .base_file_url(file_url_for(settings.telegram_api_url))
            .rate_limiter(AIORateLimiter(max_retries=3))
            .concurrent_updates(PerChatUpdateProcessor(64))
            .connect_timeout(5.0)
            .read_timeout(20.0)
            .write_timeout(30.0)
            .get_updates_read_timeout(self.poll_timeout + 10.0)
            .post_init(self._post_init)
        )
        if self.webhook_mode:
            builder = builder.updater(None)
        application = builder.build()
        application.bot_data["deps"] = self.deps
        register_handlers(application)
        return application

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Return at once; the bot comes up in the background (see module doc)."""
        self._tasks.append(asyncio.create_task(self._bring_up(), name="gap-bot-start"))

    async def stop(self) -> None:
        """Stop polling, finish the updates in flight, close HTTP clients. Idempotent."""
        self.ready.clear()  # the webhook route answers 503 from now on, so Telegram redelivers
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        app = self.application
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
            await app.bot.shutdown()  # also closes clients when getMe never succeeded
        except Exception as exc:  # never let the bot spoil the web server's shutdown
            log.warning("bot shutdown: %s", redact(repr(exc), self.token))
        log.info("bot stopped")

    async def _retry(self, what: str, call: Callable[[], Awaitable[Any]], *, token_check: bool = False) -> None:
        """Await `call` until it succeeds, sleeping along `retry_delays` (the last one repeats).

        With `token_check` (getMe), a rejected token waits the longest delay: it will not heal soon."""
        attempt = 0
        while True:
            try:
                await call()
                if attempt:
                    log.info("bot: %s succeeded after %d retries", what, attempt)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                if token_check and isinstance(exc, InvalidToken):
                    delay = max(delay, self.retry_delays[-1])
                log.warning("bot: %s failed (%s); retrying in %ss", what, redact(str(exc) or repr(exc), self.token), delay)
                attempt += 1
                await asyncio.sleep(delay)

    async def _bring_up(self) -> None:
        app = self.application
        await self._retry("getMe", app.initialize, token_check=True)
        await app.start()
        # Lifecycle is ours (no run_polling/run_webhook), so post_init is called here.
        if app.post_init is not None:
            await app.post_init(app)
        if app.updater is not None:
            await self._retry("start polling", self._start_polling)
        self.ready.set()
        log.info("bot @%s ready (%s)", app.bot.username, "webhook" if self.webhook_mode else "long polling")

    async def _start_polling(self) -> None:
        assert self.application.updater is not None
        await self.application.updater.start_polling(
            poll_interval=0.0,
            timeout=self.poll_timeout,
            allowed_updates=Update.ALL_TYPES,
            error_callback=lambda exc: log.warning("bot polling: %s", redact(str(exc), self.token)),
        )

    async def _post_init(self, application: Application) -> None:
        """Set-up calls, each retried in the background on its own until it succeeds."""
        steps: dict[str, Callable[[], Awaitable[Any]]] = {"setMyCommands": self._set_commands}
        if self.webhook_mode:
            steps["setWebhook"] = self._set_webhook
        if self.deps.mini_app_url:
            steps["setChatMenuButton"] = self._set_menu_button
        self.pending_setup = set(steps)
        self._tasks.append(asyncio.create_task(self._run_setup(steps), name="gap-bot-setup"))

    async def _run_setup(self, steps: dict[str, Callable[[], Awaitable[Any]]]) -> None:
        async def one(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            await self._retry(name, call)
            self.pending_setup.discard(name)

        await asyncio.gather(*(one(n, c) for n, c in steps.items()))
        self.setup_done.set()

    async def _set_webhook(self) -> None:
        await self.application.bot.set_webhook(
            url=self.webhook_url or "",
            secret_token=self.webhook_secret,
            allowed_updates=Update.ALL_TYPES,
            max_connections=40,
        )

    async def _set_menu_button(self) -> None:
        assert self.deps.mini_app_url
        await self.application.bot.set_chat_menu_button(
            menu_button=MenuButtonWebApp(text="Play", web_app=WebAppInfo(url=self.deps.mini_app_url))
        )

    async def _set_commands(self) -> None:
        """The command menu, in English by default and in each shipped language for its users."""
        await self.application.bot.set_my_commands(PLAYER_COMMANDS)
        for lang in i18n.SUPPORTED:
            if lang != i18n.DEFAULT:
                await self.application.bot.set_my_commands(
                    [BotCommand(c.command, i18n.gettext(lang, c.description)) for c in PLAYER_COMMANDS],
                    language_code=lang)

    # ---------------------------------------------------------------- webhook
    async def accept_webhook_update(self, data: dict[str, Any]) -> None:
        """Queue one webhook update (already authenticated by the route) for processing."""
        update = Update.de_json(data, self.application.bot)
        await self.application.update_queue.put(update)

