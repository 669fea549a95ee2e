"""`gap serve`: migrate, load the model, serve the game on GAP host:PORT.
aiohttp's runner turns SIGTERM/SIGINT into a graceful shutdown (in-flight
requests finish, the model and database are closed)."""
from __future__ import annotations

import argparse
import logging

from aiohttp import web

log = logging.getLogger("gap.serve")


def _serve(args: argparse.Namespace, settings) -> int:
    from gap.app import build_app

    if args.port is not None:
        settings = settings.model_copy(update={"port": args.port})
    if args.host is not None:
        settings = settings.model_copy(update={"host": args.host})
    if not settings.bot_token:
        log.error("GAP_BOT_TOKEN is not set: Mini App requests cannot be authenticated (use `gap demo` locally)")
        return 2

    async def factory() -> web.Application:
        return await build_app(settings)

    from models.base import ModelError

    log.info("serving on %s:%s with model %s", settings.host, settings.port, settings.model)
    try:
        web.run_app(factory(), host=settings.host, port=settings.port, access_log=None,
                    shutdown_timeout=10, print=None)
    except ModelError as exc:
        log.error("cannot load the model %r: %s", settings.model, exc)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the web server (migrates the database first)")
    serve.add_argument("--host", default=None, help="bind address (default: GAP_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default: PORT)")
    serve.set_defaults(func=_serve, log_level=logging.INFO)  # a server's log is what its operator reads
