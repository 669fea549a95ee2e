"""Running in public: the shared `rate_limits` counters, players' bans and the networks
new sessions came from (game/limits.py), and the bot's chat-side state (game/chat_state.py).

Revision ID: ab_0001
Revises: desc_0001
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ab_0001"
down_revision = "desc_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("bucket", sa.String(length=160), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start"),
    )
    op.create_table(
        "chat_state",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "name"),
    )
    op.create_table(
        "player_networks",
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("player_id", sa.Integer(), sa.ForeignKey("players.id"), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("network", "player_id"),
    )
    op.create_index("ix_player_networks_seen", "player_networks", ["network", "last_seen"])
    with op.batch_alter_table("players") as batch:
        batch.add_column(sa.Column("banned_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("ban_reason", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("players") as batch:
        batch.drop_column("ban_reason")
        batch.drop_column("banned_at")
    op.drop_table("chat_state")
    op.drop_index("ix_player_networks_seen", table_name="player_networks")
    op.drop_table("player_networks")
    op.drop_table("rate_limits")
