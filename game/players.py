"""Players are stored under a keyed hash of their Telegram id (SPEC §1.4): the
database alone cannot be joined back to Telegram accounts without the key."""
from __future__ import annotations

import hashlib
import hmac


def derive_hash_key(player_hash_key: str | None, bot_token: str | None) -> bytes:
    """The HMAC key for player ids: the configured key, else one derived from the
    bot token (so a deployment with only a token still hashes with a secret)."""
    if player_hash_key:
        return player_hash_key.encode()
    if bot_token:
        return hmac.new(b"gap-player-key", bot_token.encode(), hashlib.sha256).digest()
    raise ValueError("set GAP_PLAYER_HASH_KEY or GAP_BOT_TOKEN to hash player ids")


def player_key(hash_key: bytes, telegram_id: int | str) -> str:
    """HMAC-SHA256 of the Telegram user id, hex (64 chars = players.player_key)."""
    return hmac.new(hash_key, str(int(telegram_id)).encode(), hashlib.sha256).hexdigest()


def display_name(first_name: str | None = None, last_name: str | None = None,
                 username: str | None = None) -> str | None:
    """The name a leaderboard shows for a Telegram user (SPEC §1.4: optional), by one rule for
    every path that sees the user — the Mini App's initData and the bot's updates carry the same
    three fields — so that neither path overwrites the other's choice: "First Last" as Telegram
    shows the person, else "@username", else none.

    >>> display_name("Ann", "Lee", "ann_l"), display_name(" ", None, "ann_l"), display_name()
    ('Ann Lee', '@ann_l', None)
    """
    name = " ".join(part for part in ((first_name or "").strip(), (last_name or "").strip()) if part)
    if name:
        return name
    username = (username or "").strip().lstrip("@")
    return f"@{username}" if username else None
