"""Request metrics and the Prometheus endpoint (README "Metrics").

`/metrics` is never public: the deployer either sets GAP_METRICS_TOKEN (the
scraper sends `Authorization: Bearer <token>` to the game's own port) or
GAP_METRICS_PORT (a second listener, by default on 127.0.0.1 only, for a
scraper inside the private network); with neither, no `/metrics` is served.
Routes are labelled by their pattern (`/api/sessions/{session_id}/questions`),
never by the concrete path, so the number of series stays bounded whatever
clients send.
"""
from __future__ import annotations

import hmac
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from game.metrics import LATENCY_BUCKETS
from game.service import GameService

log = logging.getLogger("gap.metrics")

# set on error responses (webapp.api.error_response) for the errors counter
ERROR_CODE = web.ResponseKey("gap_error_code", str)


class HttpMetrics:
    """Per-route request counts and latency, and errors by their stable code (SPEC §5.2)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("gap_http_requests", "HTTP requests by route pattern and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("gap_http_request_duration_seconds", "HTTP request latency by route pattern",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.errors = Counter("gap_errors", "Error responses by error code and status", ["code", "status"],
                              registry=registry)


_HTTP: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = weakref.WeakKeyDictionary()
HTTP_METRICS_KEY = web.AppKey("gap_http_metrics", HttpMetrics)
METRICS_SERVICE_KEY = web.AppKey("gap_metrics_service", GameService)
METRICS_TOKEN_KEY = web.AppKey("gap_metrics_token", str)
METRICS_ADDRESSES_KEY = web.AppKey("gap_metrics_addresses", list)


def http_metrics(registry: CollectorRegistry) -> HttpMetrics:
    """The HTTP metrics of `registry`, created once (several apps may share one service)."""
    found = _HTTP.get(registry)
    if found is None:
        found = _HTTP[registry] = HttpMetrics(registry)
    return found


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Count and time every request, outermost, so error responses are counted with their code."""
    metrics = request.app.get(HTTP_METRICS_KEY)
    if metrics is None:
        return await handler(request)
    started = time.perf_counter()
    status, code = 500, "internal"
    try:
        response = await handler(request)
        status, code = response.status, response.get(ERROR_CODE)
        return response
    except web.HTTPException as exc:
        status, code = exc.status, exc.reason.lower().replace(" ", "_")
        raise
    finally:
        route = route_label(request)
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        if status >= 400:
            metrics.errors.labels(code or f"http_{status}", str(status)).inc()


def _authorized(request: web.Request) -> bool:
    token = request.app.get(METRICS_TOKEN_KEY) or ""
    if not token:
        return True  # the separate port without a token: reachable only where it is bound
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics_view(request: web.Request) -> web.Response:
    """The Prometheus text format of everything counted in this worker."""
    from webapp.api import error_response

    if not _authorized(request):
        return error_response(401, "unauthorized", "metrics need Authorization: Bearer <GAP_METRICS_TOKEN>",
                              {"WWW-Authenticate": "Bearer"})
    service = request.app[METRICS_SERVICE_KEY]
    try:
        await service.refresh_pool_metrics()
    except Exception as exc:  # noqa: BLE001 - a database outage must not hide every other metric
        log.warning("metrics: pool sizes not refreshed: %s", type(exc).__name__)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))  # text format, or OpenMetrics
    return web.Response(body=encoder(service.metrics.registry),
                        headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def _secret(value: Any) -> str:
    if value is None:
        return ""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def setup_metrics(app: web.Application, settings: Any, service: GameService) -> None:
    """Count requests on `app`; serve `/metrics` on it (GAP_METRICS_TOKEN) or on a
    second listener (GAP_METRICS_PORT), or not at all when neither is set."""
    app[HTTP_METRICS_KEY] = http_metrics(service.metrics.registry)
    token = _secret(getattr(settings, "metrics_token", None))
    port = getattr(settings, "metrics_port", None)
    if port is not None:
        host = getattr(settings, "metrics_host", "127.0.0.1")
        app[METRICS_ADDRESSES_KEY] = addresses = []
        app.cleanup_ctx.append(_separate_listener(service, token, host, int(port), addresses))
    elif token:
        app[METRICS_SERVICE_KEY] = service
        app[METRICS_TOKEN_KEY] = token
        app.router.add_get("/metrics", metrics_view)


def _separate_listener(service: GameService, token: str, host: str, port: int, addresses: list):
    """A cleanup context running the metrics listener as long as the app; its bound
    (host, port) pairs go into `addresses` (port 0 picks a free one)."""

    async def listener(app: web.Application) -> AsyncIterator[None]:
        metrics_app = web.Application()
        metrics_app[METRICS_SERVICE_KEY] = service
        metrics_app[METRICS_TOKEN_KEY] = token
        metrics_app.router.add_get("/metrics", metrics_view)
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        addresses[:] = runner.addresses
        log.info("metrics on http://%s:%s/metrics", *runner.addresses[0][:2])
        try:
            yield
        finally:
            await runner.cleanup()

    return listener
