"""Run the real web application on a local port inside this process (the closed-loop
experiment and the simulation tests play against it over real HTTP)."""
from __future__ import annotations

import socket
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web

# Simulated players and benchmarks play far faster than people; the abuse limits keep their
# cost (one counter write per request) but never refuse them.
UNLIMITED = {name: "1000000/60" for name in ("limit_questions", "limit_verdicts", "limit_sessions",
                                             "limit_ip_questions", "limit_ip_verdicts", "limit_ip_sessions",
                                             "limit_chat_updates")}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@asynccontextmanager
async def running_server(settings: Any, *, model: Any = None, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """`async with running_server(settings) as url:` — the app of `gap serve`, on a free port."""
    from gap.app import build_app

    app = await build_app(settings.model_copy(update=UNLIMITED), model=model)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(host)
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
