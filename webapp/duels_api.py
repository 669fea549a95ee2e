"""The JSON API of preference duels (SPEC §3.4): thin views over game/duels.py.

| method and path | body | returns |
|---|---|---|
| `POST /api/duels` | — | the open batch (created if none): state |
| `GET /api/duels/current` | — | state (`status`: playing, finished, idle or removed) |
| `POST /api/duels/items/{item_id}/choice` | `{"request_id", "choice": "left"\\|"right"}` | state |
| `POST /api/duels/tutorial` | — | `{"tutorial_done": true}` |
| `GET /duel-img/{opaque_id}` | — | a caption duel's picture |

Errors use the API's shape (`{"error": {"code", "message"}}`): `removed` and
`too_fast` are 409s with a message to show."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from game.duels import DuelService
from game.errors import NotFound
from webapp.api import AUTH_KEY, ok, read_object

DUELS_KEY = web.AppKey("gap_duels", DuelService)


def with_urls(state: dict[str, Any]) -> dict[str, Any]:
    """Opaque picture ids of the core become URLs (the web layer owns URLs)."""
    item = state.get("item")
    if item:
        item = dict(item)
        item["image_url"] = f"/img/{item.pop('image')}" if item.get("image") else None
        for side in ("left", "right"):
            s = dict(item[side])
            if "duel_image" in s:
                s["url"] = f"/duel-img/{s.pop('duel_image')}"
            item[side] = s
        state = dict(state, item=item)
    return state


async def _player(request: web.Request) -> int:
    return await request.app[AUTH_KEY].player_id(request)  # type: ignore[attr-defined]


def _duels(request: web.Request) -> DuelService:
    return request.app[DUELS_KEY]


async def start(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(with_urls(await _duels(request).start(player)))


async def current(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(with_urls(await _duels(request).state(player)))


async def choose(request: web.Request) -> web.Response:
    player = await _player(request)
    body = await read_object(request)
    return ok(with_urls(await _duels(request).choose(player, request.match_info["item_id"], body.get("request_id"),
                                                     body.get("choice"))))


async def tutorial(request: web.Request) -> web.Response:
    player = await _player(request)
    return ok(await _duels(request).tutorial_done(player))


async def image(request: web.Request) -> web.Response:
    found = await _duels(request).image(request.match_info["opaque_id"])
    if found is None:
        raise NotFound("no such image")
    mime, content = found
    return web.Response(body=content, content_type=mime,
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


def setup_duels(duels: DuelService):
    """An `extra_setup` for webapp.app.create_app: the duel routes on the app."""
    def setup(app: web.Application) -> None:
        app[DUELS_KEY] = duels
        app.router.add_post("/api/duels", start)
        app.router.add_get("/api/duels/current", current)
        app.router.add_post("/api/duels/items/{item_id}/choice", choose)
        app.router.add_post("/api/duels/tutorial", tutorial)
        app.router.add_get("/duel-img/{opaque_id}", image)
    return setup
