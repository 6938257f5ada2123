"""Tables: learners (users), the ordered curriculum, completions, progress versions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


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

    module: Mapped[Module] = relationship(back_populates="lessons")


class LessonProgress(db.Model):
    """One completed lesson of one learner; progress only grows."""

    __tablename__ = "lesson_progress"
    __table_args__ = (sa.UniqueConstraint("user_id", "lesson_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique (user_id, lesson_id) index also serves lookups by learner.
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    lesson_id: Mapped[int] = mapped_column(sa.ForeignKey("lessons.id", ondelete="CASCADE"))
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProgressVersion(db.Model):
    """Bumped in the same transaction as every change to a learner's progress."""

    __tablename__ = "progress_versions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.BigInteger, default=0)
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
