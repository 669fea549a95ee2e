"""Play in chat — the fallback for clients without Mini Apps.

The same GameService calls as the JSON API, so the rules, the timers and the
stored rows are identical: /play is `start_or_resume`, a text message is `ask`
(or the correction of `verdict`), the Correct/Wrong buttons are `verdict`.
Idempotency keys are Telegram's own ids (`tg-<update_id>` for a message,
`tg-cb-<callback id>` for a button), so a webhook redelivery stores nothing twice.

The only chat-side state is "the player tapped Wrong on answer X and owes a
correction" (user_data, kept across restarts in GAP_BOT_STATE_FILE). If it is
lost anyway (no state file, a crash within a second of the tap), the game still
knows the answer is unjudged, and the player is simply asked to tap
Correct/Wrong again.
"""
from __future__ import annotations

from typing import Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.handlers.common import clip, clock_text, deps_of, game_error_text, player_id_for
from game import admin_queries
from game.errors import Expired, GameError, NotFound

PENDING_CORRECTION = "correction_for"
VERDICT_PREFIX = "v"


def verdict_keyboard(answer_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton("✅ Correct", callback_data=f"{VERDICT_PREFIX}|c|{answer_id}"),
        InlineKeyboardButton("❌ Wrong", callback_data=f"{VERDICT_PREFIX}|w|{answer_id}"),
    ]])


def _pending_answer(state: dict[str, Any]) -> dict[str, Any] | None:
    image = state.get("image") or {}
    for answer in image.get("answers") or []:
        if answer.get("verdict") is None:
            return answer
    return None


async def send_image(update: Update, context: ContextTypes.DEFAULT_TYPE, state: dict[str, Any]) -> None:
    """The current picture with its progress and time left (or the summary when the game ended)."""
    deps = deps_of(context)
    chat_id = update.effective_chat.id  # type: ignore[union-attr]
    if state.get("status") != "playing" or not state.get("image"):
        await send_summary(update, context, state["session_id"])
        return
    image = state["image"]
    found = await deps.service.image_by_opaque_id(image["image_id"])
    caption = (
        f"Picture {image['index'] + 1} of {image['total']} · {clock_text(image['seconds_left'])} left\n"
        "Type a question about this picture."
    )
    if found is None:  # cannot happen for a served image; say something useful anyway
        await context.bot.send_message(chat_id, "This picture is not available right now; send /play to continue.")
        return
    _mime, content = found
    await context.bot.send_photo(chat_id, photo=content, caption=caption)
    pending = _pending_answer(state)
    if pending is not None:
        await context.bot.send_message(
            chat_id, clip(f"Your question: {pending['question']}\nAI: {pending['answer']}\n\nIs that right?"),
            reply_markup=verdict_keyboard(pending["answer_id"]),
        )


async def send_summary(update: Update, context: ContextTypes.DEFAULT_TYPE, session_id: str) -> None:
    """The reveal: which pictures had a misleading AI, and the points."""
    deps = deps_of(context)
    player_id = await player_id_for(update, context)
    summary = await deps.service.summary(player_id, session_id)
    lines = [f"Game over! You scored {summary['total_points']} points.", ""]
    for item in summary["images"]:
        kind = "the AI was told to mislead you" if item["tainted"] else "the AI answered honestly"
        finds = item.get("finds") or 0
        extra = f" ({finds} possible real mistake{'s' if finds != 1 else ''} found — checked by other players)" if finds else ""
        lines.append(f"Picture {item['index'] + 1}: {kind} — {item['points']:+d}{extra}")
    lines += ["", "Send /play for another game or /score for your totals."]
    await context.bot.send_message(update.effective_chat.id, clip("\n".join(lines)))  # type: ignore[union-attr]


async def play(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/play: start or resume the player's session and show the current picture."""
    deps = deps_of(context)
    player_id = await player_id_for(update, context)
    context.user_data.pop(PENDING_CORRECTION, None)  # type: ignore[union-attr]
    state = await deps.service.start_or_resume(player_id)
    await send_image(update, context, state)


async def text_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A plain text message in a private chat: a question, or the correction after Wrong."""
    deps = deps_of(context)
    message = update.effective_message
    assert message is not None and message.text is not None
    player_id = await player_id_for(update, context)
    try:
        state = await deps.service.current(player_id)
    except NotFound:
        await message.reply_text("You're not in a game right now. Send /play to start one.")
        return
    if state.get("status") != "playing":
        await message.reply_text("That game is over. Send /play to start a new one.")
        return
    request_id = f"tg-{update.update_id}"
    pending = _pending_answer(state)
    owed = context.user_data.get(PENDING_CORRECTION)  # type: ignore[union-attr]
    if owed is not None and (pending is None or pending["answer_id"] != owed):
        context.user_data.pop(PENDING_CORRECTION, None)  # type: ignore[union-attr]
        await message.reply_text("Time ran out for that picture, so the correction could not be saved.")
        await send_image(update, context, state)
        return
    if owed is not None:
        try:
            new_state = await deps.service.verdict(player_id, owed, request_id, "wrong", message.text)
        except Expired:
            context.user_data.pop(PENDING_CORRECTION, None)  # type: ignore[union-attr]
            await message.reply_text("Time ran out for that picture, so the correction could not be saved.")
            await _send_current(update, context, player_id)
            return
        except GameError as exc:  # e.g. too long: keep waiting for a valid correction
            await message.reply_text(game_error_text(exc) + " Please send the correct answer again.")
            return
        context.user_data.pop(PENDING_CORRECTION, None)  # type: ignore[union-attr]
        await message.reply_text("Thanks — noted! On to the next picture.")
        await send_image(update, context, new_state)
        return
    if pending is not None:
        await message.reply_text(
            clip(f"First tell me whether my last answer was right:\n{pending['answer']}"),
            reply_markup=verdict_keyboard(pending["answer_id"]),
        )
        return
    await context.bot.send_chat_action(message.chat_id, "typing")
    try:
        answer = await deps.service.ask(player_id, state["session_id"], request_id, message.text)
    except Expired:
        await message.reply_text("Time is up for that picture! Here comes the next one.")
        await _send_current(update, context, player_id)
        return
    except GameError as exc:
        await message.reply_text(game_error_text(exc))
        return
    await message.reply_text(clip(f"AI: {answer['answer']}\n\nIs that right?"), reply_markup=verdict_keyboard(answer["answer_id"]))


async def _send_current(update: Update, context: ContextTypes.DEFAULT_TYPE, player_id: int) -> None:
    """After a timeout: the next picture, or the summary if that was the last one."""
    deps = deps_of(context)
    try:
        state = await deps.service.current(player_id)
    except NotFound:
        last = await admin_queries.last_session_id(deps.service.db, player_id)
        if last is not None:
            await send_summary(update, context, last)
        return
    await send_image(update, context, state)


async def verdict_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Correct → judged at once; Wrong → ask for the correction first (the core needs both together)."""
    deps = deps_of(context)
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split("|")
    if len(parts) != 3 or parts[1] not in ("c", "w"):
        await query.answer()
        return
    choice, answer_id = parts[1], parts[2]
    player_id = await player_id_for(update, context)
    original = query.message.text if query.message is not None and getattr(query.message, "text", None) else ""
    if choice == "c":
        try:
            state = await deps.service.verdict(player_id, answer_id, f"tg-cb-{query.id}", "correct")
        except Expired:
            await query.answer("Time is up for that picture.")
            await _edit(query, original, "⏰ Time ran out.")
            await _send_current(update, context, player_id)
            return
        except GameError as exc:
            await query.answer(game_error_text(exc)[:190])
            return
        await query.answer("Noted: correct")
        left = clock_text((state.get("image") or {}).get("seconds_left", 0))
        await _edit(query, original, f"✅ You said: correct. Ask another question ({left} left).")
        return
    try:
        state = await deps.service.current(player_id)
    except NotFound:
        await query.answer("That game is over.")
        return
    pending = _pending_answer(state)
    if pending is None or pending["answer_id"] != answer_id:
        await query.answer("That answer can't be judged any more.")
        return
    context.user_data[PENDING_CORRECTION] = answer_id  # type: ignore[index]
    await query.answer("Noted: wrong")
    await _edit(query, original, "❌ You said: wrong.")
    await context.bot.send_message(
        update.effective_chat.id,  # type: ignore[union-attr]
        "What is the correct answer? Type it in a message (up to 200 characters).",
        reply_markup=ForceReply(input_field_placeholder="The correct answer"),
    )


async def _edit(query: Any, original: str, note: str) -> None:
    """Append `note` to the answered message and drop its buttons (ignore 'not modified')."""
    try:
        await query.edit_message_text(clip(f"{original}\n\n{note}" if original else note))
    except BadRequest:
        pass
