"""guard decision counts: the decision counter kept in the database

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 20:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('guard_decision_counts',
    sa.Column('flag', sa.String(length=100), nullable=False),
    sa.Column('decision', sa.String(length=20), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('flag', 'decision')
    )


def downgrade():
    op.drop_table('guard_decision_counts')
