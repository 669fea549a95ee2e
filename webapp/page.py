"""The Mini App page: `GET /` (a jinja2 template) and the versioned static files.

Why this shape:
- The HTML is tiny and served `Cache-Control: no-cache`, so a deploy shows up at
  once; JS/CSS URLs carry a content hash (`/static/<hash>/<name>`) and are cached
  for a year (`immutable`), so repeat visits cost nothing.
- A strict Content-Security-Policy: no inline script at all, scripts only from
  this origin and Telegram's WebApp script. Configuration reaches the JS through
  a `data-config` attribute (autoescaped JSON), never through executable code.
- The page needs no auth (SPEC §5.2): it authenticates its own API calls with
  `Authorization: tma <initData>`.

`setup(app, settings)` is called by the app factory (webapp/app.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
MAX_QUESTION_CHARS = 300
MAX_CORRECTION_CHARS = 200

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' https://telegram.org",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "object-src 'none'",
        # Telegram Web embeds Mini Apps in an iframe; native clients use a webview.
        "frame-ancestors 'self' https://web.telegram.org https://*.telegram.org",
    ]
)

# Shown when models.scenes is not available (the model area owns the real list).
FALLBACK_EXAMPLE_QUESTIONS = (
    "How many objects are there?",
    "What colour is the largest shape?",
    "Is there a circle left of a square?",
    "What shape is at the top?",
)

APP_KEY_STATIC = web.AppKey("gap_page_static", dict)


@dataclass(frozen=True)
class StaticAsset:
    """One static file held in memory: small, hashed once at start-up."""

    name: str
    body: bytes
    digest: str
    content_type: str

    @property
    def url(self) -> str:
        return f"/static/{self.digest}/{self.name}"


def load_static_assets(directory: Path = STATIC_DIR) -> dict[str, StaticAsset]:
    """Read and hash every file under `directory` (flat, a few KB each)."""
    assets: dict[str, StaticAsset] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in {"application/javascript", "image/svg+xml"}:
            ctype += "; charset=utf-8"
        assets[path.name] = StaticAsset(path.name, body, hashlib.sha256(body).hexdigest()[:16], ctype)
    return assets


def example_questions() -> list[str]:
    """Example question chips: the model area's list when it exists, else a short fallback."""
    try:
        from models.scenes import example_questions as model_examples  # optional, owned by models/
    except Exception:  # noqa: BLE001 - any import problem just means "no model-specific list"
        return list(FALLBACK_EXAMPLE_QUESTIONS)
    try:
        questions = [str(q) for q in model_examples() if str(q).strip()]
    except Exception:  # noqa: BLE001
        log.warning("models.scenes.example_questions() failed; using the fallback list")
        return list(FALLBACK_EXAMPLE_QUESTIONS)
    return questions[:6] or list(FALLBACK_EXAMPLE_QUESTIONS)


def page_config(settings: Any) -> dict[str, Any]:
    """What the JS needs to know before its first API call (no secrets)."""
    return {
        "imageSeconds": float(getattr(settings, "image_seconds", 120.0)),
        "maxQuestion": MAX_QUESTION_CHARS,
        "maxCorrection": MAX_CORRECTION_CHARS,
        "falseAlarmPenalty": int(getattr(settings, "false_alarm_penalty", 10)),
        "duelSeconds": float(getattr(settings, "duel_min_seconds", 1.5)),
        "examples": example_questions(),
    }


def _template_env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_index(settings: Any, assets: dict[str, StaticAsset]) -> str:
    """The page HTML; rendered once at start-up (it only depends on settings and assets)."""
    template = _template_env().get_template("index.html")
    config = page_config(settings)
    return template.render(
        css_url=assets["app.css"].url,
        js_url=assets["app.js"].url,
        telegram_script=TELEGRAM_SCRIPT,
        config_json=json.dumps(config, ensure_ascii=False, separators=(",", ":")),
        config=config,
    )


def security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def setup(app: web.Application, settings: Any) -> None:
    """Add `GET /` and `GET /static/{digest}/{name}` to `app`."""
    assets = load_static_assets()
    app[APP_KEY_STATIC] = assets
    html = render_index(settings, assets).encode("utf-8")

    async def index(request: web.Request) -> web.Response:
        headers = security_headers()
        headers["Cache-Control"] = "no-cache"
        response = web.Response(body=html, content_type="text/html", charset="utf-8", headers=headers)
        response.enable_compression()
        return response

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        headers = {"X-Content-Type-Options": "nosniff"}
        if request.match_info["digest"] == asset.digest:
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:  # an old or guessed version: serve the current file, but do not let it stick
            headers["Cache-Control"] = "no-cache"
        response = web.Response(body=asset.body, headers=headers)
        response.headers["Content-Type"] = asset.content_type
        response.enable_compression()
        return response

    app.router.add_get("/", index, name="page_index")
    app.router.add_get("/static/{digest}/{name}", static, name="page_static")
