"""Telegram Mini App initData validation (SPEC §4.3).

Telegram signs the launch parameters it hands the Mini App: the data-check-
string is every received field except `hash`, sorted by key, as `key=value`
joined by newlines; the secret key is HMAC-SHA256(key="WebAppData",
msg=bot_token); `hash` is the hex HMAC-SHA256 of the data-check-string under
that key. (`signature`, the Ed25519 field for third-party validation, is part
of the data-check-string like any other field.) The check is short, so it is
written here rather than depending on a bot framework in the web adapter."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from game.players import display_name

MAX_INIT_DATA_LENGTH = 8192


class AuthError(Exception):
    """initData is missing, malformed, forged or too old; the message is safe to show."""


@dataclass(frozen=True)
class InitData:
    """The validated, parsed launch parameters."""

    user: dict[str, Any]
    auth_date: int
    fields: dict[str, str]

    @property
    def user_id(self) -> int:
        return int(self.user["id"])

    @property
    def display_name(self) -> str | None:
        """The leaderboard name, by the rule the bot uses too (game.players.display_name)."""
        return display_name(*(str(self.user.get(k) or "") for k in ("first_name", "last_name", "username")))


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _data_check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "hash")


def _hash(bot_token: str, fields: dict[str, str]) -> str:
    return hmac.new(secret_key(bot_token), _data_check_string(fields).encode(), hashlib.sha256).hexdigest()


def validate_init_data(init_data: str, bot_token: str, *, max_age: float, now: float | None = None) -> InitData:
    """Return the parsed initData if Telegram (with this bot token) signed it no
    longer than `max_age` seconds ago; raise AuthError otherwise."""
    if not init_data:
        raise AuthError("missing initData")
    if len(init_data) > MAX_INIT_DATA_LENGTH:
        raise AuthError("initData is too long")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise AuthError("initData is not a query string") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise AuthError(f"initData repeats the field {key!r}")
        fields[key] = value
    received = fields.get("hash")
    if not received:
        raise AuthError("initData has no hash")
    if not hmac.compare_digest(_hash(bot_token, fields).encode(), received.encode()):
        raise AuthError("initData signature does not match")
    try:
        auth_date = int(fields["auth_date"])
    except (KeyError, ValueError):
        raise AuthError("initData has no valid auth_date") from None
    now = time.time() if now is None else now
    if now - auth_date > max_age:
        raise AuthError("initData has expired; reopen the Mini App")
    if auth_date - now > 300:
        raise AuthError("initData auth_date is in the future")
    try:
        user = json.loads(fields["user"])
        int(user["id"])
    except (KeyError, ValueError, TypeError):
        raise AuthError("initData has no valid user") from None
    if not isinstance(user, dict):
        raise AuthError("initData has no valid user")
    return InitData(user=user, auth_date=auth_date, fields=fields)


def sign_init_data(bot_token: str, user: dict[str, Any], auth_date: int | None = None, **extra: str) -> str:
    """Build initData as Telegram would (for the local demo, tests and benchmarks)."""
    fields = {"user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
              "auth_date": str(int(time.time()) if auth_date is None else int(auth_date))}
    fields.update({k: str(v) for k, v in extra.items()})
    fields["hash"] = _hash(bot_token, fields)
    return urlencode(fields)


def parse_authorization(header: str | None) -> str:
    """The initData of an `Authorization: tma <initData>` header."""
    if not header:
        raise AuthError("missing Authorization header (expected: tma <initData>)")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "tma" or not value.strip():
        raise AuthError("Authorization header must be: tma <initData>")
    return value.strip()
