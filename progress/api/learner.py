"""Learner routes under /api/v1. Each reads top to bottom: auth, the flag picks the path,
the path answers. No business logic here."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response

from .. import lock_reports, logs
from ..auth import Identity, authenticate
from ..curriculum import LessonRef, accessible_lessons, review_words
from ..errors import ApiError
from ..paths import serving_path
from ..worker import worker_state
from .schemas import (
    AccessOut,
    AccessQuery,
    CompletedLessonOut,
    CompletionHeaders,
    CompletionOut,
    CurriculumOut,
    ErrorOut,
    LessonAccessOut,
    LessonOut,
    LockScreenIn,
    LockScreenOut,
    ModuleOut,
    ProgressOut,
    ProgressQuery,
    ReviewOut,
    ReviewQuery,
    ReviewWordOut,
    WordOut,
)
from .spec import operation

bp = Blueprint("learner_api", __name__, url_prefix="/api/v1")

ERRORS = dict.fromkeys((401, 403, 404, 503), ErrorOut)
RATE_LIMITED = {429: ErrorOut}  # the routes progress/rate_limits.py limits


def find_lesson(module_id: str, lesson_id: str) -> LessonRef:
    curriculum = worker_state().curriculum()
    lesson = curriculum.find(module_id, lesson_id)
    if lesson is not None:
        return lesson
    if not curriculum.has_module(module_id):
        raise ApiError(404, "module_not_found", f"Module {module_id!r} doesn't exist.", "moduleId")
    raise ApiError(
        404, "lesson_not_found", f"Lesson {lesson_id!r} doesn't exist in {module_id!r}.", "lessonId"
    )


@bp.after_request
def tag_path(response: Response) -> Response:
    path = logs.bound_path()
    if path is not None:
        response.headers["X-Progress-Path"] = path
    return response


@bp.get("/curriculum")
@operation("getCurriculum", "curriculum", {200: CurriculumOut, 503: ErrorOut}, secured=False)
def get_curriculum() -> CurriculumOut:
    """Modules in order, each with its lessons in order, their XP and their words."""
    curriculum = worker_state().curriculum()
    return CurriculumOut(
        modules=[
            ModuleOut(
                id=module.slug,
                title=module.title,
                lessons=[
                    LessonOut(
                        id=lesson.slug,
                        title=lesson.title,
                        xp=lesson.xp,
                        words=[
                            WordOut(term=w.term, translation=w.translation) for w in lesson.words
                        ],
                    )
                    for lesson in module.lessons
                ],
            )
            for module in curriculum.modules
        ]
    )


@bp.get("/progress")
@operation("getProgress", "progress", {200: ProgressOut, **ERRORS}, query=ProgressQuery)
def get_progress(query: ProgressQuery) -> ProgressOut:
    """The learner's completed lessons and which lessons are open."""
    identity = authenticate()
    path = serving_path(identity.user_id)
    snapshot = path.read_progress(identity.user_id, query.min_version, query.min_position)
    curriculum = worker_state().curriculum()
    completed = []
    for lesson_id, completed_at in sorted(snapshot.completed.items(), key=lambda i: i[1]):
        lesson = curriculum.by_id(lesson_id)
        if lesson is not None:
            completed.append(
                CompletedLessonOut(
                    module_id=lesson.module_slug, lesson_id=lesson.slug, completed_at=completed_at
                )
            )
    return ProgressOut(
        version=snapshot.version,
        completed=completed,
        lessons=[
            LessonAccessOut(
                module_id=lesson.module_slug, lesson_id=lesson.slug, accessible=accessible
            )
            for lesson, accessible in accessible_lessons(curriculum, snapshot.completed)
        ],
        xp_total=snapshot.xp_total,
    )


@bp.get("/review")
@operation("getReview", "progress", {200: ReviewOut, **ERRORS}, query=ReviewQuery)
def get_review(query: ReviewQuery) -> ReviewOut:
    """The learner's review set: the words of every completed lesson. Send the last version
    seen as minVersion, as for the access check."""
    identity = authenticate()
    path = serving_path(identity.user_id)
    answer = path.read_review(identity.user_id, query.min_version, query.min_position)
    return ReviewOut(
        version=answer.snapshot.version,
        words=[
            ReviewWordOut(
                term=item.word.term,
                translation=item.word.translation,
                module_id=item.lesson.module_slug,
                lesson_id=item.lesson.slug,
            )
            for item in review_words(worker_state().curriculum(), answer.snapshot.completed)
        ],
        source=answer.source,
        path=path.name,
    )


@bp.post("/modules/<moduleId>/lessons/<lessonId>/complete")
@operation(
    "completeLesson",
    "progress",
    {200: CompletionOut, 400: ErrorOut, 409: ErrorOut, **ERRORS, **RATE_LIMITED},
    headers=CompletionHeaders,
)
def complete_lesson(moduleId: str, lessonId: str, headers: CompletionHeaders) -> CompletionOut:  # noqa: N803 - path names
    """Mark a lesson complete and grant its XP; completing it again changes nothing and
    grants nothing (a retry with the same `Idempotency-Key` gets the first answer's XP)."""
    identity = authenticate(write=True)
    lesson = find_lesson(moduleId, lessonId)
    path = serving_path(identity.user_id)
    answer = path.complete_lesson(identity.user_id, lesson, headers.idempotency_key)
    return CompletionOut(
        success=answer.success,
        db_updated=answer.db_updated,
        cache_updated=answer.cache_updated,
        version=answer.version,
        path=path.name,
        xp_earned=answer.xp_earned,
        xp_total=answer.xp_total,
        position=answer.position,
    )


@bp.get("/modules/<moduleId>/lessons/<lessonId>/access")
@operation("checkAccess", "progress", {200: AccessOut, **ERRORS}, query=AccessQuery)
def check_access(moduleId: str, lessonId: str, query: AccessQuery) -> AccessOut:  # noqa: N803
    """Is this lesson open for the learner? Send the last version seen as minVersion, and
    with it the completion's position as minPosition when that version came from a
    completion answer."""
    identity = authenticate()
    sent = query.min_version if "min_version" in query.model_fields_set else None
    return answer_access(identity, find_lesson(moduleId, lessonId), sent, query.min_position)


def answer_access(
    identity: Identity,
    lesson: LessonRef,
    min_version: int | None,
    min_position: int | None = None,
) -> AccessOut:
    """The access check past its checks of the request (this route, and its fast path in
    progress/api/fast_access.py); `min_version` as the request sent it (None: not sent),
    `min_position` likewise."""
    path = serving_path(identity.user_id)
    read_began_at = datetime.now(UTC)  # before the read: a lock report is judged by it
    answer = path.check_access(identity.user_id, lesson, min_version or 0, min_position)
    receipt = (
        None
        if answer.accessible
        else lock_reports.issue_lock_receipt(
            identity.user_id,
            lesson,
            path.name,
            answer.version,
            min_version=min_version,
            read_began_at=read_began_at,
        )
    )
    # A model instance: spectree serializes it without validating the dict again.
    return AccessOut(
        accessible=answer.accessible,
        source=answer.source,
        cache_age_ms=answer.cache_age_ms,
        version=answer.version,
        path=path.name,
        lock_receipt=receipt,
    )


@bp.post("/events/lock-screen")
@operation(
    "reportLockScreen", "events", {202: LockScreenOut, **ERRORS, **RATE_LIMITED}, json=LockScreenIn
)
def report_lock_screen(json: LockScreenIn) -> tuple[LockScreenOut, int]:
    """A client showed a lock screen: send the `lockReceipt` of the access answer that
    locked. `falseLock` is true when the learner held the completion that opens the lesson
    (the access check's `minVersion` was at or above its version) or the read began clearly
    after that completion was acknowledged; a lock that raced the completion is not false.
    Each receipt counts once. A missing, tampered, expired or foreign receipt is a 400."""
    identity = authenticate()
    lesson = find_lesson(json.module_id, json.lesson_id)
    serving_path(identity.user_id)  # answers with X-Progress-Path, as every route
    receipt = lock_reports.read_lock_receipt(json.lock_receipt, identity.user_id, lesson)
    return LockScreenOut(false_lock=lock_reports.report_lock_screen(lesson, receipt)), 202
