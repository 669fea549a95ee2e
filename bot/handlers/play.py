"""Play in chat — the fallback for clients without Mini Apps.

The same GameService calls as the JSON API, so the rules, the timers and the
stored rows are identical: /play is `start_or_resume`, a text message is `ask`
(or the correction of `verdict`), the Correct/Wrong buttons are `verdict`.
Idempotency keys are Telegram's own ids (`tg-<update_id>` for a message,
`tg-cb-<callback id>` for a button), so a webhook redelivery stores nothing twice.

The only chat-side state is "the player tapped Wrong on answer X and owes a
correction", kept in the database (game/chat_state.py): the tap and the typed
correction may reach different web workers, and a restart forgets nothing. If
the answer can no longer be judged when the correction arrives, the player is
told so and shown the current picture.
"""
from __future__ import annotations

from typing import Any

from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.handlers.common import clip, clock_text, deps_of, game_error_text, player_id_for, t, tn
from game import admin_queries, chat_state
from game.errors import Expired, GameError, NotFound

PENDING_CORRECTION = "correction_for"
VERDICT_PREFIX = "v"


def _subject(player_id: int) -> str:
    return f"player:{player_id}"


def verdict_keyboard(update: object, answer_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(t(update, "✅ Correct"), callback_data=f"{VERDICT_PREFIX}|c|{answer_id}"),
        InlineKeyboardButton(t(update, "❌ Wrong"), callback_data=f"{VERDICT_PREFIX}|w|{answer_id}"),
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
    caption = (t(update, "Picture {index} of {total} · {left} left", index=image["index"] + 1, total=image["total"],
                   left=clock_text(image["seconds_left"]))
               + "\n" + t(update, "Type a question about this picture."))
    if found is None:  # cannot happen for a served image; say something useful anyway
        await context.bot.send_message(chat_id, t(update, "This picture is not available right now; send /play to continue."))
        return
    _mime, content = found
    await context.bot.send_photo(chat_id, photo=content, caption=caption)
    pending = _pending_answer(state)
    if pending is not None:
        await context.bot.send_message(
            chat_id, clip(t(update, "Your question: {question}\nAI: {answer}\n\nIs that right?",
                            question=pending["question"], answer=pending["answer"])),
            reply_markup=verdict_keyboard(update, pending["answer_id"]),
        )


async def send_summary(update: Update, context: ContextTypes.DEFAULT_TYPE, session_id: str) -> None:
    """The reveal: which pictures had a misleading AI, and the points."""
    deps = deps_of(context)
    player_id = await player_id_for(update, context)
    summary = await deps.service.summary(player_id, session_id)
    lines = [tn(update, "Game over! You scored {n} point.", "Game over! You scored {n} points.",
                summary["total_points"]), ""]
    for item in summary["images"]:
        kind = t(update, "the AI was told to mislead you") if item["tainted"] else t(update, "the AI answered honestly")
        finds = item.get("finds") or 0
        extra = (" " + tn(update, "({n} possible real mistake found — checked by other players)",
                          "({n} possible real mistakes found — checked by other players)", finds)) if finds else ""
        lines.append(t(update, "Picture {index}: {kind} — {points}", index=item["index"] + 1, kind=kind,
                       points=f"{item['points']:+d}") + extra)
    lines += ["", t(update, "Send /play for another game or /score for your totals.")]
    await context.bot.send_message(update.effective_chat.id, clip("\n".join(lines)))  # type: ignore[union-attr]


async def play(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/play: start or resume the player's session and show the current picture."""
    deps = deps_of(context)
    player_id = await player_id_for(update, context)
    await chat_state.take(deps.service.db, _subject(player_id), PENDING_CORRECTION)
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
        await message.reply_text(t(update, "You're not in a game right now. Send /play to start one."))
        return
    if state.get("status") != "playing":
        await message.reply_text(t(update, "That game is over. Send /play to start a new one."))
        return
    request_id = f"tg-{update.update_id}"
    pending = _pending_answer(state)
    owed = await chat_state.get(deps.service.db, _subject(player_id), PENDING_CORRECTION)
    if owed is not None and (pending is None or pending["answer_id"] != owed):
        await chat_state.take(deps.service.db, _subject(player_id), PENDING_CORRECTION)
        await message.reply_text(t(update, "Time ran out for that picture, so the correction could not be saved."))
        await send_image(update, context, state)
        return
    if owed is not None:
        try:
            new_state = await deps.service.verdict(player_id, owed, request_id, "wrong", message.text)
        except Expired:
            await chat_state.take(deps.service.db, _subject(player_id), PENDING_CORRECTION)
            await message.reply_text(t(update, "Time ran out for that picture, so the correction could not be saved."))
            await _send_current(update, context, player_id)
            return
        except GameError as exc:  # e.g. too long: keep waiting for a valid correction
            await message.reply_text(game_error_text(update, exc) + " " + t(update, "Please send the correct answer again."))
            return
        await chat_state.take(deps.service.db, _subject(player_id), PENDING_CORRECTION)
        await message.reply_text(t(update, "Thanks — noted! On to the next picture."))
        await send_image(update, context, new_state)
        return
    if pending is not None:
        await message.reply_text(
            clip(t(update, "First tell me whether my last answer was right:\n{answer}", answer=pending["answer"])),
            reply_markup=verdict_keyboard(update, pending["answer_id"]),
        )
        return
    await context.bot.send_chat_action(message.chat_id, "typing")
    try:
        answer = await deps.service.ask(player_id, state["session_id"], request_id, message.text)
    except Expired:
        await message.reply_text(t(update, "Time is up for that picture! Here comes the next one."))
        await _send_current(update, context, player_id)
        return
    except GameError as exc:
        await message.reply_text(game_error_text(update, exc))
        return
    await message.reply_text(clip(t(update, "AI: {answer}\n\nIs that right?", answer=answer["answer"])),
                             reply_markup=verdict_keyboard(update, answer["answer_id"]))


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
            await query.answer(t(update, "Time is up for that picture."))
            await _edit(query, original, t(update, "⏰ Time ran out."))
            await _send_current(update, context, player_id)
            return
        except GameError as exc:
            await query.answer(game_error_text(update, exc)[:190])
            return
        await query.answer(t(update, "Noted: correct"))
        left = clock_text((state.get("image") or {}).get("seconds_left", 0))
        await _edit(query, original, t(update, "✅ You said: correct. Ask another question ({left} left).", left=left))
        return
    try:
        state = await deps.service.current(player_id)
    except NotFound:
        await query.answer(t(update, "That game is over."))
        return
    pending = _pending_answer(state)
    if pending is None or pending["answer_id"] != answer_id:
        await query.answer(t(update, "That answer can't be judged any more."))
        return
    await chat_state.put(deps.service.db, _subject(player_id), PENDING_CORRECTION, answer_id, deps.service.clock())
    await query.answer(t(update, "Noted: wrong"))
    await _edit(query, original, t(update, "❌ You said: wrong."))
    await context.bot.send_message(
        update.effective_chat.id,  # type: ignore[union-attr]
        t(update, "What is the correct answer? Type it in a message (up to 200 characters)."),
        reply_markup=ForceReply(input_field_placeholder=t(update, "The correct answer")),
    )


async def _edit(query: Any, original: str, note: str) -> None:
    """Append `note` to the answered message and drop its buttons (ignore 'not modified')."""
    try:
        await query.edit_message_text(clip(f"{original}\n\n{note}" if original else note))
    except BadRequest:
        pass
