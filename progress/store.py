"""Progress reads and writes against the database: the primary, an optional replica, versions.

It knows nothing of HTTP, flags or the cache's policy; it returns snapshots.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute

from . import faults, invalidation, metrics
from .cache import ProgressSnapshot
from .curriculum import Curriculum, LessonRef, is_lesson_accessible
from .exceptions import ProgressError
from .extensions import db
from .models import LessonProgress, ProgressVersion, User, utcnow
from .replica import replay_position, replica_health

log = logging.getLogger(__name__)


class LessonLocked(ProgressError):
    """The learner may not complete a lesson whose predecessor is incomplete."""

    status, code = 409, "lesson_locked"
    default_message = "Complete the previous lesson first."


@dataclass(frozen=True, slots=True)
class Completion:
    version: int
    completed_at: datetime
    xp_earned: int  # granted by this request: 0 for a repeat (unless a retry of the same key)
    xp_total: int  # the learner's total as this answer's transaction (or read) saw it
    # A WAL position (bytes) the commit of `version` can't be past, read on the primary after
    # it: a replica that has replayed it holds `version`. None: unknown (SQLite, or the read
    # failed).
    position: int | None = None


@dataclass(frozen=True, slots=True)
class CompletionRecord:
    """One completed lesson as a lock report is judged against it."""

    version: int  # the learner's version this completion made
    completed_at: datetime  # stamped before its commit
    acknowledged_at: datetime | None  # stamped after its commit returned; None: unknown


def insert(table: type[db.Model]) -> postgresql.Insert | sqlite.Insert:
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def prune_older_than(
    at: InstrumentedAttribute[datetime], retention_days: int, *where: sa.ColumnElement[bool]
) -> int:
    """Delete the rows of `at`'s table whose `at` is older than the retention (and match
    `where`), in the caller's transaction; how many went. The guard's evaluations and the
    lock screen reports are kept this way."""
    cutoff = utcnow() - timedelta(days=retention_days)
    result = db.session.execute(
        sa.delete(at.class_).where(at < cutoff, *where).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def ensure_user(user_id: uuid.UUID, email: str, email_verified: bool) -> None:
    """Create the learner (and their version row) the first time the identity provider
    vouches for them; keep email and verification in step afterwards."""
    upsert = insert(User).values(id=user_id, email=email, email_verified=email_verified)
    db.session.execute(
        upsert.on_conflict_do_update(
            index_elements=[User.id],
            set_={"email": email, "email_verified": email_verified},
            # A learner another worker already created: no new row version when unchanged.
            where=sa.or_(User.email != email, User.email_verified != email_verified),
        )
    )
    db.session.execute(
        insert(ProgressVersion)
        .values(user_id=user_id, version=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=[ProgressVersion.user_id])
    )
    db.session.commit()


# Built once: constructing the select on every cold check cost more CPU than running it.
_PROGRESS = (
    sa.select(
        ProgressVersion.version,
        ProgressVersion.xp_total,
        LessonProgress.lesson_id,
        LessonProgress.completed_at,
    )
    .select_from(ProgressVersion)
    .outerjoin(LessonProgress, LessonProgress.user_id == ProgressVersion.user_id)
    .where(ProgressVersion.user_id == sa.bindparam("learner_id"))
)


# The replica's read also returns how far it has replayed, in the same round trip: an
# position is one row joined to the learner's, so it comes even for a learner the replica
# doesn't hold yet (a new learner's first reads). NULL on a database that is not a streaming
# standby (the position stays unknown).
_REPLAYED = sa.select(
    sa.literal_column("(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint", sa.BigInteger).label(
        "replayed"
    )
).subquery("replayed")
_LEARNER_ROWS = _PROGRESS.subquery("learner_rows")
_REPLICA_PROGRESS = sa.select(_LEARNER_ROWS, _REPLAYED.c.replayed).select_from(
    _REPLAYED.outerjoin(_LEARNER_ROWS, sa.true())
)
# The primary's insert position: at or past the end of every commit record already written.
_INSERT_POSITION = sa.literal_column(
    "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint", sa.BigInteger
)


def has_replica() -> bool:
    """A replica is configured and not set aside after a failure (progress/replica.py)."""
    return "replica" in db.engines and replica_health().usable()


def replica_cannot_say_its_position() -> bool:
    """The replica's reads report no replay position: it is not a streaming standby."""
    return replay_position().cannot_say


def replica_position_unasked() -> bool:
    """This worker hasn't heard the replica's replay position since it started or since the
    replica failed: a replica read would tell it."""
    return replay_position().unasked


def replica_has_replayed(position: int) -> bool:
    """The replica is known (from this worker's latest replica read) to be at or past
    `position`."""
    return replay_position().has_replayed(position)


def load_progress(
    learner_id: uuid.UUID,
    *,
    path: str,
    reason: str,
    replica: bool = False,
) -> ProgressSnapshot:
    """One statement, so the version and the completions come from one snapshot. Counted in
    progress_reads_total by the database that answered, with `reason` (why this target; a
    replica read that fell back says so itself)."""
    faults.before_db_read()
    rows = None
    if replica and not has_replica():
        reason = "no_replica"
    elif replica:
        started = time.perf_counter()
        try:
            joined = _read(db.engines["replica"], learner_id, _REPLICA_PROGRESS)
            replica_health().answered()
            metrics.reads.labels(path, "replica", reason).inc()
            replay_position().report(joined[0].replayed)
            rows = [row for row in joined if row.version is not None]  # none: not there yet
        except OperationalError as exc:  # down, or hung past the deadline: the primary answers
            replica_health().failed(exc)
            replay_position().forget()
            reason = "replica_failed"
        metrics.progress_read_seconds.labels("replica").observe(time.perf_counter() - started)
    if rows is None:
        started = time.perf_counter()
        rows = _read(db.engine, learner_id, _PROGRESS)
        metrics.progress_read_seconds.labels("primary").observe(time.perf_counter() - started)
        metrics.reads.labels(path, "primary", reason).inc()
    version = rows[0].version if rows else 0
    xp_total = rows[0].xp_total if rows else 0
    completed = {row.lesson_id: row.completed_at for row in rows if row.lesson_id is not None}
    return ProgressSnapshot(learner_id, version, MappingProxyType(completed), xp_total=xp_total)


def _read(engine: sa.Engine, learner_id: uuid.UUID, statement: sa.Select) -> Sequence[sa.Row]:
    """One statement outside a transaction: a single statement already reads one snapshot,
    and autocommit saves the BEGIN and ROLLBACK round trips around it."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(statement, {"learner_id": learner_id}).all()


def mark_lesson_completed(
    learner_id: uuid.UUID,
    lesson: LessonRef,
    curriculum: Curriculum,
    idempotency_key: str | None = None,
) -> Completion:
    """Record a completion, grant its XP and bump the version in one transaction;
    idempotent: a lesson already completed grants nothing again.

    XP is not a second write after the completion (the old app's "flush"): the XP earned
    goes on the completion's row and into the learner's total in the same transaction, so
    the two can never disagree, and the row lock (PostgreSQL) or the unique completion
    (SQLite) that makes the completion happen once makes the grant happen once.

    Raises LessonLocked (and writes nothing) when the lesson is not yet open.
    """
    session = db.session
    try:
        # Row lock on PostgreSQL: one learner's completions commit one at a time, so the
        # unlock check below sees every earlier completion.
        version = session.scalar(
            sa.select(ProgressVersion.version)
            .where(ProgressVersion.user_id == learner_id)
            .with_for_update()
        )
        if version is None:
            raise LookupError(f"learner {learner_id} has no progress row; call ensure_user")
        completed = dict(
            session.execute(
                sa.select(LessonProgress.lesson_id, LessonProgress.completed_at).where(
                    LessonProgress.user_id == learner_id
                )
            ).all()
        )
        if lesson.id in completed:
            session.rollback()
            # Read again, in one statement: on SQLite (no row lock) the version read above
            # can predate the concurrent completion that the second read already sees.
            return _existing_completion(learner_id, lesson, idempotency_key)
        if not is_lesson_accessible(curriculum, completed, lesson):
            session.rollback()
            raise LessonLocked

        completed_at = utcnow()
        # The version first, so the completion row keeps the version it made; the XP total
        # in the same statement, so it is the total at exactly that version.
        version, xp_total = session.execute(
            sa.update(ProgressVersion)
            .where(ProgressVersion.user_id == learner_id)
            .values(
                version=ProgressVersion.version + 1,
                xp_total=ProgressVersion.xp_total + lesson.xp,
                updated_at=completed_at,
            )
            .returning(ProgressVersion.version, ProgressVersion.xp_total)
        ).one()
        # RETURNING, not rowcount: an ORM insert's rowcount is -1 on some drivers.
        inserted = session.scalar(
            insert(LessonProgress)
            .values(
                user_id=learner_id,
                lesson_id=lesson.id,
                completed_at=completed_at,
                version=version,
                xp_earned=lesson.xp,
                idempotency_key=idempotency_key,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "lesson_id"])
            .returning(LessonProgress.id)
        )
        if inserted is None:  # a concurrent request won the race (SQLite has no row lock)
            session.rollback()  # the version and the XP with it: nothing granted twice
            return _existing_completion(learner_id, lesson, idempotency_key)
        invalidation.announce(session, learner_id, version)  # delivered on commit
        session.commit()
    except BaseException:
        session.rollback()
        raise
    # after the commit returned, before anyone is told
    position = _stamp_acknowledged(inserted, utcnow())
    return Completion(version, completed_at, lesson.xp, xp_total, position)


def _stamp_acknowledged(completion_id: int, at: datetime) -> int | None:
    """Keep when the completion's commit returned, and read in the same statement the
    primary's WAL insert position (PostgreSQL), which is past the commit's record: no extra
    round trip. A stamp that fails leaves both unknown, which only ever makes a reported
    lock "not false" (progress/lock_reports.py) and the next read wait as before."""
    postgres = db.engine.dialect.name == "postgresql"
    stamp = (
        sa.update(LessonProgress)
        .where(LessonProgress.id == completion_id)
        .values(acknowledged_at=at)
    )
    try:
        if postgres:
            # Lost in a crash it is only unknown, so the commit needn't wait for the disk.
            db.session.execute(sa.text("SET LOCAL synchronous_commit = off"))
            position = db.session.scalar(stamp.returning(_INSERT_POSITION))
        else:
            db.session.execute(stamp)
            position = None
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("could not keep a completion's acknowledgement time", exc_info=True)
        return None
    return position


def completion_of(learner_id: uuid.UUID, lesson_id: int) -> CompletionRecord | None:
    """The learner's completion of one lesson, from the primary; None if not completed."""
    row = db.session.execute(
        sa.select(
            LessonProgress.version, LessonProgress.completed_at, LessonProgress.acknowledged_at
        ).where(LessonProgress.user_id == learner_id, LessonProgress.lesson_id == lesson_id)
    ).one_or_none()
    return None if row is None else CompletionRecord(*row)


_EXISTING = (
    sa.select(
        ProgressVersion.version,
        ProgressVersion.xp_total,
        LessonProgress.completed_at,
        LessonProgress.xp_earned,
        LessonProgress.idempotency_key,
    )
    .join(LessonProgress, LessonProgress.user_id == ProgressVersion.user_id)
    .where(
        ProgressVersion.user_id == sa.bindparam("learner_id"),
        LessonProgress.lesson_id == sa.bindparam("lesson_id"),
    )
)


def _existing(postgres: bool) -> sa.Select:
    """The existing completion's statement; on PostgreSQL with the insert position read in
    the same statement, after its snapshot: past the commit of every version it sees."""
    position = _INSERT_POSITION if postgres else sa.null()
    return _EXISTING.add_columns(position.label("position"))


def _existing_completion(
    learner_id: uuid.UUID, lesson: LessonRef, idempotency_key: str | None
) -> Completion:
    """A repeat grants nothing. A retry of the request that completed the lesson (the same
    Idempotency-Key) is answered with the XP that request earned, as its lost answer was;
    any other repeat earned 0."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        statement = _existing(conn.dialect.name == "postgresql")
        row = conn.execute(statement, {"learner_id": learner_id, "lesson_id": lesson.id}).one()
    retry = idempotency_key is not None and idempotency_key == row.idempotency_key
    return Completion(
        row.version, row.completed_at, row.xp_earned if retry else 0, row.xp_total, row.position
    )
