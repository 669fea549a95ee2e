"""What the bot's handlers receive from the composition root (gap serve).

Why a small dataclass: handlers stay thin and testable, and the bot never
builds its own database engine, model or game service — it is handed the same
ones the web app uses, so both front ends share one set of rules and data."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from game.service import GameService
from settings import Settings


@dataclass
class BotDeps:
    settings: Settings
    service: GameService               # its .db also serves game/admin_queries.py
    mini_app_url: str | None = None    # https URL of the Mini App page; None → no web_app buttons
    export_dir: Path = field(default_factory=lambda: Path("exports"))
    max_document_bytes: int = 45 * 1024 * 1024   # Bot API upload limit is 50 MB


def mini_app_url_for(settings: Settings) -> str | None:
    """The Mini App page URL: GAP_PUBLIC_URL, else the origin of GAP_WEBHOOK_URL."""
    from urllib.parse import urlsplit

    public = settings.public_url
    if public:
        return public.rstrip("/") + "/"
    if settings.webhook_url:
        parts = urlsplit(settings.webhook_url)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}/"
    return None
