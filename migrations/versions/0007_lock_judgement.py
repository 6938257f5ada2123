"""lock judgement: each completion's version and acknowledgement, each report's judgement

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 07:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# Completions bump the version one at a time, so a completion's version is its rank among the
# learner's completions in commit order (completed_at, then id).
VERSION_BY_RANK = sa.text(
    "UPDATE lesson_progress SET version = ("
    " SELECT count(*) FROM lesson_progress AS earlier"
    " WHERE earlier.user_id = lesson_progress.user_id"
    " AND (earlier.completed_at < lesson_progress.completed_at"
    " OR (earlier.completed_at = lesson_progress.completed_at"
    " AND earlier.id <= lesson_progress.id)))"
)


def upgrade():
    with op.batch_alter_table('lesson_progress', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(VERSION_BY_RANK)
    # Their commits returned long ago; the moment before it is the nearest one kept.
    op.execute("UPDATE lesson_progress SET acknowledged_at = completed_at")
    with op.batch_alter_table('lesson_progress', schema=None) as batch_op:
        batch_op.alter_column('version', existing_type=sa.BigInteger(), nullable=False)

    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_version', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('read_began_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('judgement', sa.String(length=16), nullable=True))
    # Reports judged before: their receipts held only the answer's time.
    op.execute("UPDATE lock_screen_reports SET read_began_at = shown_at")
    op.execute(
        "UPDATE lock_screen_reports SET judgement = "
        "CASE WHEN false_lock THEN 'false_lock' ELSE 'true_lock' END"
    )
    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.alter_column('read_began_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column('judgement', existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column('false_lock')


def downgrade():
    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('false_lock', sa.Boolean(), nullable=True))
    op.execute(
        "UPDATE lock_screen_reports SET false_lock = "
        "CASE WHEN judgement = 'false_lock' THEN true ELSE false END"
    )
    with op.batch_alter_table('lock_screen_reports', schema=None) as batch_op:
        batch_op.alter_column('false_lock', existing_type=sa.Boolean(), nullable=False)
        batch_op.drop_column('judgement')
        batch_op.drop_column('read_began_at')
        batch_op.drop_column('min_version')

    with op.batch_alter_table('lesson_progress', schema=None) as batch_op:
        batch_op.drop_column('acknowledged_at')
        batch_op.drop_column('version')
