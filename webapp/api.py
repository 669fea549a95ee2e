"""The JSON API of SPEC §5.2: thin handlers that authenticate, parse, call one
GameService method and render. Errors are `{"error": {"code", "message"}}`."""
from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Any

from aiohttp import web
from cachetools import LRUCache

from game import i18n
from game.errors import Conflict, Expired, GameError, Invalid, NotFound, Unavailable
from game.limits import Banned, RateLimited
from game.service import GameService
from models.base import ModelError, ModelOverloaded
from webapp.metrics import ERROR_CODE
from webapp.auth import AuthError, parse_authorization, validate_init_data

log = logging.getLogger("gap.api")

MAX_BODY_BYTES = 64 * 1024

SERVICE_KEY = web.AppKey("gap_service", GameService)
TRUST_FORWARDED_KEY = web.AppKey("gap_trust_forwarded_for", bool)

STATUS_BY_ERROR: list[tuple[type[GameError], int]] = [
    (Invalid, 400), (NotFound, 404), (Expired, 409), (Conflict, 409), (Unavailable, 503), (Banned, 403),
    (RateLimited, 429),
]
NO_STORE = {"Cache-Control": "no-store"}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response({"error": {"code": code, "message": message}}, status=status,
                                 headers={**NO_STORE, **(headers or {})})
    response[ERROR_CODE] = code  # for the errors-by-code metric (webapp/metrics.py)
    return response


def request_language(request: web.Request) -> str:
    """The language of error messages: the request's Accept-Language (the page sends the
    player's), English by default; `error.code` stays the same in every language."""
    return i18n.from_accept_language(request.headers.get("Accept-Language"))


def rate_limited_response(exc: RateLimited, lang: str = i18n.DEFAULT) -> web.Response:
    """429 with Retry-After, and the same seconds in the body for the page's countdown."""
    response = web.json_response({"error": {"code": exc.code, "message": i18n.error_text(lang, exc),
                                            "retry_after": exc.retry_after}}, status=429,
                                 headers={**NO_STORE, "Retry-After": str(exc.retry_after)})
    response[ERROR_CODE] = exc.code
    return response


def client_origin(request: web.Request) -> str | None:
    """The network a request comes from, for per-origin limits: the client's IPv4
    address or IPv6 /64 (one subscriber's usual allocation). Behind a reverse proxy
    (GAP_TRUST_FORWARDED_FOR) it is the address the proxy appended last to
    X-Forwarded-For. Loopback is never limited: it is the proxy itself when the
    header is not trusted, or a local tool."""
    raw = request.remote
    if request.app.get(TRUST_FORWARDED_KEY) and request.headers.get("X-Forwarded-For"):
        raw = request.headers["X-Forwarded-For"].split(",")[-1].strip()
    try:
        address = ipaddress.ip_address((raw or "").strip("[]"))
    except ValueError:
        return None
    if address.is_loopback:
        return None
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def image_url(image_id: str) -> str:
    return f"/img/{image_id}"


def with_image_url(payload: dict[str, Any]) -> dict[str, Any]:
    """The core names images by opaque id; the web client gets the URL to load (SPEC §5.2 `image.url`)."""
    image = payload.get("image")
    if isinstance(image, dict) and "image_id" in image:
        payload = {**payload, "image": {**image, "url": image_url(image["image_id"])}}
    return payload


def ok(payload: Any) -> web.Response:
    return web.Response(text=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                        content_type="application/json", headers=NO_STORE)


class Authenticator:
    """initData → player id, with a bounded cache so a busy player costs one HMAC
    and one database round-trip per launch, not per request (the age is still
    checked on every request)."""

    def __init__(self, service: GameService, bot_token: str, max_age: float, cache_size: int = 50_000) -> None:
        self.service = service
        self.bot_token = bot_token
        self.max_age = max_age
        self.cache_size = cache_size
        self._cache: LRUCache[str, tuple[int, int]] = LRUCache(cache_size)

    async def player_id(self, request: web.Request) -> int:
        init_data = parse_authorization(request.headers.get("Authorization"))
        hit = self._cache.get(init_data)
        now = time.time()
        if hit is not None:
            player_id, auth_date = hit
            if now - auth_date > self.max_age:
                self._cache.pop(init_data, None)
                raise AuthError("initData has expired; reopen the Mini App")
            return player_id
        data = validate_init_data(init_data, self.bot_token, max_age=self.max_age, now=now)
        player_id = await self.service.upsert_player(data.user_id, data.display_name)
        self._cache[init_data] = (player_id, data.auth_date)
        return player_id


AUTH_KEY = web.AppKey("gap_auth", Authenticator)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Map every failure to the JSON error shape, so clients handle one format."""
    try:
        return await handler(request)
    except AuthError as exc:
        return error_response(401, "unauthorized", str(exc), {"WWW-Authenticate": "tma"})
    except RateLimited as exc:
        return rate_limited_response(exc, request_language(request))
    except GameError as exc:
        message = i18n.error_text(request_language(request), exc)
        for cls, status in STATUS_BY_ERROR:
            if isinstance(exc, cls):
                return error_response(status, exc.code, message)
        return error_response(400, exc.code, message)
    except ModelOverloaded as exc:
        retry = max(1, int(round(exc.retry_after)))
        return error_response(503, "model_overloaded", str(exc), {"Retry-After": str(retry)})
    except ModelError as exc:
        return error_response(502, "model_error", str(exc) or "the model could not answer")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(("/api/", "/img/", "/healthz")):
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason,
                              {k: v for k, v in exc.headers.items() if k in ("Allow",)})
    except Exception:  # noqa: BLE001 - a bug must not leak a traceback to the client
        if not request.path.startswith("/api/"):
            raise
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object body; 413 when too large, 400 when not a JSON object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(raw))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


def _service(request: web.Request) -> GameService:
    return request.app[SERVICE_KEY]


async def _player(request: web.Request) -> int:
    return await request.app[AUTH_KEY].player_id(request)


async def start_session(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(with_image_url(await _service(request).start_or_resume(player, origin=client_origin(request))))


async def current_session(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(with_image_url(await _service(request).current(player)))


async def ask_question(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(await _service(request).ask(player, request.match_info["session_id"],
                                          body.get("request_id"), body.get("text"), origin=client_origin(request)))


async def give_verdict(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(with_image_url(await _service(request).verdict(
        player, request.match_info["answer_id"], body.get("request_id"), body.get("verdict"), body.get("correction"),
        origin=client_origin(request))))


async def session_summary(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(await _service(request).summary(player, request.match_info["session_id"]))


async def leaderboard(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(await _service(request).leaderboard(request.query.get("period", "week"), player_id=player))


async def next_find(request: web.Request) -> web.Response:
    """Peer validation (SPEC §3.3): another player's find to check, or 404 when none is left."""
    player = await _player(request)
    return ok(with_image_url(await _service(request).next_find(player)))


async def validate_find(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(await _service(request).validate_find(player, request.match_info["find_id"],
                                                    body.get("request_id"), body.get("agrees"),
                                                    origin=client_origin(request)))


async def describe_task(request: web.Request) -> web.Response:
    """Describe round (SPEC §3.5): the player's open task or a new image to describe."""
    player = await _player(request)
    return ok(with_image_url(await _service(request).describe_task(player)))


async def describe(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(await _service(request).describe(player, request.match_info["task_id"], body.get("request_id"),
                                               body.get("text")))


async def next_description(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(with_image_url(await _service(request).next_description(player)))


async def rate_description(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(await _service(request).rate_description(player, request.match_info["description_id"],
                                                       body.get("request_id"), body.get("fits")))


async def image(request: web.Request) -> web.StreamResponse:
    """Image bytes by opaque id; immutable, so clients and proxies may cache them for good."""
    found = await _service(request).image_by_opaque_id(request.match_info["opaque_id"])
    if found is None:
        raise NotFound("no such image")
    mime, content = found
    etag = f'"{request.match_info["opaque_id"]}"'
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=content, content_type=mime, headers=headers)


def setup_api(app: web.Application, service: GameService, bot_token: str, max_age: float,
              trust_forwarded_for: bool = False) -> None:
    """Register the JSON API and the image route on `app`."""
    app[SERVICE_KEY] = service
    app[TRUST_FORWARDED_KEY] = trust_forwarded_for
    app[AUTH_KEY] = Authenticator(service, bot_token, max_age)
    app.router.add_post("/api/sessions", start_session)
    app.router.add_get("/api/sessions/current", current_session)
    app.router.add_post("/api/sessions/{session_id}/questions", ask_question)
    app.router.add_post("/api/answers/{answer_id}/verdict", give_verdict)
    app.router.add_get("/api/sessions/{session_id}/summary", session_summary)
    app.router.add_get("/api/leaderboard", leaderboard)
    app.router.add_get("/api/validations/next", next_find)
    app.router.add_post("/api/validations/{find_id}", validate_find)
    app.router.add_post("/api/describe", describe_task)
    app.router.add_post("/api/describe/{task_id}", describe)
    app.router.add_get("/api/descriptions/next", next_description)
    app.router.add_post("/api/descriptions/{description_id}/rating", rate_description)
    app.router.add_get("/img/{opaque_id}", image)
