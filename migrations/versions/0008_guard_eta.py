"""guard eta: each evaluation keeps its estimate of when the guard will decide

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 07:25:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # Evaluations kept before this have no estimate: null, as "cannot tell".
    with op.batch_alter_table('guard_evaluations') as batch:
        batch.add_column(sa.Column('eta', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('guard_evaluations') as batch:
        batch.drop_column('eta')
