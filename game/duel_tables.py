"""Tables of preference duels (SPEC §3.4), on the game's shared metadata; created by the
Alembic revision `duel_0001`. A *pair* is one duel (two sides and a prompt) that several
players judge; a *batch* is a player's five duels; a *duel item* is one pair shown to one
player, with the side arrangement, the time it was shown and the choice. Nothing here is
ever deleted by the game."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from game.tables import metadata

# Pictures made for caption duels (procedural scenes and their near misses, imported pairs).
# Kept apart from `images` so they never enter the GAP game's pools.
duel_images = Table(
    "duel_images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("opaque_id", String(32), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("mime", String(32), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("scene_json", Text),                       # ground truth when procedural
    Column("created_at", BigInteger, nullable=False),
)

# One duel. Sides are "a" and "b"; a side is a duel image (caption duels) or a text (answer
# duels, about `image_id` of the game's pool). On gold pairs side "a" is right by
# construction; `truth` is the right side when known from a scene graph (reference only:
# it never scores anybody, it measures the aggregates).
duel_pairs = Table(
    "duel_pairs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pair_key", String(64), nullable=False, unique=True),   # content hash: no duplicate pairs
    Column("kind", String(16), nullable=False),                     # "caption" | "answer"
    Column("source", String(32), nullable=False),                   # near_miss, imported, tainted, models, correction, gold
    Column("gold", Boolean, nullable=False),
    Column("prompt", Text, nullable=False),                         # the caption or the question
    Column("image_id", Integer, ForeignKey("images.id")),           # answer duels: the picture asked about
    Column("a_image_id", Integer, ForeignKey("duel_images.id")),
    Column("b_image_id", Integer, ForeignKey("duel_images.id")),
    Column("a_text", Text),
    Column("b_text", Text),
    Column("a_key", String(64), nullable=False),                    # item ids for Bradley–Terry
    Column("b_key", String(64), nullable=False),
    Column("truth", String(1)),                                     # "a" | "b" | None
    Column("answer_id", String(32), ForeignKey("answers.id")),      # where an answer duel came from
    Column("created_at", BigInteger, nullable=False),
    Index("ix_duel_pairs_gold_kind", "gold", "kind"),
)

duel_batches = Table(
    "duel_batches",
    metadata,
    Column("id", String(32), primary_key=True),                     # opaque random id
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("status", String(16), nullable=False),                   # "playing" | "finished"
    Column("current_index", Integer, nullable=False),
    Column("points", Integer),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Index("ix_duel_batches_player", "player_id"),
    Index("ux_duel_batches_one_playing", "player_id", unique=True,
          sqlite_where=text("status = 'playing'"), postgresql_where=text("status = 'playing'")),
)

duel_items = Table(
    "duel_items",
    metadata,
    Column("id", String(32), primary_key=True),                     # opaque random id
    Column("batch_id", String(32), ForeignKey("duel_batches.id"), nullable=False),
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("pair_id", Integer, ForeignKey("duel_pairs.id"), nullable=False),
    Column("swapped", Boolean, nullable=False),                     # side "b" shown on the left
    Column("shown_at", BigInteger),                                 # when it became the current duel
    Column("chosen_at", BigInteger),
    Column("choice", String(1)),                                    # "a" | "b"
    Column("correct", Boolean),                                     # gold only
    Column("elapsed_ms", Integer),                                  # time per item
    Column("too_fast", Integer, nullable=False),                    # refused choices under the minimum time
    UniqueConstraint("batch_id", "position", name="uq_duel_items_batch_position"),
    UniqueConstraint("player_id", "pair_id", name="uq_duel_items_player_pair"),
    Index("ix_duel_items_pair", "pair_id"),
)

# Per-player duel standing: removal is permanent; the tutorial is shown once.
duel_players = Table(
    "duel_players",
    metadata,
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("tutorial_done_at", BigInteger),
    Column("removed_at", BigInteger),
)
