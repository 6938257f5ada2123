"""Tables: learners (users), the ordered curriculum with its words, completions, progress
versions and XP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

DEFAULT_LESSON_XP = 10  # a lesson whose course file names no XP


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator):
    """Timestamps are UTC and come back timezone-aware on every engine (SQLite drops it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use UTC-aware timestamps")
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class User(db.Model):
    """A learner (or admin); identities belong to the identity provider."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), index=True)
    email_verified: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Module(db.Model):
    __tablename__ = "modules"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    position: Mapped[int] = mapped_column(sa.Integer)

    lessons: Mapped[list[Lesson]] = relationship(
        back_populates="module", order_by="Lesson.position"
    )


class Lesson(db.Model):
    __tablename__ = "lessons"
    __table_args__ = (sa.UniqueConstraint("module_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    module_id: Mapped[int] = mapped_column(sa.ForeignKey("modules.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str] = mapped_column(sa.String(200))
    position: Mapped[int] = mapped_column(sa.Integer)
    # What completing it grants, once per learner.
    xp: Mapped[int] = mapped_column(sa.Integer, default=DEFAULT_LESSON_XP)

    module: Mapped[Module] = relationship(back_populates="lessons")
    words: Mapped[list[LessonWord]] = relationship(
        back_populates="lesson", order_by="LessonWord.position", cascade="all, delete-orphan"
    )


class LessonWord(db.Model):
    """A word a lesson teaches, in the course's language with its translation: a completed
    lesson's words are in the learner's review set."""

    __tablename__ = "lesson_words"
    __table_args__ = (sa.UniqueConstraint("lesson_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lesson_id: Mapped[int] = mapped_column(sa.ForeignKey("lessons.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(sa.Integer)
    term: Mapped[str] = mapped_column(sa.String(200))
    translation: Mapped[str] = mapped_column(sa.String(200))

    lesson: Mapped[Lesson] = relationship(back_populates="words")


class LessonProgress(db.Model):
    """One completed lesson of one learner; progress only grows."""

    __tablename__ = "lesson_progress"
    __table_args__ = (sa.UniqueConstraint("user_id", "lesson_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique (user_id, lesson_id) index also serves lookups by learner.
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(sa.ForeignKey("lessons.id", ondelete="CASCADE"))
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # before commit
    # The learner's progress version this completion made: what a client holds once told.
    version: Mapped[int] = mapped_column(sa.BigInteger)
    # Stamped once the commit returned (None until then, or if the stamp failed): no client
    # can have been told of the completion before it.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The XP this completion granted, written in its transaction (the learner's total is
    # progress_versions.xp_total, bumped by the same transaction).
    xp_earned: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The client's Idempotency-Key for this completion, if it sent one: a retry with the
    # same key is answered as the first was (the XP it earned), a later repeat earns 0.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class ProgressVersion(db.Model):
    """Bumped in the same transaction as every change to a learner's progress, with the
    learner's XP total (the sum of their completions' xp_earned)."""

    __tablename__ = "progress_versions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    xp_total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FeatureFlag(db.Model):
    """An embedded flag: its definition in Unleash's client features format."""

    __tablename__ = "feature_flags"

    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    definition: Mapped[str] = mapped_column(sa.Text)  # JSON, as /api/client/features answers
    percentage: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(320))


class RolloutChange(db.Model):
    """Every change of the rollout percentage, by whom, when and why."""

    __tablename__ = "rollout_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    flag: Mapped[str] = mapped_column(sa.String(100), index=True)
    backend: Mapped[str] = mapped_column(sa.String(20))
    previous_percentage: Mapped[int | None] = mapped_column(sa.Integer)
    percentage: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.String(500))
    changed_by: Mapped[str] = mapped_column(sa.String(320))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class PlanSettings:
    """What a rollout plan sets. The defaults here are the one place they live: a new plan,
    a plan not yet stored, the migrations that add a column and the simulation
    (progress.guard.simulation) read them."""

    stages: tuple[int, ...] = (0, 10, 100)  # the seed's plan
    min_stage_seconds: int = 600
    min_completions: int = 50  # on each path
    min_access_checks: int = 200  # on each path
    # False: a stage that passed is marked ready and product clicks "advance".
    auto_advance: bool = False
    on_failure: str = "rollback"  # or "pause"
    # Verified's success rate may be this much lower than legacy's (0.001: 0.1 point).
    success_rate_margin: float = 0.001
    # The cache update latency budget, in seconds.
    p95_budget_seconds: float = 0.25
    # Verified's share of cache updates over the budget may exceed legacy's by this much:
    # 0.05 keeps the seed's "95% within the budget" when legacy is always within it.
    latency_margin: float = 0.05
    # The chance of a wrong rollback (or pause) over all the looks at a stage whose paths
    # are in truth equal; also the chance of advancing past a difference beyond a margin.
    false_rollback_rate: float = 0.01
    # At the last stage: how long the guard watches the verified path against the legacy
    # path's history (fractions allowed), and how many days before the move that history
    # covers (whole days average out the time of day).
    watch_hours: float = 48.0
    baseline_days: float = 7.0
    enabled: bool = False

    def columns(self) -> dict[str, Any]:
        """The settings as a plan's columns (stages: a list, as stored)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**values, "stages": list(self.stages)}


PLAN_DEFAULTS = PlanSettings()


class RolloutPlan(db.Model):
    """The rollout guard's plan for one flag: its stages, the evidence each stage needs
    before the next, what a failure does, and where the rollout stands. A new plan starts
    from PLAN_DEFAULTS."""

    __tablename__ = "rollout_plans"

    flag: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    stages: Mapped[list[int]] = mapped_column(sa.JSON)
    min_stage_seconds: Mapped[int] = mapped_column(sa.Integer)
    min_completions: Mapped[int] = mapped_column(sa.Integer)
    min_access_checks: Mapped[int] = mapped_column(sa.Integer)
    auto_advance: Mapped[bool] = mapped_column(sa.Boolean)
    on_failure: Mapped[str] = mapped_column(sa.String(20))
    success_rate_margin: Mapped[float] = mapped_column(sa.Double)
    p95_budget_seconds: Mapped[float] = mapped_column(sa.Double)
    latency_margin: Mapped[float] = mapped_column(sa.Double)
    false_rollback_rate: Mapped[float] = mapped_column(sa.Double)
    watch_hours: Mapped[float] = mapped_column(sa.Double)
    baseline_days: Mapped[float] = mapped_column(sa.Double)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    stage_index: Mapped[int] = mapped_column(sa.Integer, default=0)
    stage_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paused: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    ready: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(320), default="default")
    # The watch at the last stage: the legacy path's figures before the move
    # (progress.guard.watch.Baseline.as_json), and when the watch ended clean.
    baseline: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)

    def __init__(self, **columns: Any) -> None:
        super().__init__(**{**PLAN_DEFAULTS.columns(), **columns})

    @property
    def stage_percentage(self) -> int | None:
        """The current stage's percentage; None if the index is past the stages."""
        stages = self.stages
        return stages[self.stage_index] if 0 <= self.stage_index < len(stages) else None

    def follow_percentage(self, percentage: int, now: datetime) -> bool:
        """Follow a move of the rollout to another stage of the plan (that stage's clock
        starts at `now`); False when the percentage is not a stage of the plan at all."""
        stages = self.stages
        if 0 <= self.stage_index < len(stages) and stages[self.stage_index] == percentage:
            return True
        if percentage not in stages:
            return False
        self.start_stage(stages.index(percentage), now)
        return True

    def start_stage(self, index: int, now: datetime) -> None:
        """Move to the stage at `index`: its clock starts at `now`, nothing is ready yet,
        and a watch kept from an earlier arrival at the last stage is forgotten."""
        self.stage_index = index
        self.stage_started_at = now
        self.ready = False
        self.baseline, self.completed_at = None, None

    @property
    def on_last_stage(self) -> bool:
        return self.stage_index == len(self.stages) - 1


class GuardEvaluation(db.Model):
    """One evaluation of the rollout guard: the figures it saw, the thresholds it applied,
    what it decided, and whether it acted."""

    __tablename__ = "guard_evaluations"
    __table_args__ = (sa.Index("ix_guard_evaluations_flag_id", "flag", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    flag: Mapped[str] = mapped_column(sa.String(100))
    stage: Mapped[int] = mapped_column(sa.Integer)
    percentage: Mapped[int] = mapped_column(sa.Integer)
    window_seconds: Mapped[int] = mapped_column(sa.Integer)
    # [{name, status: pass|fail|inconclusive|no_data, figures, threshold, detail, test?}]
    checks: Mapped[list[dict]] = mapped_column(sa.JSON)
    decision: Mapped[str] = mapped_column(sa.String(20))  # advance|hold|pause|rollback|ready
    reason: Mapped[str] = mapped_column(sa.Text)
    acted: Mapped[bool] = mapped_column(sa.Boolean)
    instance: Mapped[str] = mapped_column(sa.String(200))
    # When the guard expects to decide (progress.guard.eta.Eta.as_json); None before 0008.
    eta: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True, default=None)
    # A person's note on the decision (what happened, what was done about it).
    note: Mapped[str | None] = mapped_column(sa.Text, nullable=True, default=None)
    noted_by: Mapped[str | None] = mapped_column(sa.String(320), nullable=True, default=None)
    noted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)

    @property
    def eta_seconds(self) -> int | None:
        return (self.eta or {}).get("seconds")


class LockScreenReport(db.Model):
    """A lock screen a client reported, with the receipt its access answer carried: one row
    per receipt (so each counts once, across workers and instances), and ops' audit trail."""

    __tablename__ = "lock_screen_reports"
    __table_args__ = (sa.Index("ix_lock_screen_reports_reported_at", "reported_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    learner_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    module_id: Mapped[str] = mapped_column(sa.String(64))
    lesson_id: Mapped[str] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.String(20))  # the path whose answer locked
    answered_version: Mapped[int] = mapped_column(sa.BigInteger)
    min_version: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)  # as sent
    read_began_at: Mapped[datetime] = mapped_column(UTCDateTime)  # stamped before the read
    shown_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the lock was answered
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    judgement: Mapped[str] = mapped_column(sa.String(16))  # false_lock|true_lock|concurrent


class GuardDecisionCount(db.Model):
    """How many times the guard decided each thing, kept with the evaluations so that the
    decision counter reaches /metrics from wherever the guard runs (a worker, a sidecar),
    and survives the pruning of old evaluations."""

    __tablename__ = "guard_decision_counts"

    flag: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    decision: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
