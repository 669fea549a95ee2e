"""Evaluation tables (SPEC §2): sufficient statistics, player estimates, finds and
their posterior cells, the evaluation watermark, and an index on answers.judged_at (game/evaluation_tables.py).

Revision ID: e7_0001
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e7_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_counts",
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("grp", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("player_id", "grp", "kind", "flagged"),
    )
    op.create_table(
        "player_estimates",
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("n_tainted", sa.Integer(), nullable=False),
        sa.Column("n_honest_tainted", sa.Integer(), nullable=False),
        sa.Column("n_untainted", sa.Integer(), nullable=False),
        sa.Column("n_finds", sa.Integer(), nullable=False),
        sa.Column("s_alpha", sa.Float(), nullable=False),
        sa.Column("s_beta", sa.Float(), nullable=False),
        sa.Column("f_alpha", sa.Float(), nullable=False),
        sa.Column("f_beta", sa.Float(), nullable=False),
        sa.Column("s_mean", sa.Float(), nullable=False),
        sa.Column("s_lower", sa.Float(), nullable=False),
        sa.Column("f_mean", sa.Float(), nullable=False),
        sa.Column("f_upper", sa.Float(), nullable=False),
        sa.Column("muted", sa.Boolean(), nullable=False),
        sa.Column("gated", sa.Boolean(), nullable=False),
        sa.Column("ability", sa.Float(), nullable=True),
        sa.Column("ability_se", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("player_id"),
    )
    op.create_table(
        "find_answers",
        sa.Column("answer_id", sa.String(length=32), sa.ForeignKey("answers.id"), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("grp", sa.String(length=64), nullable=False),
        sa.Column("question_type", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("answer_id"),
    )
    op.create_index("ix_find_answers_cell", "find_answers", ["player_id", "grp"])
    op.create_table(
        "find_cells",
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("grp", sa.String(length=64), nullable=False),
        sa.Column("posterior", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("player_id", "grp"),
    )
    op.create_index("ix_answers_judged_at", "answers", ["judged_at"])
    op.create_table(
        "eval_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("eval_state")
    op.drop_index("ix_answers_judged_at", table_name="answers")
    op.drop_table("find_cells")
    op.drop_index("ix_find_answers_cell", table_name="find_answers")
    op.drop_table("find_answers")
    op.drop_table("player_estimates")
    op.drop_table("eval_counts")
