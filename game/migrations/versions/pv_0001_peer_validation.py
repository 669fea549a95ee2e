"""Peer validation of finds (SPEC §3.3): the `validations` votes and the per-find
`validation_posteriors` written by `gap evaluate` (game/tables.py, game/validation.py).

Revision ID: pv_0001
Revises: e7_0001
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "pv_0001"
down_revision = "e7_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("answer_id", sa.String(length=32), sa.ForeignKey("answers.id"), nullable=False),
        sa.Column("validator_player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("agrees", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("answer_id", "validator_player_id", name="uq_validations_answer_validator"),
    )
    op.create_index("ix_validations_validator", "validations", ["validator_player_id"])
    op.create_table(
        "validation_posteriors",
        sa.Column("answer_id", sa.String(length=32), sa.ForeignKey("answers.id"), nullable=False),
        sa.Column("prior", sa.Float(), nullable=False),
        sa.Column("posterior", sa.Float(), nullable=False),
        sa.Column("votes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("answer_id"),
    )


def downgrade() -> None:
    op.drop_table("validation_posteriors")
    op.drop_index("ix_validations_validator", table_name="validations")
    op.drop_table("validations")
