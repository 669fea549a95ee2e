"""Small helpers every handler uses: its dependencies, the player behind an
update, the admin check, and the texts shared by several handlers.

All bot messages are sent as plain text (no parse_mode), so player questions
and model answers can never inject markup."""
from __future__ import annotations

from typing import TYPE_CHECKING

from telegram import Update
from telegram.ext import ContextTypes

from game import admin_queries, players
from game.errors import GameError

if TYPE_CHECKING:
    from bot.deps import BotDeps

# Same words for unknown commands and for admin commands sent by non-admins, so a
# refusal reveals nothing — not even that an admin command exists.
NOT_AVAILABLE = "Sorry, that's not something I can do. Send /help to see what I can do."
APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."
MAX_TEXT = 4000  # Telegram allows 4096 characters per message


def deps_of(context: ContextTypes.DEFAULT_TYPE) -> BotDeps:
    return context.application.bot_data["deps"]


def is_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    user = update.effective_user
    return user is not None and user.id in deps_of(context).settings.admin_id_set


def display_name(update: Update) -> str | None:
    """The leaderboard name, by the rule the Mini App uses too (game.players.display_name)."""
    user = update.effective_user
    if user is None:
        return None
    return players.display_name(user.first_name, user.last_name, user.username)


async def player_id_for(update: Update, context: ContextTypes.DEFAULT_TYPE, *, referrer: str | None = None) -> int:
    """The game's player id for the sender (created on first sight) — the same
    keyed-hash identity the Mini App uses — and remember their private chat."""
    deps = deps_of(context)
    user = update.effective_user
    assert user is not None
    player_id = await deps.service.upsert_player(user.id, display_name(update))
    chat = update.effective_chat
    if chat is not None and chat.type == "private":
        await admin_queries.remember_chat(deps.service.db, player_id, chat.id, referrer)
    return player_id


def game_error_text(exc: GameError) -> str:
    """A game error in a player's words (the core's messages are already safe to show)."""
    message = exc.message.rstrip(".")
    return message[:1].upper() + message[1:] + "."


def clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
