"""Learner routes under /api/v1. Each reads top to bottom: auth, the flag picks the path,
the path answers. No business logic here."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, g
from spectree import Response as Resp

from .. import lock_reports
from ..auth import authenticate
from ..curriculum import LessonRef, accessible_lessons
from ..errors import ApiError
from ..paths import serving_path
from ..worker import worker_state
from .schemas import (
    AccessOut,
    AccessQuery,
    CompletionOut,
    CurriculumOut,
    ErrorOut,
    LockScreenIn,
    LockScreenOut,
    ProgressOut,
    ProgressQuery,
)
from .spec import api_spec

bp = Blueprint("learner_api", __name__, url_prefix="/api/v1")

AUTH = {"bearer": []}
ERRORS = {f"HTTP_{code}": ErrorOut for code in (401, 403, 404, 503)}


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
    path = g.get("progress_path")  # one look-up
    if path is not None:
        response.headers["X-Progress-Path"] = path
    return response


@bp.get("/curriculum")
@api_spec.validate(
    resp=Resp(HTTP_200=CurriculumOut, HTTP_503=ErrorOut),
    operation_id="getCurriculum",
    tags=["curriculum"],
)
def get_curriculum() -> dict:
    """Modules in order, each with its lessons in order."""
    curriculum = worker_state().curriculum()
    return {
        "modules": [
            {
                "id": module.slug,
                "title": module.title,
                "lessons": [
                    {"id": lesson.slug, "title": lesson.title} for lesson in module.lessons
                ],
            }
            for module in curriculum.modules
        ]
    }


@bp.get("/progress")
@api_spec.validate(
    query=ProgressQuery,
    resp=Resp(HTTP_200=ProgressOut, **ERRORS),
    operation_id="getProgress",
    tags=["progress"],
    security=AUTH,
)
def get_progress(query: ProgressQuery) -> dict:
    """The learner's completed lessons and which lessons are open."""
    identity = authenticate()
    path = serving_path(identity.user_id)
    snapshot = path.read_progress(identity.user_id, query.minVersion)
    curriculum = worker_state().curriculum()
    completed = []
    for lesson_id, completed_at in sorted(snapshot.completed.items(), key=lambda i: i[1]):
        lesson = curriculum.by_id(lesson_id)
        if lesson is not None:
            completed.append(
                {
                    "moduleId": lesson.module_slug,
                    "lessonId": lesson.slug,
                    "completedAt": completed_at,
                }
            )
    return {
        "version": snapshot.version,
        "completed": completed,
        "lessons": [
            {"moduleId": lesson.module_slug, "lessonId": lesson.slug, "accessible": accessible}
            for lesson, accessible in accessible_lessons(curriculum, snapshot.completed)
        ],
    }


@bp.post("/modules/<moduleId>/lessons/<lessonId>/complete")
@api_spec.validate(
    resp=Resp(HTTP_200=CompletionOut, HTTP_409=ErrorOut, **ERRORS),
    operation_id="completeLesson",
    tags=["progress"],
    security=AUTH,
)
def complete_lesson(moduleId: str, lessonId: str) -> CompletionOut:  # noqa: N803 - path names
    """Mark a lesson complete; completing it again changes nothing."""
    identity = authenticate(write=True)
    lesson = find_lesson(moduleId, lessonId)
    path = serving_path(identity.user_id)
    answer = path.complete_lesson(identity.user_id, lesson)
    return CompletionOut(
        success=answer.success,
        dbUpdated=answer.db_updated,
        cacheUpdated=answer.cache_updated,
        version=answer.version,
        path=path.name,
    )


@bp.get("/modules/<moduleId>/lessons/<lessonId>/access")
@api_spec.validate(
    query=AccessQuery,
    resp=Resp(HTTP_200=AccessOut, **ERRORS),
    operation_id="checkAccess",
    tags=["progress"],
    security=AUTH,
)
def check_access(moduleId: str, lessonId: str, query: AccessQuery) -> AccessOut:  # noqa: N803
    """Is this lesson open for the learner? Send the last version seen as minVersion."""
    identity = authenticate()
    lesson = find_lesson(moduleId, lessonId)
    path = serving_path(identity.user_id)
    answer = path.check_access(identity.user_id, lesson, query.minVersion)
    receipt = (
        None
        if answer.accessible
        else lock_reports.issue_lock_receipt(
            identity.user_id, lesson, path.name, answer.version, datetime.now(UTC)
        )
    )
    # A model instance: spectree serializes it without validating the dict again.
    return AccessOut(
        accessible=answer.accessible,
        source=answer.source,
        cacheAgeMs=answer.cache_age_ms,
        version=answer.version,
        path=path.name,
        lockReceipt=receipt,
    )


@bp.post("/events/lock-screen")
@api_spec.validate(
    json=LockScreenIn,
    resp=Resp(HTTP_202=LockScreenOut, **ERRORS),
    operation_id="reportLockScreen",
    tags=["events"],
    security=AUTH,
)
def report_lock_screen(json: LockScreenIn) -> tuple[dict, int]:
    """A client showed a lock screen: send the `lockReceipt` of the access answer that
    locked. The primary says whether the lesson was open when the lock was answered; each
    receipt counts once. A missing, tampered, expired or foreign receipt is a 400."""
    identity = authenticate()
    lesson = find_lesson(json.moduleId, json.lessonId)
    serving_path(identity.user_id)  # answers with X-Progress-Path, as every route
    receipt = lock_reports.read_lock_receipt(json.lockReceipt, identity.user_id, lesson)
    return {"falseLock": lock_reports.report_lock_screen(lesson, receipt)}, 202
