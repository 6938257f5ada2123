"""the review set and XP: lessons' words and XP, completions' XP and idempotency keys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    # Lessons seeded before this grant the default until the course is seeded again.
    with op.batch_alter_table('lessons') as batch:
        batch.add_column(sa.Column('xp', sa.Integer(), nullable=False, server_default='10'))
    op.create_table('lesson_words',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=200), nullable=False),
    sa.Column('translation', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['lesson_id'], ['lessons.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lesson_id', 'position')
    )
    with op.batch_alter_table('lesson_progress') as batch:
        batch.add_column(sa.Column('xp_earned', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('idempotency_key', sa.String(length=64), nullable=True))
    with op.batch_alter_table('progress_versions') as batch:
        batch.add_column(sa.Column('xp_total', sa.BigInteger(), nullable=False, server_default='0'))
    # Completions made before XP existed grant their lesson's XP now, so that every
    # learner's total is the sum of their completions' XP from the start.
    op.execute(
        "UPDATE lesson_progress SET xp_earned = "
        "(SELECT lessons.xp FROM lessons WHERE lessons.id = lesson_progress.lesson_id)"
    )
    op.execute(
        "UPDATE progress_versions SET xp_total = COALESCE((SELECT SUM(lesson_progress.xp_earned)"
        " FROM lesson_progress WHERE lesson_progress.user_id = progress_versions.user_id), 0)"
    )


def downgrade():
    with op.batch_alter_table('progress_versions') as batch:
        batch.drop_column('xp_total')
    with op.batch_alter_table('lesson_progress') as batch:
        batch.drop_column('idempotency_key')
        batch.drop_column('xp_earned')
    op.drop_table('lesson_words')
    with op.batch_alter_table('lessons') as batch:
        batch.drop_column('xp')
