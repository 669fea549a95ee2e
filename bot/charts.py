"""The /stats picture: three small panels rendered to PNG with matplotlib's Agg
canvas (no display, no pyplot global state, safe in a worker thread)."""
from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def stats_png(
    sessions_per_day: Sequence[tuple[int, int]],
    reliabilities: Sequence[float],
    images_reached: Sequence[int],
    *,
    images_per_session: int = 10,
    duel_seconds: Sequence[float] = (),
    duel_min_seconds: float = 0.0,
) -> bytes:
    """PNG bytes: sessions per day, histogram of player reliability (s), images reached per session,
    and the time per duel (SPEC §3.4) with the minimum time marked."""
    fig = Figure(figsize=(16, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_days, ax_rel, ax_reach, ax_duel = fig.subplots(1, 4)

    days = [dt.date(1970, 1, 1) + dt.timedelta(days=d) for d, _ in sessions_per_day]
    ax_days.bar(days, [n for _, n in sessions_per_day], color="#3b82f6")
    ax_days.set_title("Sessions per day")
    ax_days.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax_days.set_ylabel("sessions")

    ax_rel.hist(list(reliabilities), bins=[i / 10 for i in range(11)], color="#10b981", edgecolor="white")
    ax_rel.set_xlim(0, 1)
    ax_rel.set_title(f"Player reliability (n={len(reliabilities)})")
    ax_rel.set_xlabel("share of deliberate mistakes caught (s)")
    ax_rel.set_ylabel("players")

    ax_reach.hist(list(images_reached), bins=[i + 0.5 for i in range(images_per_session + 1)],
                  color="#f59e0b", edgecolor="white")
    ax_reach.set_xticks(range(1, images_per_session + 1))
    ax_reach.set_title(f"Images reached per session (n={len(images_reached)})")
    ax_reach.set_xlabel("images")
    ax_reach.set_ylabel("sessions")

    top = max([duel_min_seconds * 4, 10.0] + [min(s, 60.0) for s in duel_seconds])
    ax_duel.hist([min(s, top) for s in duel_seconds], bins=30, range=(0, top), color="#8b5cf6", edgecolor="white")
    if duel_min_seconds:
        ax_duel.axvline(duel_min_seconds, color="#ef4444", linestyle="--", label="minimum time")
        ax_duel.legend(fontsize=7)
    ax_duel.set_title(f"Seconds per duel (n={len(duel_seconds)})")
    ax_duel.set_xlabel("seconds")
    ax_duel.set_ylabel("duels")

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
