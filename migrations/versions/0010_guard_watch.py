"""rollout guard: the watch at the last stage (its length, the baseline's days, the
baseline kept, when it completed) and a person's note on each evaluation

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

from progress.models import PLAN_DEFAULTS  # the one place the plan's defaults live


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

SETTINGS = ('watch_hours', 'baseline_days')


def upgrade():
    # Plans stored before this revision get the defaults; no baseline, not complete.
    with op.batch_alter_table('rollout_plans') as batch:
        for name in SETTINGS:
            batch.add_column(
                sa.Column(name, sa.Double(), nullable=False,
                          server_default=sa.text(repr(float(getattr(PLAN_DEFAULTS, name))))),
            )
        batch.add_column(sa.Column('baseline', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('guard_evaluations') as batch:
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch.add_column(sa.Column('noted_by', sa.String(320), nullable=True))
        batch.add_column(sa.Column('noted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('guard_evaluations') as batch:
        for name in ('noted_at', 'noted_by', 'note'):
            batch.drop_column(name)
    with op.batch_alter_table('rollout_plans') as batch:
        for name in ('completed_at', 'baseline', *SETTINGS):
            batch.drop_column(name)
