"""The one settings object (SPEC §5.1). Everything else receives values from it."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent
EMBEDDED_MODEL_DIR = REPO_ROOT / "data" / "model"


class Settings(BaseSettings):
    """Environment variables (prefix GAP_, plus PORT) or `.env`; safe demo defaults."""

    model_config = SettingsConfigDict(env_prefix="GAP_", env_file=".env", extra="ignore")

    bot_token: SecretStr | None = None
    bot_enabled: bool = True  # GAP_BOT_ENABLED=false: the token only checks initData; no bot runs in this process
    database_url: str = "sqlite+aiosqlite:///gap.sqlite3"
    model: str = str(EMBEDDED_MODEL_DIR)
    admin_ids: str = ""
    image_seconds: float = 120.0
    taint_prob: float = Field(0.8, ge=0.0, le=1.0)
    taint_strategy: str = "decode"
    # an answer's deadline (s), every retry to a model server included; then the player gets a clear error
    model_timeout_s: float = Field(30.0, gt=0)
    # openai: backend, one connection attempt and one HTTP request (s); GAP_OPENAI_API_KEY is sent as a Bearer token
    openai_connect_timeout_s: float = Field(5.0, gt=0)
    openai_request_timeout_s: float = Field(20.0, gt=0)
    openai_api_key: SecretStr | None = None
    # "short": the local model is asked for a word or a phrase (LLaVA-1.5's VQA instruction); "free": the
    # question as the player wrote it, answered in the model's own style (decode taint keeps that style)
    answer_style: Literal["free", "short"] = "free"
    false_alarm_penalty: int = 10
    theta: float = Field(0.8, ge=0.0, le=1.0)
    # the describe round and `gap compare` (SPEC §3.5)
    describe_seconds: float = Field(60.0, gt=0.0)
    gpu_hour_price: float = Field(2.0, ge=0.0)     # price of one GPU-hour: the model's cost per description
    point_value: float = Field(0.01, ge=0.0)       # value of one game point: the crowd's cost per description
    duel_min_seconds: float = Field(1.5, ge=0.0, le=60.0)  # preference duels (SPEC §3.4): faster choices are refused
    duel_redundancy: int = Field(5, ge=1, le=100)  # players per (non-gold) duel
    # the crowd's bar for an unmeasured image (SPEC §1.2): the lower end of the 90 % credible interval
    # of the model's accuracy on it, from players' verdicts, that puts it in the reliable pool
    crowd_threshold: float = Field(0.9, ge=0.0, le=1.0)
    # how often each web worker checks for a newly promoted model round (SPEC §3.2); 0: never
    round_poll_seconds: float = Field(5.0, ge=0.0)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    public_url: str | None = None  # https origin of the Mini App (GAP_PUBLIC_URL); else the webhook URL's origin
    init_data_max_age: int = 24 * 3600
    player_hash_key: SecretStr | None = None
    # /metrics (Prometheus): behind `Authorization: Bearer <token>` on PORT, or on a second listener
    # (GAP_METRICS_PORT, bound to GAP_METRICS_HOST); neither set: not served
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # abuse limits (game/limits.py): "<count>/<seconds>" (or 20/1h, 5/10m); 0/60 switches one off
    limit_questions: str = "30/60"       # per player
    limit_verdicts: str = "40/60"        # per player (verdicts and peer-validation votes)
    limit_sessions: str = "20/1h"        # new sessions per player (resuming is free)
    limit_ip_questions: str = "300/60"   # per client IPv4 address or IPv6 /64
    limit_ip_verdicts: str = "400/60"
    limit_ip_sessions: str = "60/1h"
    limit_chat_updates: str = "60/60"    # Telegram updates per chat
    gate_new_minutes: float = Field(0.0, ge=0)      # accounts first seen this recently play gold-only sessions
    gate_accounts_per_network: int = Field(0, ge=0)  # this many accounts from one /24 (/48) in 24 h: gold-only
    trust_forwarded_for: bool = False    # behind a reverse proxy: the client is X-Forwarded-For's last address
    port: int = Field(8080, validation_alias="PORT")
    host: str = "0.0.0.0"
    # database tuning (game/db.py; benchmarks/README.md measures them): SQLite reads on the event loop,
    # group commits on the event loop (opt-in: a checkpoint or another process's lock then stalls it),
    # and the writer's PRAGMA synchronous (FULL: an acknowledged write survives power loss)
    db_inline_reads: bool = True
    db_inline_writes: bool = False
    db_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"

    @field_validator("db_synchronous", mode="before")
    @classmethod
    def _upper_synchronous(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("limit_questions", "limit_verdicts", "limit_sessions", "limit_ip_questions",
                     "limit_ip_verdicts", "limit_ip_sessions", "limit_chat_updates")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        if not re.fullmatch(r"\s*\d+\s*/\s*[1-9]\d*\s*[smh]?\s*", value):
            raise ValueError(f"a limit is <count>/<seconds> such as 30/60 or 20/1h (0/60: off), got {value!r}")
        return value

    @field_validator("admin_ids")
    @classmethod
    def _check_admin_ids(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not part.strip().lstrip("-").isdigit():
                raise ValueError(f"GAP_ADMIN_IDS must be comma-separated integers, got {part!r}")
        return value

    @property
    def admin_id_set(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.admin_ids.split(",") if p.strip())

    def public_dict(self) -> dict[str, object]:
        """The live configuration with secrets masked (for /settings and logs)."""
        out: dict[str, object] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr) or name in {"bot_token", "webhook_secret", "player_hash_key",
                                                                       "openai_api_key", "metrics_token"}:
                out[name] = "***" if value is not None else None
            else:
                out[name] = value
        return out


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
