"""The legacy path: the old app's behaviour, kept faithfully as the rollout's baseline.

Completion writes the DB, then patches the cache and clears the learner's review cache in
the background (fire-and-forget, errors swallowed). The access check trusts any cache entry
the TTL has kept; the review set is served from the review cache the same way. Audits count
the false locks and stale review sets this shows.
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from .. import faults, metrics, store
from ..cache import ProgressCache, ProgressSnapshot, SnapshotMemo
from ..curriculum import LessonRef, is_lesson_accessible
from ..worker import worker_state
from . import (
    AccessAnswer,
    CompletionAnswer,
    ReviewAnswer,
    count_access,
    count_review,
    install_path,
    missing_review_lessons,
    primary_confirms_locked,
    record_completion,
    record_false_lock,
    record_stale_review,
)

bp = Blueprint("legacy_path", __name__)
log = logging.getLogger(__name__)


class LegacyPath:
    name = "legacy"
    reads_min_version = False  # the old app had no navigation guard

    def complete_lesson(
        self, learner_id: uuid.UUID, lesson: LessonRef, idempotency_key: str | None
    ) -> CompletionAnswer:
        state = worker_state()
        completion = record_completion(self.name, learner_id, lesson, idempotency_key)
        committed = time.perf_counter()
        state.submit(
            self.name,
            _patch_cache,
            state.cache,
            learner_id,
            lesson.id,
            completion,
            committed,
        )
        # The old app's phase 2 "critical for review mode": clear the vocabulary cache, in
        # the background too, in this worker only.
        state.submit(self.name, _clear_review_cache, state.review_cache, learner_id)
        # The old app never knew whether its cache update landed.
        return CompletionAnswer(
            success=True,
            db_updated=True,
            cache_updated=False,
            version=completion.version,
            xp_earned=completion.xp_earned,
            xp_total=completion.xp_total,
            position=completion.position,
        )

    def check_access(
        self,
        learner_id: uuid.UUID,
        lesson: LessonRef,
        min_version: int,
        min_position: int | None = None,
    ) -> AccessAnswer:
        # The old app had no navigation guard: min_version is ignored.
        state = worker_state()
        snapshot, source = self._snapshot(learner_id)
        accessible = is_lesson_accessible(state.curriculum(), snapshot.completed, lesson)
        answer = AccessAnswer(
            accessible=accessible,
            source=source,
            cache_age_ms=snapshot.age_ms() if source == "cache" else None,
            version=snapshot.version,
        )
        if not accessible and (source == "cache" or store.has_replica()):
            self._audit(learner_id, lesson)
        return count_access(self.name, answer)

    def read_progress(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ProgressSnapshot:
        return self._snapshot(learner_id)[0]

    def read_review(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ReviewAnswer:
        """From the review cache while the TTL keeps it (min_version is ignored, as the old
        app had no navigation guard); otherwise from the database (the replica, believed)."""
        review_cache = worker_state().review_cache
        snapshot = review_cache.get(learner_id)
        answer = ReviewAnswer(snapshot, "cache") if snapshot is not None else None
        if answer is None:
            answer = ReviewAnswer(self._load(learner_id), "db")
            review_cache.put(answer.snapshot)
        if answer.source == "cache" or store.has_replica():
            self._audit_review(learner_id, answer.snapshot)
        return count_review(self.name, answer)

    def _snapshot(self, learner_id: uuid.UUID) -> tuple[ProgressSnapshot, str]:
        cache = worker_state().cache
        snapshot = cache.get(learner_id)
        if snapshot is not None:
            metrics.cache_lookups.labels(self.name, "hit").inc()
            return snapshot, "cache"
        metrics.cache_lookups.labels(self.name, "miss").inc()
        snapshot = self._load(learner_id)
        cache.put(snapshot)
        return snapshot, "db"

    def _load(self, learner_id: uuid.UUID) -> ProgressSnapshot:
        """The old app read the replica, believed, with nothing to wait for."""
        return store.load_progress(learner_id, path=self.name, reason="no_version", replica=True)

    def _audit(self, learner_id: uuid.UUID, lesson: LessonRef) -> None:
        """Compare a locked answer with the primary after it was chosen, without changing
        it, so the legacy path's false locks are counted as the verified path's are."""
        try:
            if not primary_confirms_locked(self.name, learner_id, lesson):
                record_false_lock(self.name, learner_id, lesson, "audit")
        except Exception:
            log.warning("legacy audit could not read the primary", exc_info=True)

    def _audit_review(self, learner_id: uuid.UUID, served: ProgressSnapshot) -> None:
        """The same audit for the review set: compare the set served (not from the primary)
        with the primary's, without changing it, and count one that misses words."""
        try:
            primary = store.load_progress(learner_id, path=self.name, reason="audit")
            missing = missing_review_lessons(worker_state().curriculum(), served, primary)
            if missing:
                record_stale_review(self.name, missing, "audit")
        except Exception:
            log.warning("legacy audit could not read the primary", exc_info=True)


def _patch_cache(
    cache: ProgressCache,
    learner_id: uuid.UUID,
    lesson_id: int,
    completion: store.Completion,
    committed: float,
) -> None:
    try:
        faults.before_cache_update()
        patched = cache.apply(
            learner_id,
            lambda entry: entry.with_completion(
                lesson_id, completion.completed_at, completion.version, completion.xp_total
            ),
        )
        metrics.cache_updates.labels(
            LegacyPath.name, "skipped" if patched is None else "applied"
        ).inc()
    except Exception:  # the old app swallowed these
        metrics.cache_updates.labels(LegacyPath.name, "failed").inc()
        log.debug("legacy cache update failed", exc_info=True)
    finally:
        metrics.cache_update_seconds.labels(LegacyPath.name).observe(
            time.perf_counter() - committed
        )


def _clear_review_cache(review_cache: SnapshotMemo, learner_id: uuid.UUID) -> None:
    try:
        faults.before_cache_update()  # the same slow or failing background work
        review_cache.forget(learner_id)
    except Exception:  # the old app swallowed these
        log.debug("legacy review cache clear failed", exc_info=True)


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    install_path(state.app, LegacyPath())
