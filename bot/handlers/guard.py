"""The gate every update passes first (handler group -1, PTB's ApplicationHandlerStop):
a chat over its update limit, or a banned player, goes no further.

Why here and not per handler: a flood costs one counter write per update and
nothing else — no model call, no database session — and every handler, /play
or a button alike, is covered. The rules themselves live in game/limits.py;
admins are never limited (they may need to act during a flood)."""
from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.handlers.common import deps_of, is_admin, t, tn
from game.i18n import N_
from game.limits import Banned, RateLimited

BANNED_TEXT = N_("An admin has banned this account from GAP, so you can't play or earn points. "
                 "If you think this is a mistake, contact the bot's operators.")


def too_fast_text(update: object, seconds: int) -> str:
    return tn(update, "You're sending messages too fast. Please wait {n} second, then go on.",
              "You're sending messages too fast. Please wait {n} seconds, then go on.", seconds)


async def guard(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop updates over the chat's limit (telling the sender once per window) and those of banned players."""
    if not isinstance(update, Update) or update.effective_user is None or is_admin(update, context):
        return
    chat = update.effective_chat
    try:
        await deps_of(context).service.check_chat(update.effective_user.id, chat.id if chat else None)
    except RateLimited as exc:
        if exc.first:
            await _tell(update, too_fast_text(update, exc.retry_after))
        raise ApplicationHandlerStop from None
    except Banned:
        await _tell(update, t(update, BANNED_TEXT))
        raise ApplicationHandlerStop from None


async def _tell(update: Update, text: str) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(text[:190], show_alert=True)
    elif update.effective_message is not None and update.effective_chat is not None \
            and update.effective_chat.type == "private":
        await update.effective_message.reply_text(text)
