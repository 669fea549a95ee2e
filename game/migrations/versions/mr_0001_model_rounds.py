"""Model rounds (SPEC §3.2): the `model_rounds` table that web workers follow to hot-swap the
serving model (game/tables.py, game/rounds.py).

Revision ID: mr_0001
Revises: pv_0001
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mr_0001"
down_revision = "pv_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.String(length=1000), nullable=False),
        sa.Column("promoted_by", sa.String(length=64), nullable=True),
        sa.Column("promoted_at", sa.BigInteger(), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("model_rounds")
