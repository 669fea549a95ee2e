"""Everything the other handlers do not take: unknown commands, stickers, photos,
edits, group chatter — a short helpful reply or silence, never a traceback —
and the error handler (logs the update id, apologises to the player)."""
from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers.common import APOLOGY, NOT_AVAILABLE, t

log = logging.getLogger("gap.bot")


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(t(update, NOT_AVAILABLE))


async def not_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, photos, voice, files… in a private chat."""
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        t(update, "I only understand text. Type a question about the picture, or send /play to start a game.")
    )


async def edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Edits are not re-read: an edited question must not be asked twice."""
    assert update.edited_message is not None
    await update.edited_message.reply_text(
        t(update, "I don't pick up edited messages — please send it as a new message."))


async def group_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command in a group: point to the private chat (other group messages get silence)."""
    assert update.effective_message is not None
    username = context.bot.username
    await update.effective_message.reply_text(t(update, "Let's play in a private chat: {link}",
                                                link=f"https://t.me/{username}"))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure with the update id (not the player's text) and apologise."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("handler failed for update %s", update_id, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None and update.effective_chat.type == "private":
        try:
            if update.callback_query is not None:
                await update.callback_query.answer()
            await context.bot.send_message(update.effective_chat.id, t(update, APOLOGY))
        except Exception as exc:  # Telegram unreachable: the log line above is all we can do
            log.warning("could not send the apology for update %s: %s", update_id, exc.__class__.__name__)
