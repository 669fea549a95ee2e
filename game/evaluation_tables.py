"""Tables of the evaluation (SPEC §2), on the game's shared metadata; created by the
Alembic revision `e7_0001` in game/migrations/versions. The evaluation is
incremental: `eval_counts` holds the sufficient statistics of every answer
evaluated so far and `eval_state` the watermark, so a run only reads new answers."""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text, and_, func, select

from game import tables as T
from game.tables import metadata

# Sufficient statistics: judged answers per (player, π-stratum, kind, flagged).
# kind: 0 tainted answer, 1 honest answer on a tainted image, 2 answer on an untainted image.
eval_counts = Table(
    "eval_counts",
    metadata,
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("grp", String(64), primary_key=True),     # "" for gold kinds, else "<complexity>:<question type>"
    Column("kind", Integer, primary_key=True),
    Column("flagged", Boolean, primary_key=True),
    Column("n", Integer, nullable=False),
)

player_estimates = Table(
    "player_estimates",
    metadata,
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("n_tainted", Integer, nullable=False),        # tainted answers judged (sensitivity data)
    Column("n_honest_tainted", Integer, nullable=False),  # honest answers on tainted images judged
    Column("n_untainted", Integer, nullable=False),
    Column("n_finds", Integer, nullable=False),
    Column("s_alpha", Float, nullable=False),
    Column("s_beta", Float, nullable=False),
    Column("f_alpha", Float, nullable=False),
    Column("f_beta", Float, nullable=False),
    Column("s_mean", Float, nullable=False),
    Column("s_lower", Float, nullable=False),
    Column("f_mean", Float, nullable=False),
    Column("f_upper", Float, nullable=False),
    Column("muted", Boolean, nullable=False),           # anti-gaming mute: flags kept, never exported
    Column("gated", Boolean, nullable=False),           # gold gating: finds held
    Column("ability", Float),                            # player model μ + a (logit), when fitted
    Column("ability_se", Float),
    Column("updated_at", BigInteger, nullable=False),
)

# Every find (a flag on an untainted image) with its cell. A find's posterior depends only on
# its cell (player, π-stratum), so posteriors are stored once per cell in `find_cells` and a
# refit rewrites a few thousand cells, not every find; `answer_posteriors` joins them.
find_answers = Table(
    "find_answers",
    metadata,
    Column("answer_id", String(32), ForeignKey("answers.id"), primary_key=True),
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("grp", String(64), nullable=False),
    Column("question_type", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_find_answers_cell", "player_id", "grp"),
)

find_cells = Table(
    "find_cells",
    metadata,
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("grp", String(64), primary_key=True),
    Column("posterior", Float, nullable=False),          # P(M=0 | H=0, D=U) for this player and stratum
    Column("status", String(16), nullable=False),        # "ok" | "muted" | "held"
    Column("updated_at", BigInteger, nullable=False),
)

# The incremental read selects answers judged after the watermark.
Index("ix_answers_judged_at", T.answers.c.judged_at)

eval_state = Table(
    "eval_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),               # JSON
)


def answer_posteriors_query():
    """Per-answer posteriors: (answer_id, player_id, grp, question_type, posterior, status).
    A find that other players voted on (peer validation, game/validation.py) has its cell
    posterior updated by the votes in `validation_posteriors`; that one wins."""
    vp = T.validation_posteriors
    return (select(find_answers.c.answer_id, find_answers.c.player_id, find_answers.c.grp,
                   find_answers.c.question_type,
                   func.coalesce(vp.c.posterior, find_cells.c.posterior).label("posterior"), find_cells.c.status)
            .select_from(find_answers.join(find_cells, and_(find_cells.c.player_id == find_answers.c.player_id,
                                                            find_cells.c.grp == find_answers.c.grp))
                         .outerjoin(vp, vp.c.answer_id == find_answers.c.answer_id)))

# The crowd's evidence about the model on each image (SPEC §1.2, "measured by the crowd"):
# verdicts on untainted answers per (image, judging player), added incrementally like
# eval_counts; game/crowd_reliability.py turns them into a posterior of the model's accuracy.
crowd_counts = Table(
    "crowd_counts",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id"), primary_key=True),
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("n_correct", Integer, nullable=False),     # judged Correct
    Column("n_wrong", Integer, nullable=False),       # judged Wrong, with a correction
)
