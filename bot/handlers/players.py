"""Player commands: /start (the Mini App button), /help, /score."""
from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MenuButtonWebApp, Update, WebAppInfo
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.handlers.common import deps_of, player_id_for
from game import admin_queries

log = logging.getLogger("gap.bot")

HELP = (
    "How to play GAP:\n"
    "• Each game has 10 pictures and 2 minutes per picture.\n"
    "• Ask the AI any question about the picture, then judge its answer: Correct or Wrong.\n"
    "• On some pictures the AI has been told to mislead you. Catch it saying something wrong "
    "and you earn 20 points — but crying wolf on a right answer can cost you 10.\n"
    "• After Wrong, type the right answer; then the next picture comes.\n"
    "• The scores are revealed at the end of the game.\n\n"
    "Commands:\n"
    "/start — open the game\n"
    "/play — play right here in the chat (if the game button doesn't work for you)\n"
    "/duel — duels: pick the better of two pictures or answers, five at a time\n"
    "/score — your points, rank and how reliable your judgements are\n"
    "/help — this message"
)


def play_keyboard(url: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton("▶️ Play GAP", web_app=WebAppInfo(url=url))]])


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Greet, store a deep-link referrer, offer the Mini App (inline button + chat menu button)."""
    deps = deps_of(context)
    referrer = context.args[0] if context.args else None
    await player_id_for(update, context, referrer=referrer)
    assert update.effective_message is not None and update.effective_chat is not None
    name = update.effective_user.first_name if update.effective_user else "there"
    greeting = (
        f"Hi {name}! 👋 This is GAP, a game of spotting the AI's mistakes.\n"
        "You see a picture, ask the AI about it, and decide whether its answer is right. "
        "Your catches help teach the AI to see better."
    )
    if deps.mini_app_url:
        await update.effective_message.reply_text(
            greeting + "\n\nTap the button to play (or send /play to play here in the chat).",
            reply_markup=play_keyboard(deps.mini_app_url),
        )
        try:  # this chat's menu button; the default one is set at start-up
            await context.bot.set_chat_menu_button(
                chat_id=update.effective_chat.id,
                menu_button=MenuButtonWebApp(text="Play", web_app=WebAppInfo(url=deps.mini_app_url)),
            )
        except TelegramError as exc:
            log.info("setChatMenuButton for a chat failed: %s", exc.__class__.__name__)
    else:
        await update.effective_message.reply_text(greeting + "\n\nSend /play to start a game right here in the chat.")


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(HELP)


def reliability_words(caught: int, judged: int) -> str:
    """Sensitivity s = P(Wrong | the AI was wrong) in plain words, from the Beta(1,1) posterior mean."""
    if judged < 5:
        return "I can't tell yet how reliable you are — play a few more pictures."
    s = (caught + 1) / (judged + 2)
    share = round(s * 10)
    if s >= 0.85:
        word = "Excellent"
    elif s >= 0.7:
        word = "Good"
    elif s >= 0.5:
        word = "Fair"
    else:
        word = "Still learning"
    return f"{word}: you catch about {share} of every 10 deliberate mistakes."


def false_alarm_words(false_alarms: int, judged: int) -> str:
    if judged < 5:
        return ""
    f = (false_alarms + 1) / (judged + 2)
    if f <= 0.15:
        return " You rarely call a right answer wrong."
    if f <= 0.35:
        return " Sometimes you call a right answer wrong — look twice."
    return " You often call right answers wrong — a flag only counts when the AI really erred."


async def score(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The player's own totals, all-time rank and reliability."""
    deps = deps_of(context)
    player_id = await player_id_for(update, context)
    now = deps.service.clock()
    mine = await admin_queries.player_score(deps.service.db, player_id, now_ms=now)
    board = await deps.service.leaderboard("all", player_id=player_id, limit=1)
    me = board.get("me")
    rank = f"#{me['rank']}" if me else "not ranked yet (no points)"
    lines = [
        f"Your score (player #{player_id}):",
        f"• Points: {mine.total_points} in total, {mine.week_points} in the last 7 days",
        f"• Rank: {rank}",
        f"• Games: {mine.sessions}",
        f"• Mistakes caught: {mine.tainted_caught}; finds of real AI mistakes: {mine.finds}",
        "• Reliability: " + reliability_words(mine.tainted_caught, mine.tainted_judged)
        + false_alarm_words(mine.false_alarms, mine.honest_judged),
    ]
    assert update.effective_message is not None
    await update.effective_message.reply_text("\n".join(lines))
