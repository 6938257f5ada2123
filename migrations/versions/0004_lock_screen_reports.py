"""lock screen reports: one row per lock receipt reported

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('lock_screen_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receipt_id', sa.String(length=32), nullable=False),
    sa.Column('learner_id', sa.Uuid(), nullable=False),
    sa.Column('module_id', sa.String(length=64), nullable=False),
    sa.Column('lesson_id', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=20), nullable=False),
    sa.Column('answered_version', sa.BigInteger(), nullable=False),
    sa.Column('shown_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('false_lock', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['learner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('receipt_id')
    )
    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.create_index('ix_lock_screen_reports_learner_id', ['learner_id'], unique=False)
        batch_op.create_index('ix_lock_screen_reports_reported_at', ['reported_at'], unique=False)


def downgrade():
    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.drop_index('ix_lock_screen_reports_reported_at')
        batch_op.drop_index('ix_lock_screen_reports_learner_id')
    op.drop_table('lock_screen_reports')
