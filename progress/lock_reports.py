"""Lock screens reported by clients: each carries the receipt its "locked" answer came with.

A report is judged by what the learner knew and by commit order, never by two clocks read at
two unrelated moments (docs/lock-receipts.md):

- false lock: the request's minVersion was at or above the version the lesson's predecessor
  was completed at (the learner held that acknowledgement), or the read began more than
  PROGRESS_CLOCK_SKEW_MS after that completion was acknowledged;
- true lock: the predecessor was not complete, or its completion began after the answer;
- concurrent: anything else, a read that overlapped the completion. Kept, counted nowhere.

Every doubt leans toward "not false", so no client can make a false lock by timing. Each
receipt counts at most once, across workers and instances: the reports table is unique on
the receipt.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from flask import current_app

from . import receipts, store
from .curriculum import LessonRef
from .extensions import db
from .models import LockScreenReport, utcnow
from .paths import path_named, record_false_lock
from .receipts import LockReceipt
from .store import CompletionRecord
from .worker import worker_state

Judgement = Literal["false_lock", "true_lock", "concurrent"]


def issue_lock_receipt(
    learner_id: uuid.UUID,
    lesson: LessonRef,
    path: str,
    version: int,
    *,
    min_version: int | None,
    read_began_at: datetime,
) -> str:
    """The receipt a "locked" access answer carries, signed now (after the read)."""
    return receipts.issue(
        current_app.config["PROGRESS_RECEIPT_KEYS"],
        learner_id,
        lesson.module_slug,
        lesson.slug,
        path,
        version,
        min_version=min_version,
        read_began_at=read_began_at,
    )


def read_lock_receipt(receipt: str, learner_id: uuid.UUID, lesson: LessonRef) -> LockReceipt:
    """The receipt's contents if it is this learner's, for this lesson, and not expired."""
    return receipts.verify(
        receipt,
        secret=current_app.config["PROGRESS_RECEIPT_KEYS"],
        max_age_s=current_app.config["PROGRESS_LOCK_RECEIPT_TTL_S"],
        learner_id=learner_id,
        module_id=lesson.module_slug,
        lesson_id=lesson.slug,
    )


def judge(
    receipt: LockReceipt,
    opener: CompletionRecord | None,
    *,
    skew: timedelta,
    reads_min_version: bool,
) -> Judgement:
    """The judgement of a reported lock, given the completion of the lesson's predecessor
    (`opener`, None if not completed) and whether the answering path reads at the
    request's minVersion."""
    if opener is None:
        return "true_lock"
    claimed = receipt.min_version
    # A path that reads at the minVersion and answered below it looked for that version (on
    # the primary at the last) and found none: the learner can't have held it, it guessed.
    guessed = reads_min_version and claimed is not None and receipt.version < claimed
    if claimed is not None and claimed >= opener.version and not guessed:
        return "false_lock"
    acknowledged = opener.acknowledged_at
    if acknowledged is not None and receipt.read_began_at - acknowledged > skew:
        return "false_lock"
    if opener.completed_at - receipt.answered_at > skew:
        return "true_lock"  # answered before the completion began
    return "concurrent"


def judge_report(lesson: LessonRef, receipt: LockReceipt) -> Judgement:
    """Judge a reported lock against the primary."""
    previous = worker_state().curriculum().previous(lesson)
    if previous is None:  # the course's first lesson is always open
        return "false_lock"
    return judge(
        receipt,
        store.completion_of(receipt.learner_id, previous.id),
        skew=timedelta(milliseconds=current_app.config["PROGRESS_CLOCK_SKEW_MS"]),
        reads_min_version=path_named(receipt.path).reads_min_version,
    )


def report_lock_screen(lesson: LessonRef, receipt: LockReceipt) -> bool:
    """Judge a reported lock screen and keep it; a false one is counted once per receipt.
    Returns whether it was a false lock (as first judged, for a receipt sent again)."""
    judgement = judge_report(lesson, receipt)
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
            min_version=receipt.min_version,
            read_began_at=receipt.read_began_at,
            shown_at=receipt.answered_at,
            reported_at=utcnow(),
            judgement=judgement,
        )
        .on_conflict_do_nothing(index_elements=[LockScreenReport.receipt_id])
        .returning(LockScreenReport.id)
    )
    if kept is None:  # reported before (a retry, or another worker got it first)
        first = db.session.scalar(
            sa.select(LockScreenReport.judgement).where(
                LockScreenReport.receipt_id == receipt.receipt_id
            )
        )
        db.session.rollback()
        return first == "false_lock"
    store.prune_older_than(
        LockScreenReport.reported_at, current_app.config["PROGRESS_REPORT_RETENTION_DAYS"]
    )  # as each is kept, in its commit: as the guard prunes its evaluations
    db.session.commit()
    if judgement == "false_lock":
        record_false_lock(receipt.path, receipt.learner_id, lesson, "client_report")  # type: ignore[arg-type]
    return judgement == "false_lock"
