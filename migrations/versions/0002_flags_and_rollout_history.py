"""embedded flags and rollout history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 18:24:54.048678

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('feature_flags',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('definition', sa.Text(), nullable=False),
    sa.Column('percentage', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=320), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('rollout_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('flag', sa.String(length=100), nullable=False),
    sa.Column('backend', sa.String(length=20), nullable=False),
    sa.Column('previous_percentage', sa.Integer(), nullable=True),
    sa.Column('percentage', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('changed_by', sa.String(length=320), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('rollout_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_changes_flag'), ['flag'], unique=False)



def downgrade():
    with op.batch_alter_table('rollout_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_changes_flag'))

    op.drop_table('rollout_changes')
    op.drop_table('feature_flags')
