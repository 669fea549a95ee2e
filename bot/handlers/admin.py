"""Admin commands: /stats /pool /compare /export /mute /unmute /ban /unban /broadcast /settings /promote /rounds.

Every handler starts with the admin check; anyone else gets the same polite
words as an unknown command (common.NOT_AVAILABLE), so nothing is revealed.
The handlers parse arguments, call one query (game/admin_queries.py, the
evaluation or the exporter), and render plain text, a PNG or a document."""
from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ContextTypes

from bot import charts
from bot.handlers.common import NOT_AVAILABLE, clip, deps_of, is_admin, t
from game import admin_queries, chat_state, duels_stats, rounds
from game.errors import Invalid
from game.export_formats import FORMATS
from game.pool_progress import pool_progress, progress_lines

log = logging.getLogger("gap.bot.admin")

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]
EXPORT_FORMATS = FORMATS  # the same formats as `gap export`
BROADCAST_PREFIX = "b"
BROADCAST_MAX = 3500


def admin_only(handler: Handler) -> Handler:
    """Run `handler` for admins; everyone else gets the same refusal as an unknown command."""

    @functools.wraps(handler)
    async def wrapper(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not is_admin(update, context):
            if update.callback_query is not None:
                await update.callback_query.answer(t(update, NOT_AVAILABLE)[:190])
            elif update.effective_message is not None:
                await update.effective_message.reply_text(t(update, NOT_AVAILABLE))
            return
        await handler(update, context)

    return wrapper


async def _reply(update: Update, text: str, **kwargs: Any) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(clip(text), **kwargs)


# ---------------------------------------------------------------------- /stats
async def _evaluation(context: ContextTypes.DEFAULT_TYPE) -> tuple[int | None, list[float]]:
    """(exportable items at θ, per-player reliability s) from the data pipeline's
    incremental evaluation; falls back to Beta(1,1) means when it is unavailable."""
    deps = deps_of(context)
    db = deps.service.db
    try:
        from sqlalchemy import select

        from game.evaluation import EvalConfig
        from game.evaluation_store import run_evaluation
        from game.evaluation_tables import player_estimates

        summary = await run_evaluation(db, EvalConfig(theta=deps.settings.theta, crowd_threshold=deps.settings.crowd_threshold), now_ms=deps.service.clock())
        async with db.read() as conn:
            s_means = [float(r[0]) for r in (await conn.execute(
                select(player_estimates.c.s_mean).where(player_estimates.c.n_tainted > 0))).all()]
        return int(summary.exportable), s_means
    except Exception as exc:  # the operator still gets the headline numbers
        log.warning("evaluation for /stats failed: %r", exc)
        return None, [s for _, s, _ in await admin_queries.player_sensitivity(db)]


@admin_only
async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    deps = deps_of(context)
    db = deps.service.db
    o = await admin_queries.overview(db)
    exportable, reliabilities = await _evaluation(context)
    progress = progress_lines(await pool_progress(db))
    per_day = await admin_queries.sessions_per_day(db, days=30, now_ms=deps.service.clock())
    reached = await admin_queries.images_reached_per_session(db)
    text = (
        "GAP statistics\n"
        f"Players: {o.players} ({o.muted_players} muted)\n"
        f"Sessions: {o.sessions} ({o.finished_sessions} finished), {o.images_per_session:.1f} images per session\n"
        f"Answers: {o.answers}; flags (Wrong): {o.flags}\n"
        f"• caught deliberate mistakes: {o.tainted_catches}\n"
        f"• false alarms on tainted images: {o.false_alarms}\n"
        f"• finds on untainted images: {o.finds}\n"
        f"Exportable at θ={deps.settings.theta:g}: {exportable if exportable is not None else 'n/a (evaluation failed)'}\n"
        "Reliable pool (reliable/images per way):\n" + "\n".join(f"• {line}" for line in progress)
    )
    duel = await duels_stats.duel_summary(db)
    duel_seconds = await duels_stats.duel_seconds(db)
    median = duels_stats.time_summary([int(s * 1000) for s in duel_seconds]).get("median")
    if duel["choices"]:
        accuracy = duel["mean_player_accuracy"]
        text += (f"\nDuels: {duel['choices']} choices by {duel['players']} players, {duel['removed']} removed; "
                 f"{duel['too_fast_refused']} too-fast taps refused; mean accuracy on checks "
                 f"{accuracy if accuracy is not None else '–'}; median {median} s per duel")
    else:
        text += "\nDuels: none played yet"
    png = await asyncio.to_thread(charts.stats_png, per_day, reliabilities, reached, duel_seconds=duel_seconds,
                                  duel_min_seconds=float(deps.settings.duel_min_seconds))
    await _reply(update, text)
    assert update.effective_chat is not None
    await context.bot.send_photo(update.effective_chat.id, photo=png, filename="gap-stats.png",
                                 caption="Sessions per day · player reliability · images reached per session · seconds per duel")


# ----------------------------------------------------------------------- /pool
@admin_only
async def pool(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    rows = await admin_queries.pools(deps_of(context).service.db)
    if not rows:
        await _reply(update, "No images yet. Import some with `gap images`.")
        return
    lines = ["Image pools:"]
    for r in rows:
        measured = f"{r.measured_accuracy:.0%}" if r.measured_accuracy is not None else "not measured"
        judged = (f"players judged {r.judged_correct_share:.0%} of {r.judged_untainted} honest answers correct"
                  if r.judged_correct_share is not None else "no judged honest answers yet")
        lines.append(f"• {r.pool}: {r.images} images, {r.reliable} in the reliable pool; "
                     f"model accuracy {measured}; {judged}")
    await _reply(update, "\n".join(lines))


# -------------------------------------------------------------------- /compare
COMPARE_TRIALS = 20
COMPARE_TREES = 50
COMPARE_USAGE = "Usage: /compare [trials 2–100] — model or crowd, per attribute (gap compare makes the full report)"


@admin_only
async def compare(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Model or crowd (SPEC §3.5): the comparison of the stored descriptions, as text and a chart."""
    from game.compare_report import chart_png, summary_text
    from game.compare_run import CompareConfig, compare_sources

    args = context.args or []
    try:
        trials = int(args[0]) if args else COMPARE_TRIALS
        if len(args) > 1 or not 2 <= trials <= 100:
            raise ValueError
    except ValueError:
        await _reply(update, COMPARE_USAGE)
        return
    deps = deps_of(context)
    config = CompareConfig(trials=trials, trees=COMPARE_TREES, gpu_hour_price=deps.settings.gpu_hour_price,
                           point_value=deps.settings.point_value)
    report = await compare_sources(deps.service.db, config)
    png = await asyncio.to_thread(chart_png, report)
    await _reply(update, summary_text(report))
    assert update.effective_chat is not None
    await context.bot.send_photo(update.effective_chat.id, photo=png, filename="gap-compare.png",
                                 caption="Weighted F1 per attribute (train/test source)")


# --------------------------------------------------------------------- /export
def parse_export_args(args: list[str], default_theta: float) -> tuple[str, float, bool, tuple[str, ...]]:
    """`/export [format] [theta] [confirmed] [strata=S,...]` in any order; raises ValueError with a usage
    hint. `confirmed` adds the answers trusted players judged correct (`gap export --confirmed`);
    `strata=simple` keeps the images of those pool strata only (`gap export --strata`)."""
    from game.exports import clean_strata

    fmt, theta, confirmed, strata = "sharegpt", default_theta, False, ()
    if len(args) > 4:
        raise ValueError("too many arguments")
    for arg in args:
        if arg.lower() in EXPORT_FORMATS:
            fmt = arg.lower()
            continue
        if arg.lower() == "confirmed":
            confirmed = True
            continue
        if arg.lower().startswith("strata="):
            strata = clean_strata([arg.split("=", 1)[1]])
            if not strata:
                raise ValueError("strata= needs a stratum, e.g. strata=simple")
            continue
        try:
            value = float(arg)
        except ValueError:
            raise ValueError(f"unknown format {arg[:20]!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError("theta must be between 0 and 1")
        theta = value
    return fmt, theta, confirmed, strata


@admin_only
async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    deps = deps_of(context)
    try:
        fmt, theta, confirmed, strata = parse_export_args(list(context.args or []), deps.settings.theta)
    except ValueError as exc:
        await _reply(update, f"Usage: /export [{'|'.join(EXPORT_FORMATS)}] [theta 0..1] [confirmed] "
                             f"[strata=simple,...] — {exc}.")
        return
    from bot.exporting import export_file  # the data pipeline's exporter, wrapped

    path, card = await export_file(deps, fmt, theta, confirmed=confirmed, strata=strata)
    assert update.effective_chat is not None
    size = path.stat().st_size
    caption = (f"{fmt} export at θ={theta:g}{' with confirmations' if confirmed else ''}"
               f"{' of the strata ' + ','.join(strata) if strata else ''}: {card['examples']} items; "
               f"{card.get('skipped_same_sides', 0)} skipped (correction the same as the answer)")
    if size > deps.max_document_bytes:
        await _reply(update, f"{caption}. The file is too large to send ({size / 1e6:.1f} MB); it is on the server at {path.resolve()}")
        return
    with path.open("rb") as fh:
        await context.bot.send_document(update.effective_chat.id, document=fh, filename=path.name, caption=caption)


# ------------------------------------------------------------- /mute /unmute
async def _set_muted(update: Update, context: ContextTypes.DEFAULT_TYPE, muted: bool) -> None:
    verb = "mute" if muted else "unmute"
    if not context.args or len(context.args) != 1:
        await _reply(update, f"Usage: /{verb} <player> — the player number (as in #12) or the start of their key.")
        return
    db = deps_of(context).service.db
    player = await admin_queries.find_player(db, context.args[0])
    if player is None:
        await _reply(update, "No single player matches that. Use the player number (as in #12) or a longer key prefix.")
        return
    await admin_queries.set_muted(db, player.id, muted)
    name = player.display_name or f"player {player.player_key[:6]}"
    state = "muted: their flags are kept but not exported" if muted else "unmuted"
    await _reply(update, f"Player #{player.id} ({name}) is now {state}.")


@admin_only
async def mute(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_muted(update, context, True)


@admin_only
async def unmute(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_muted(update, context, False)


# ---------------------------------------------------------------- /ban /unban
async def _player_ref(context: ContextTypes.DEFAULT_TYPE, ref: str):
    """A player by `#<number>`, a key prefix, or `tg:<Telegram user id>` (e.g. from a forwarded message)."""
    service = deps_of(context).service
    if ref.lower().startswith("tg:") and ref[3:].lstrip("-").isdigit():
        ref = service.player_key_for(int(ref[3:]))
    return await admin_queries.find_player(service.db, ref)


@admin_only
async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ban <player> [reason]: no play, no points, off the leaderboards; nothing is deleted."""
    if not context.args:
        await _reply(update, "Usage: /ban <player> [reason] — #12, the start of their key, or tg:<Telegram user id>.")
        return
    player = await _player_ref(context, context.args[0])
    if player is None:
        await _reply(update, "No single player matches that. Use #12, a longer key prefix or tg:<Telegram user id>.")
        return
    reason = " ".join(context.args[1:]).strip()
    service = deps_of(context).service
    await admin_queries.set_banned(service.db, player.id, reason, service.clock())
    name = player.display_name or f"player {player.player_key[:6]}"
    await _reply(update, f"Player #{player.id} ({name}) is banned" + (f": {reason}" if reason else "")
                 + ". They can't play or earn points and are off the leaderboards. /unban undoes it.")


@admin_only
async def unban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not context.args or len(context.args) != 1:
        await _reply(update, "Usage: /unban <player> — #12, the start of their key, or tg:<Telegram user id>.")
        return
    player = await _player_ref(context, context.args[0])
    if player is None:
        await _reply(update, "No single player matches that. Use #12, a longer key prefix or tg:<Telegram user id>.")
        return
    service = deps_of(context).service
    await admin_queries.set_banned(service.db, player.id, None, service.clock())
    name = player.display_name or f"player {player.player_key[:6]}"
    await _reply(update, f"Player #{player.id} ({name}) is no longer banned.")


# ------------------------------------------------------------------ /broadcast
@admin_only
async def broadcast(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Step 1: show the text and the audience, ask for confirmation with buttons."""
    message = update.effective_message
    assert message is not None and message.text is not None
    parts = message.text.split(maxsplit=1)
    text = parts[1].strip() if len(parts) > 1 else ""
    if not text:
        await _reply(update, "Usage: /broadcast <text> — I'll ask you to confirm before sending.")
        return
    if len(text) > BROADCAST_MAX:
        await _reply(update, f"That's too long for one message ({len(text)} characters; at most {BROADCAST_MAX}).")
        return
    recipients = await admin_queries.broadcast_chat_ids(deps_of(context).service.db)
    token = secrets.token_hex(6)
    service = deps_of(context).service
    await chat_state.put(service.db, _admin_subject(update, context), f"broadcast:{token}", text, service.clock())
    keyboard = InlineKeyboardMarkup([[
        InlineKeyboardButton(f"📣 Send to {len(recipients)}", callback_data=f"{BROADCAST_PREFIX}|y|{token}"),
        InlineKeyboardButton("Cancel", callback_data=f"{BROADCAST_PREFIX}|n|{token}"),
    ]])
    await _reply(update, f"Send this to {len(recipients)} players?\n\n{text}", reply_markup=keyboard)


def _admin_subject(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    """The chat-state key of an admin: their keyed-hash id, as players are stored (SPEC §1.4)."""
    assert update.effective_user is not None
    return f"user:{deps_of(context).service.player_key_for(update.effective_user.id)}"


@admin_only
async def broadcast_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Step 2: on confirmation send (rate-limited by PTB's AIORateLimiter) in the
    background and report delivered/failed; on cancel forget the text."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split("|")
    text = None
    if len(parts) == 3 and len(parts[2]) <= 32:  # taken once, whichever worker the tap reaches
        text = await chat_state.take(deps_of(context).service.db, _admin_subject(update, context),
                                     f"broadcast:{parts[2]}")
    if text is None:
        await query.answer("This broadcast was already handled.")
        return
    if parts[1] != "y":
        await query.answer("Cancelled")
        await _edit_quietly(query, "Broadcast cancelled.")
        return
    await query.answer("Sending…")
    await _edit_quietly(query, "Broadcast is being sent…")
    admin_chat = update.effective_chat.id  # type: ignore[union-attr]
    context.application.create_task(_send_broadcast(context, admin_chat, text), update=update)


async def _send_broadcast(context: ContextTypes.DEFAULT_TYPE, admin_chat: int, text: str) -> None:
    recipients = await admin_queries.broadcast_chat_ids(deps_of(context).service.db)
    delivered = failed = 0
    for chat_id in recipients:
        try:
            await context.bot.send_message(chat_id, text)
            delivered += 1
        except (Forbidden, BadRequest):  # blocked the bot, deleted account, chat not found
            failed += 1
        except TelegramError as exc:
            log.warning("broadcast to one chat failed: %s", exc.__class__.__name__)
            failed += 1
    await context.bot.send_message(admin_chat, f"Broadcast done: {delivered} delivered, {failed} failed.")


async def _edit_quietly(query: Any, text: str) -> None:
    try:
        await query.edit_message_text(text)
    except BadRequest:
        pass


# ------------------------------------------------------------------- /settings
@admin_only
async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    public = deps_of(context).settings.public_dict()
    lines = ["Live settings (secrets masked):"] + [f"{k} = {v}" for k, v in sorted(public.items())]
    await _reply(update, "\n".join(lines))



# ------------------------------------------------------------ /promote /rounds
@admin_only
async def promote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Record a model round (SPEC §3.2); every worker loads and swaps to it on its next poll,
    and a model that does not load leaves the old one serving (see /rounds)."""
    message = update.effective_message
    assert message is not None and message.text is not None and update.effective_user is not None
    parts = message.text.split(maxsplit=1)
    if len(parts) < 2:
        await _reply(update, "Usage: /promote <model directory, adapter directory or openai:URL>")
        return
    deps = deps_of(context)
    try:
        new = await rounds.promote(deps.service.db, parts[1], by=f"admin {update.effective_user.id}",
                                   now_ms=deps.service.clock())
    except Invalid as exc:
        await _reply(update, exc.message)
        return
    await _reply(update, f"Round {new.number}: {new.spec} recorded. Servers switch to it within "
                         f"{deps.settings.round_poll_seconds:g} s without a restart; /rounds shows whether it loaded.")


@admin_only
async def rounds_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    deps = deps_of(context)
    promoted = await rounds.all_rounds(deps.service.db)
    lines = [f"Round {r.number}: {r.spec} — " + (f"serving {r.model_id}" if r.model_id else
                                                  f"failed: {r.error}" if r.error else "not loaded yet")
             for r in promoted[-5:]]
    stats = await rounds.round_report(deps.service.db, deps.settings.theta)
    await _reply(update, "\n".join(lines + rounds.report_lines(stats, deps.settings.theta)))
