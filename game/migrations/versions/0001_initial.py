"""Initial schema: exactly game/tables.py (SPEC §1.4), plus the uniqueness rules that keep
several workers correct (one playing session per player, one pending answer per
image, one award per answer and reason).

Revision ID: 0001
Revises: 
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('opaque_id', sa.String(length=32), nullable=False),
    sa.Column('pool', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=512), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('mime', sa.String(length=32), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('complexity', sa.String(length=16), nullable=True),
    sa.Column('scene_json', sa.Text(), nullable=True),
    sa.Column('annotations_json', sa.Text(), nullable=True),
    sa.Column('model_accuracy', sa.Float(), nullable=True),
    sa.Column('reliable', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('opaque_id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_table('players',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('player_key', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=True),
    sa.Column('referrer', sa.String(length=64), nullable=True),
    sa.Column('muted', sa.Boolean(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('player_key')
    )
    op.create_table('requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('response_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('player_id', 'request_id')
    )
    op.create_table('sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('current_index', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_player_status', ['player_id', 'status'], unique=False)
        batch_op.create_index('ux_sessions_one_playing', ['player_id'], unique=True, sqlite_where=sa.text("status = 'playing'"), postgresql_where=sa.text("status = 'playing'"))

    op.create_table('session_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('tainted', sa.Boolean(), nullable=False),
    sa.Column('served_at', sa.BigInteger(), nullable=True),
    sa.Column('deadline_at', sa.BigInteger(), nullable=True),
    sa.Column('ended_at', sa.BigInteger(), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id', 'position')
    )
    op.create_table('answers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('session_image_id', sa.Integer(), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('question_type', sa.String(length=16), nullable=True),
    sa.Column('honest_answer', sa.Text(), nullable=False),
    sa.Column('served_answer', sa.Text(), nullable=False),
    sa.Column('tainted', sa.Boolean(), nullable=False),
    sa.Column('strategy', sa.String(length=16), nullable=True),
    sa.Column('model_id', sa.String(length=256), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=True),
    sa.Column('correction', sa.Text(), nullable=True),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('asked_at', sa.BigInteger(), nullable=False),
    sa.Column('judged_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ),
    sa.ForeignKeyConstraint(['session_image_id'], ['session_images.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.create_index('ix_answers_player', ['player_id'], unique=False)
        batch_op.create_index('ix_answers_session', ['session_id'], unique=False)
        batch_op.create_index('ix_answers_session_image', ['session_image_id'], unique=False)
        batch_op.create_index('ux_answers_one_pending', ['session_image_id'], unique=True, sqlite_where=sa.text('verdict IS NULL'), postgresql_where=sa.text('verdict IS NULL'))

    op.create_table('points_ledger',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('player_id', sa.Integer(), nullable=False),
    sa.Column('answer_id', sa.String(length=32), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['answer_id'], ['answers.id'], ),
    sa.ForeignKeyConstraint(['player_id'], ['players.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('answer_id', 'reason', name='uq_points_answer_reason')
    )
    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.create_index('ix_points_created', ['created_at'], unique=False)
        batch_op.create_index('ix_points_player', ['player_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('points_ledger', schema=None) as batch_op:
        batch_op.drop_index('ix_points_player')
        batch_op.drop_index('ix_points_created')

    op.drop_table('points_ledger')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_index('ux_answers_one_pending', sqlite_where=sa.text('verdict IS NULL'), postgresql_where=sa.text('verdict IS NULL'))
        batch_op.drop_index('ix_answers_session_image')
        batch_op.drop_index('ix_answers_session')
        batch_op.drop_index('ix_answers_player')

    op.drop_table('answers')
    op.drop_table('session_images')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ux_sessions_one_playing', sqlite_where=sa.text("status = 'playing'"), postgresql_where=sa.text("status = 'playing'"))
        batch_op.drop_index('ix_sessions_player_status')

    op.drop_table('sessions')
    op.drop_table('requests')
    op.drop_table('players')
    op.drop_table('images')
