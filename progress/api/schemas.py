"""Request and response models: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # Strict: "1" is not an integer and unknown fields are refused (pitfalls.md).
    model_config = ConfigDict(strict=True, extra="forbid")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every error: {"error": {"code", "message"}}, with the offending field on a 400."""

    error: ErrorBody


class LessonOut(BaseModel):
    id: str
    title: str


class ModuleOut(BaseModel):
    id: str
    title: str
    lessons: list[LessonOut]


class CurriculumOut(BaseModel):
    modules: list[ModuleOut]


class CompletedLessonOut(BaseModel):
    moduleId: str  # noqa: N815 - the contract's JSON names
    lessonId: str  # noqa: N815
    completedAt: datetime  # noqa: N815


class LessonAccessOut(BaseModel):
    moduleId: str  # noqa: N815
    lessonId: str  # noqa: N815
    accessible: bool


class ProgressOut(BaseModel):
    version: int
    completed: list[CompletedLessonOut]
    lessons: list[LessonAccessOut]


PathName = Literal["legacy", "verified"]


class CompletionOut(BaseModel):
    success: bool
    dbUpdated: bool  # noqa: N815
    cacheUpdated: bool  # noqa: N815
    version: int
    path: PathName


class AccessQuery(BaseModel):
    # Query strings are text: lax ints ("5"), but only whole non-negative numbers.
    model_config = ConfigDict(extra="forbid")

    minVersion: int = Field(default=0, ge=0, le=2**53)  # noqa: N815


class AccessOut(BaseModel):
    accessible: bool
    source: Literal["cache", "db"]
    cacheAgeMs: int | None  # noqa: N815 - null when the DB answered
    version: int
    path: PathName


class ProgressQuery(AccessQuery):
    pass


class LockScreenIn(Strict):
    moduleId: str = Field(min_length=1, max_length=64)  # noqa: N815
    lessonId: str = Field(min_length=1, max_length=64)  # noqa: N815


class LockScreenOut(BaseModel):
    falseLock: bool  # noqa: N815


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "unready"]
    checks: dict[str, str]
