"""Lock screens reported by clients: each carries the receipt its "locked" answer came with.

A report is a false lock only if the primary shows the lesson was open when the lock was
answered (its predecessor completed at or before the receipt's time). Each receipt counts
at most once, across workers and instances: the reports table is unique on the receipt.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from . import receipts, store
from .curriculum import LessonRef, is_lesson_accessible
from .extensions import db
from .models import LockScreenReport, utcnow
from .paths import record_false_lock
from .receipts import LockReceipt
from .worker import worker_state


def issue_lock_receipt(
    learner_id: uuid.UUID, lesson: LessonRef, path: str, version: int, answered_at: datetime
) -> str:
    """The receipt a "locked" access answer carries."""
    return receipts.issue(
        current_app.config["PROGRESS_JWT_SECRET"],
        learner_id,
        lesson.module_slug,
        lesson.slug,
        path,
        version,
        answered_at,
    )


def read_lock_receipt(receipt: str, learner_id: uuid.UUID, lesson: LessonRef) -> LockReceipt:
    """The receipt's contents if it is this learner's, for this lesson, and not expired."""
    return receipts.verify(
        receipt,
        secret=current_app.config["PROGRESS_JWT_SECRET"],
        max_age_s=current_app.config["PROGRESS_LOCK_RECEIPT_TTL_S"],
        learner_id=learner_id,
        module_id=lesson.module_slug,
        lesson_id=lesson.slug,
    )


def was_open_when_shown(learner_id: uuid.UUID, lesson: LessonRef, shown_at: datetime) -> bool:
    """Did the primary hold the lesson open at `shown_at`? Progress only grows, so the
    completions made at or before then are the progress the learner had."""
    snapshot = store.load_progress(learner_id)
    then = {lesson_id: at for lesson_id, at in snapshot.completed.items() if at <= shown_at}
    return is_lesson_accessible(worker_state().curriculum(), then, lesson)


def report_lock_screen(lesson: LessonRef, receipt: LockReceipt) -> bool:
    """Judge a reported lock screen and keep it; a false one is counted once per receipt.
    Returns whether it was a false lock (as first judged, for a receipt sent again)."""
    false_lock = was_open_when_shown(receipt.learner_id, lesson, receipt.answered_at)
    # RETURNING, not rowcount: an ORM insert's rowcount is -1 on some drivers.
    kept = db.session.scalar(
        store.insert(LockScreenReport)
        .values(
            receipt_id=receipt.receipt_id,
            learner_id=receipt.learner_id,
            module_id=receipt.module_id,
            lesson_id=receipt.lesson_id,
            path=receipt.path,
            answered_version=receipt.version,
            shown_at=receipt.answered_at,
            reported_at=utcnow(),
            false_lock=false_lock,
        )
        .on_conflict_do_nothing(index_elements=[LockScreenReport.receipt_id])
        .returning(LockScreenReport.id)
    )
    if kept is None:  # reported before (a retry, or another worker got it first)
        first = db.session.scalar(
            sa.select(LockScreenReport.false_lock).where(
                LockScreenReport.receipt_id == receipt.receipt_id
            )
        )
        db.session.rollback()
        return bool(first)
    store.prune_older_than(
        LockScreenReport.reported_at, current_app.config["PROGRESS_REPORT_RETENTION_DAYS"]
    )  # as each is kept, in its commit: as the guard prunes its evaluations
    db.session.commit()
    if false_lock:
        record_false_lock(receipt.path, receipt.learner_id, lesson, "client_report")  # type: ignore[arg-type]
    return false_lock
