"""rollout guard: plans and evaluations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:12:31.418112

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rollout_plans',
    sa.Column('flag', sa.String(length=100), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('min_stage_seconds', sa.Integer(), nullable=False),
    sa.Column('min_completions', sa.Integer(), nullable=False),
    sa.Column('min_access_checks', sa.Integer(), nullable=False),
    sa.Column('auto_advance', sa.Boolean(), nullable=False),
    sa.Column('on_failure', sa.String(length=20), nullable=False),
    sa.Column('success_rate_margin', sa.Double(), nullable=False),
    sa.Column('p95_budget_seconds', sa.Double(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('ready', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=320), nullable=False),
    sa.PrimaryKeyConstraint('flag')
    )
    op.create_table('guard_evaluations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flag', sa.String(length=100), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('percentage', sa.Integer(), nullable=False),
    sa.Column('window_seconds', sa.Integer(), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('decision', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('acted', sa.Boolean(), nullable=False),
    sa.Column('instance', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('guard_evaluations', schema=None) as batch_op:
        batch_op.create_index('ix_guard_evaluations_flag_id', ['flag', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('guard_evaluations', schema=None) as batch_op:
        batch_op.drop_index('ix_guard_evaluations_flag_id')

    op.drop_table('guard_evaluations')
    op.drop_table('rollout_plans')
