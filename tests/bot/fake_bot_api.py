"""A local fake of the Telegram Bot API, good enough for python-telegram-bot.

Why: the bot must be tested end to end (real PTB, real HTTP) without the
network. PTB's `base_url` points here; every method call is recorded with its
parameters and uploaded files, and answered with JSON that PTB can parse into
its objects. `getUpdates` serves updates queued by the test (long polling);
unknown methods — and methods switched off with `fail_methods` — get
Telegram's own 404 "Not Found" answer.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web


@dataclass
class UploadedFile:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Call:
    """One recorded Bot API method call."""

    method: str
    token: str
    params: dict[str, Any]
    files: dict[str, UploadedFile] = field(default_factory=dict)
    result: Any = None  # what the fake answered (e.g. the sent Message, for a later callback_query)


def _decode(value: str) -> Any:
    """PTB JSON-encodes non-string parameters; strings travel as they are."""
    try:
        return json.loads(value)
    except (ValueError, TypeError):
        return value


class FakeBotAPI:
    """Run with `await fake.start()`; `fake.base_url` is what PTB's base_url needs."""

    BOT_ID = 7000000001

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fail_methods: set[str] = set()     # answered 404 "Not Found" like an unknown method
        self.updates: list[dict[str, Any]] = []  # queued for getUpdates
        self.blocked_chats: set[int] = set()      # sends to these chats get 403 "bot was blocked"
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._file_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ----------------------------------------------------------------- server
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ test helpers
    def queue_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates; fills update_id when missing."""
        update.setdefault("update_id", next(self._update_ids))
        self.updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(
        self, method: str, where: Callable[[Call], bool] = lambda c: True, *, after: int = 0, timeout: float = 20.0
    ) -> Call:
        """The first call to `method` (index >= `after`) matching `where`, waiting for it to arrive."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for call in self.calls[after:]:
                    if call.method == method and where(call):
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.method, c.params.get("text")) for c in self.calls[after:]]
                    raise AssertionError(f"no {method} call arrived within {timeout}s; calls: {seen}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---------------------------------------------------------------- handler
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.filename:  # type: ignore[union-attr]
                    files[part.name] = UploadedFile(part.filename, part.headers.get("Content-Type"), bytes(data))  # type: ignore[union-attr,arg-type]
                else:
                    params[part.name] = data.decode()  # type: ignore[union-attr,index]
        elif request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        params = {k: _decode(v) if isinstance(v, str) else v for k, v in params.items()}
        call = Call(method, request.match_info["token"], params, files)
        method_key = method.lower()
        if method_key == "getupdates":
            self.calls.append(call)
            return await self._get_updates(params)
        answer = getattr(self, f"_m_{method_key}", None)
        if method_key in {m.lower() for m in self.fail_methods} or answer is None:
            response = self._error(404, "Not Found")
        elif str(params.get("chat_id")) in {str(c) for c in self.blocked_chats}:
            response = self._error(403, "Forbidden: bot was blocked by the user")
        else:
            call.result = answer(params, files)
            response = self._ok(call.result)
        self.calls.append(call)
        await self._notify()
        return response

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self.updates)), min(timeout, 1.0))
                except asyncio.TimeoutError:
                    pass
        return self._ok(list(self.updates))

    # --------------------------------------------------------- Bot API methods
    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.BOT_ID, "is_bot": True, "first_name": "GAP test bot", "username": "gap_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }

    def _message(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        chat = {"id": int(chat_id), "type": "private" if int(chat_id) > 0 else "group"}
        if chat["type"] == "group":
            chat["title"] = "group"
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": chat, "from": self._bot_user()}
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:  # Telegram echoes inline keyboards only
            message["reply_markup"] = params["reply_markup"]
        message.update(extra)
        return message

    def _file(self, size: int) -> dict[str, Any]:
        n = next(self._file_ids)
        return {"file_id": f"file{n}", "file_unique_id": f"u{n}", "file_size": size}

    def _m_getme(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return self._bot_user()

    def _m_setwebhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_deletewebhook(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_setchatmenubutton(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_setmycommands(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_answercallbackquery(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_sendchataction(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return True

    def _m_sendmessage(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        return self._message(params, text=str(params.get("text", "")))

    def _m_sendphoto(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        size = len(files["photo"].data) if "photo" in files else 0
        photo = dict(self._file(size), width=320, height=240)
        extra: dict[str, Any] = {"photo": [photo]}
        if params.get("caption"):
            extra["caption"] = str(params["caption"])
        return self._message(params, **extra)

    def _m_senddocument(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        doc = files.get("document")
        document = dict(self._file(len(doc.data) if doc else 0), file_name=(doc.filename if doc else "file"))
        extra: dict[str, Any] = {"document": document}
        if params.get("caption"):
            extra["caption"] = str(params["caption"])
        return self._message(params, **extra)

    def _m_editmessagetext(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        if "inline_message_id" in params:
            return True
        message = self._message(params, text=str(params.get("text", "")))
        message["message_id"] = int(params["message_id"])
        message["edit_date"] = int(time.time())
        return message

    def _m_editmessagereplymarkup(self, params: dict[str, Any], files: dict[str, UploadedFile]) -> Any:
        message = self._message(params, text="")
        message["message_id"] = int(params["message_id"])
        return message


# ------------------------------------------------------------- update builders
_ids = itertools.count(1)


def user(user_id: int, first_name: str = "Ann") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}


def message_update(
    update_id: int, user_id: int, text: str | None = None, *, chat_id: int | None = None, chat_type: str = "private", **extra: Any
) -> dict[str, Any]:
    """A real-shaped `message` update (entities set for a leading /command)."""
    chat_id = user_id if chat_id is None else chat_id
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = "Ann"
    else:
        chat["title"] = "Some group"
    message: dict[str, Any] = {"message_id": 10_000 + next(_ids), "date": int(time.time()), "chat": chat, "from": user(user_id)}
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    message.update(extra)
    return {"update_id": update_id, "message": message}


def callback_update(update_id: int, user_id: int, data: str, message: dict[str, Any]) -> dict[str, Any]:
    """A `callback_query` update for a button on a message the bot sent (as recorded by the fake)."""
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cb{update_id}",
            "from": user(user_id),
            "chat_instance": "ci1",
            "data": data,
            "message": message,
        },
    }
