"""Tables of the describe round (SPEC §3.5), on the game's shared metadata; created by
the Alembic revision `desc_0001` in game/migrations/versions.

- `describe_tasks`: an image served to a player to describe, with its server-side
  deadline (the client only displays it, as for the session timer of SPEC §1.1).
- `descriptions`: every description of an image, whatever wrote it — a player
  ("crowd", with the task and the seconds taken), the model ("model", honest, with
  its measured compute seconds) or the model rewriting a player's text ("rewrite",
  `based_on` the crowd description). `points` is what the writer was paid (crowd
  only; paid once, on peer confirmation).
- `description_ratings`: other players' votes "does this description fit the picture?"
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from game.tables import metadata

describe_tasks = Table(
    "describe_tasks",
    metadata,
    Column("id", String(32), primary_key=True),          # opaque random id, the only one the client sees
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("served_at", BigInteger, nullable=False),
    Column("deadline_at", BigInteger, nullable=False),
    Column("described_at", BigInteger),                  # set once, with the description
    Index("ix_describe_tasks_player", "player_id"),
)

descriptions = Table(
    "descriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("source", String(16), nullable=False),        # "crowd" | "model" | "rewrite"
    Column("player_id", Integer, ForeignKey("players.id")),  # crowd only
    Column("task_id", String(32), ForeignKey("describe_tasks.id"), unique=True),  # crowd: one per task
    Column("model_id", String(256)),                     # model and rewrite
    Column("based_on", String(32), ForeignKey("descriptions.id")),  # rewrite: the crowd description
    Column("text", Text, nullable=False),
    Column("seconds", Float, nullable=False),            # crowd: time taken; model: compute seconds
    Column("points", Integer, nullable=False, default=0),  # paid to the writer (crowd), once
    Column("request_id", String(128)),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_descriptions_image_source", "image_id", "source"),
)

description_ratings = Table(
    "description_ratings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("description_id", String(32), ForeignKey("descriptions.id"), nullable=False),
    Column("rater_player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("fits", Boolean, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("description_id", "rater_player_id", name="uq_description_ratings_rater"),
)
