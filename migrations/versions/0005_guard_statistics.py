"""rollout guard: the sequential test's plan settings (tolerated false-rollback rate,
latency margin)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

from progress.models import PLAN_DEFAULTS  # the one place the plan's defaults live


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = ('false_rollback_rate', 'latency_margin')


def upgrade():
    # Plans stored before this revision get the defaults.
    for name in COLUMNS:
        op.add_column(
            'rollout_plans',
            sa.Column(name, sa.Double(), nullable=False,
                      server_default=sa.text(repr(float(getattr(PLAN_DEFAULTS, name))))),
        )


def downgrade():
    with op.batch_alter_table('rollout_plans') as batch:
        for name in COLUMNS:
            batch.drop_column(name)
