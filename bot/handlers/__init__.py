"""All handlers, registered in one place so the routing is readable at a glance.

Group -1: the guard (per-chat update limits, bans) sees every update first.
Group 0 (first match wins): private-chat commands, the players' text messages
and buttons, then the catch-alls for anything else. Only new messages in
private chats are played with; edits and group chatter get a hint or silence."""
from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, TypeHandler, filters

from bot.handlers import admin, duels, fallback, guard, play, players

PRIVATE_NEW = filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE


def register_handlers(application: Application) -> None:
    commands = {
        "start": players.start,
        "help": players.help_command,
        "score": players.score,
        "play": play.play,
        "duel": duels.duel,
        "stats": admin.stats,
        "pool": admin.pool,
        "compare": admin.compare,
        "export": admin.export,
        "mute": admin.mute,
        "unmute": admin.unmute,
        "ban": admin.ban,
        "unban": admin.unban,
        "broadcast": admin.broadcast,
        "settings": admin.settings_command,
        "promote": admin.promote,
        "rounds": admin.rounds_command,
    }
    application.add_handler(TypeHandler(Update, guard.guard), group=-1)
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=PRIVATE_NEW))
    application.add_handler(CallbackQueryHandler(play.verdict_button, pattern=rf"^{play.VERDICT_PREFIX}\|"))
    application.add_handler(CallbackQueryHandler(admin.broadcast_button, pattern=rf"^{admin.BROADCAST_PREFIX}\|"))
    application.add_handler(MessageHandler(PRIVATE_NEW & filters.COMMAND, fallback.unknown_command))
    application.add_handler(MessageHandler(PRIVATE_NEW & filters.TEXT, play.text_message))
    application.add_handler(MessageHandler(PRIVATE_NEW, fallback.not_text))
    application.add_handler(MessageHandler(filters.ChatType.PRIVATE & filters.UpdateType.EDITED_MESSAGE, fallback.edited))
    application.add_handler(MessageHandler(filters.ChatType.GROUPS & filters.UpdateType.MESSAGE & filters.COMMAND,
                                           fallback.group_command))
    application.add_error_handler(fallback.on_error)
