"""The two progress paths, and the one place that picks which serves a learner."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from flask import Flask, current_app

from .. import faults, logs, metrics, store
from ..cache import ProgressSnapshot
from ..curriculum import Curriculum, LessonRef, is_lesson_accessible
from ..flags import verified_path_on
from ..path_names import PathName
from ..worker import worker_state

PATHS_KEY = "progress.paths"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CompletionAnswer:
    success: bool
    db_updated: bool
    cache_updated: bool
    version: int
    xp_earned: int
    xp_total: int
    position: int | None = None  # a WAL position the commit of `version` can't be past


@dataclass(frozen=True, slots=True)
class AccessAnswer:
    accessible: bool
    source: Literal["cache", "db"]
    cache_age_ms: int | None
    version: int


@dataclass(frozen=True, slots=True)
class ReviewAnswer:
    snapshot: ProgressSnapshot  # the review set is its completed lessons' words
    source: Literal["cache", "db"]


class ProgressPath(Protocol):
    name: PathName
    # Whether its answers are read at the request's minVersion or later (or from the primary
    # when no copy holds it), so a "locked" below the minVersion shows the claim was not held.
    reads_min_version: bool

    def complete_lesson(
        self, learner_id: uuid.UUID, lesson: LessonRef, idempotency_key: str | None
    ) -> CompletionAnswer: ...

    # `min_position`: the WAL position the client was given with `min_version` (None: not
    # sent); it only decides where a read goes, never what is believed.
    def check_access(
        self,
        learner_id: uuid.UUID,
        lesson: LessonRef,
        min_version: int,
        min_position: int | None = None,
    ) -> AccessAnswer: ...

    def read_progress(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ProgressSnapshot: ...

    def read_review(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ReviewAnswer: ...


def install_path(app: Flask, path: ProgressPath) -> None:
    app.extensions.setdefault(PATHS_KEY, {})[path.name] = path


def path_for_learner(learner_id: uuid.UUID) -> PathName:
    """The verified path if the flag says so; the legacy path if it can't be evaluated."""
    return "verified" if verified_path_on(learner_id) else "legacy"


def serving_path(learner_id: uuid.UUID) -> ProgressPath:
    """The one dispatch point: the flag picks the path for this learner."""
    name = path_for_learner(learner_id)
    logs.bind_path(name)
    return path_named(name)


def path_named(name: str) -> ProgressPath:
    return current_app.extensions[PATHS_KEY][name]


def primary_confirms_locked(path: PathName, learner_id: uuid.UUID, lesson: LessonRef) -> bool:
    """Ask the primary whether `lesson` really is locked for the learner (an audit)."""
    snapshot = store.load_progress(learner_id, path=path, reason="audit")
    return not is_lesson_accessible(worker_state().curriculum(), snapshot.completed, lesson)


def record_completion(
    path: PathName, learner_id: uuid.UUID, lesson: LessonRef, idempotency_key: str | None
) -> store.Completion:
    """Write the completion (and its XP) and count its outcome; a locked lesson is the
    client's error."""
    started = time.perf_counter()
    try:
        faults.before_completion(path)
        completion = store.mark_lesson_completed(
            learner_id, lesson, worker_state().curriculum(), idempotency_key
        )
    except store.LessonLocked:
        raise
    except Exception:
        metrics.completions.labels(path, "error").inc()
        raise
    finally:
        metrics.completion_seconds.labels(path).observe(time.perf_counter() - started)
    metrics.completions.labels(path, "success").inc()
    return completion


def count_access(path: PathName, answer: AccessAnswer) -> AccessAnswer:
    metrics.access_checks.labels(
        path, answer.source, "accessible" if answer.accessible else "locked"
    ).inc()
    return answer


def record_false_lock(
    path: PathName, learner_id: uuid.UUID, lesson: LessonRef, detected_by: str
) -> None:
    metrics.false_lock_screens.labels(path, detected_by).inc()
    log.warning(
        "false lock screen",
        extra={
            "progress_path": path,
            "detected_by": detected_by,
            "module_id": lesson.module_slug,
            "lesson_id": lesson.slug,
        },
    )


def missing_review_lessons(
    curriculum: Curriculum, served: ProgressSnapshot, primary: ProgressSnapshot
) -> list[LessonRef]:
    """The lessons with words that `primary` holds completed and `served` lacks: a review
    set derived from `served` misses their words."""
    missing = []
    for lesson_id in primary.completed:
        lesson = curriculum.by_id(lesson_id)
        if lesson is not None and lesson.words and lesson_id not in served.completed:
            missing.append(lesson)
    return missing


def count_review(path: PathName, answer: ReviewAnswer) -> ReviewAnswer:
    metrics.review_sets.labels(path, answer.source).inc()
    return answer


def record_stale_review(path: PathName, missing: list[LessonRef], detected_by: str) -> None:
    metrics.stale_review_sets.labels(path, detected_by).inc()
    log.warning(
        "stale review set",
        extra={
            "progress_path": path,
            "detected_by": detected_by,
            "missing_lessons": [f"{lesson.module_slug}/{lesson.slug}" for lesson in missing],
        },
    )
