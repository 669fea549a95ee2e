"""The describe round (SPEC §3.5): `describe_tasks`, `descriptions` and
`description_ratings` (game/description_tables.py).

Revision ID: desc_0001
Revises: ph_0001
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "desc_0001"
down_revision = "ph_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "describe_tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("served_at", sa.BigInteger(), nullable=False),
        sa.Column("deadline_at", sa.BigInteger(), nullable=False),
        sa.Column("described_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_describe_tasks_player", "describe_tasks", ["player_id"])
    op.create_table(
        "descriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id"), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=True),
        sa.Column("task_id", sa.String(length=32), sa.ForeignKey("describe_tasks.id"), nullable=True),
        sa.Column("model_id", sa.String(length=256), nullable=True),
        sa.Column("based_on", sa.String(length=32), sa.ForeignKey("descriptions.id"), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )
    op.create_index("ix_descriptions_image_source", "descriptions", ["image_id", "source"])
    op.create_table(
        "description_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("description_id", sa.String(length=32), sa.ForeignKey("descriptions.id"), nullable=False),
        sa.Column("rater_player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("fits", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("description_id", "rater_player_id", name="uq_description_ratings_rater"),
    )


def downgrade() -> None:
    op.drop_table("description_ratings")
    op.drop_index("ix_descriptions_image_source", table_name="descriptions")
    op.drop_table("descriptions")
    op.drop_index("ix_describe_tasks_player", table_name="describe_tasks")
    op.drop_table("describe_tasks")
