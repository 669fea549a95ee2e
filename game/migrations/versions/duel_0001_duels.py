"""Preference duels (SPEC §3.4): duel images, pairs, batches, items and player standing
(game/duel_tables.py).

Revision ID: duel_0001
Revises: mr_0001
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "duel_0001"
down_revision = "mr_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "duel_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("opaque_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("mime", sa.String(length=32), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("scene_json", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("opaque_id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "duel_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("gold", sa.Boolean(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=True),
        sa.Column("a_image_id", sa.Integer(), sa.ForeignKey("duel_images.id"), nullable=True),
        sa.Column("b_image_id", sa.Integer(), sa.ForeignKey("duel_images.id"), nullable=True),
        sa.Column("a_text", sa.Text(), nullable=True),
        sa.Column("b_text", sa.Text(), nullable=True),
        sa.Column("a_key", sa.String(length=64), nullable=False),
        sa.Column("b_key", sa.String(length=64), nullable=False),
        sa.Column("truth", sa.String(length=1), nullable=True),
        sa.Column("answer_id", sa.String(length=32), sa.ForeignKey("answers.id"), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pair_key"),
    )
    op.create_index("ix_duel_pairs_gold_kind", "duel_pairs", ["gold", "kind"])
    op.create_table(
        "duel_batches",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_index", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_duel_batches_player", "duel_batches", ["player_id"])
    op.create_index("ux_duel_batches_one_playing", "duel_batches", ["player_id"], unique=True,
                    sqlite_where=sa.text("status = 'playing'"), postgresql_where=sa.text("status = 'playing'"))
    op.create_table(
        "duel_items",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("batch_id", sa.String(length=32), sa.ForeignKey("duel_batches.id"), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), sa.ForeignKey("duel_pairs.id"), nullable=False),
        sa.Column("swapped", sa.Boolean(), nullable=False),
        sa.Column("shown_at", sa.BigInteger(), nullable=True),
        sa.Column("chosen_at", sa.BigInteger(), nullable=True),
        sa.Column("choice", sa.String(length=1), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.Column("too_fast", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_id", "position", name="uq_duel_items_batch_position"),
        sa.UniqueConstraint("player_id", "pair_id", name="uq_duel_items_player_pair"),
    )
    op.create_index("ix_duel_items_pair", "duel_items", ["pair_id"])
    op.create_table(
        "duel_players",
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("tutorial_done_at", sa.BigInteger(), nullable=True),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("player_id"),
    )


def downgrade() -> None:
    op.drop_table("duel_players")
    op.drop_index("ix_duel_items_pair", table_name="duel_items")
    op.drop_table("duel_items")
    op.drop_index("ux_duel_batches_one_playing", table_name="duel_batches")
    op.drop_index("ix_duel_batches_player", table_name="duel_batches")
    op.drop_table("duel_batches")
    op.drop_index("ix_duel_pairs_gold_kind", table_name="duel_pairs")
    op.drop_table("duel_pairs")
    op.drop_table("duel_images")
