"""/duel: the entry to preference duels (SPEC §3.4) — a button that opens the Mini App on its
Duels screen. Duels need the page (one tap per picture), so without a Mini App URL the bot says so."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update, WebAppInfo
from telegram.ext import ContextTypes

from bot.handlers.common import deps_of, player_id_for

DUEL_TEXT = ("⚔️ Duels: pick the picture that fits the caption, or the answer that is right — "
             "five at a time, one tap each. Accurate picks earn points; guessing closes duels for you.")


def duels_url(mini_app_url: str) -> str:
    """The Mini App URL with `mode=duels` in its query (the page opens the Duels screen)."""
    parts = urlsplit(mini_app_url)
    query = f"{parts.query}&mode=duels" if parts.query else "mode=duels"
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


async def duel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Offer the Duels screen of the Mini App."""
    deps = deps_of(context)
    await player_id_for(update, context)
    assert update.effective_message is not None
    if not deps.mini_app_url:
        await update.effective_message.reply_text(
            "Duels are played in the game's page, which is not configured on this server. Send /play for the chat game.")
        return
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("⚔️ Open duels",
                                                           web_app=WebAppInfo(url=duels_url(deps.mini_app_url)))]])
    await update.effective_message.reply_text(DUEL_TEXT, reply_markup=keyboard)
