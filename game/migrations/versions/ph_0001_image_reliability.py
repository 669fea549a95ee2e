"""The ways an image becomes reliable (SPEC §1.2): an operator's declaration and the
crowd's posterior of the model's accuracy, beside the ground-truth measurement
(game/tables.py `images`, game/evaluation_tables.py `crowd_counts`; game/crowd_reliability.py
writes the crowd columns).

Revision ID: ph_0001
Revises: duel_0001
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ph_0001"
down_revision = "duel_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("declared_reliable", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("images", sa.Column("crowd_verdicts", sa.Integer(), nullable=True))
    op.add_column("images", sa.Column("crowd_accuracy", sa.Float(), nullable=True))
    op.add_column("images", sa.Column("crowd_lower", sa.Float(), nullable=True))
    op.create_table(
        "crowd_counts",
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("n_correct", sa.Integer(), nullable=False),
        sa.Column("n_wrong", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "player_id"),
    )


def downgrade() -> None:
    op.drop_table("crowd_counts")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("crowd_lower")
        batch.drop_column("crowd_accuracy")
        batch.drop_column("crowd_verdicts")
        batch.drop_column("declared_reliable")
