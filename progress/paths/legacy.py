"""The legacy path: the old app's behaviour, kept faithfully as the rollout's baseline.

Completion writes the DB, then patches the cache in the background (fire-and-forget,
errors swallowed). The access check trusts any cache entry the TTL has kept.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from .. import faults, metrics, store
from ..cache import ProgressCache, ProgressSnapshot
from ..curriculum import LessonRef, is_lesson_accessible
from ..worker import worker_state
from . import (
    AccessAnswer,
    CompletionAnswer,
    count_access,
    install_path,
    primary_confirms_locked,
    record_completion,
    record_false_lock,
)

bp = Blueprint("legacy_path", __name__)
log = logging.getLogger(__name__)


class LegacyPath:
    name = "legacy"
    reads_min_version = False  # the old app had no navigation guard

    def complete_lesson(self, learner_id: uuid.UUID, lesson: LessonRef) -> CompletionAnswer:
        state = worker_state()
        completion = record_completion(self.name, learner_id, lesson)
        committed = time.perf_counter()
        state.submit(
            self.name,
            _patch_cache,
            state.cache,
            learner_id,
            lesson.id,
            completion.completed_at,
            completion.version,
            committed,
        )
        # The old app never knew whether its cache update landed.
        return CompletionAnswer(
            success=True, db_updated=True, cache_updated=False, version=completion.version
        )

    def check_access(
        self, learner_id: uuid.UUID, lesson: LessonRef, min_version: int
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

    def read_progress(self, learner_id: uuid.UUID, min_version: int) -> ProgressSnapshot:
        return self._snapshot(learner_id)[0]

    def _snapshot(self, learner_id: uuid.UUID) -> tuple[ProgressSnapshot, str]:
        cache = worker_state().cache
        snapshot = cache.get(learner_id)
        if snapshot is not None:
            metrics.cache_lookups.labels(self.name, "hit").inc()
            return snapshot, "cache"
        metrics.cache_lookups.labels(self.name, "miss").inc()
        snapshot = store.load_progress(learner_id, replica=True)  # the old app read the replica
        cache.put(snapshot)
        return snapshot, "db"

    def _audit(self, learner_id: uuid.UUID, lesson: LessonRef) -> None:
        """Compare a locked answer with the primary after it was chosen, without changing
        it, so the legacy path's false locks are counted as the verified path's are."""
        try:
            if not primary_confirms_locked(learner_id, lesson):
                record_false_lock(self.name, learner_id, lesson, "audit")
        except Exception:
            log.warning("legacy audit could not read the primary", exc_info=True)


def _patch_cache(
    cache: ProgressCache,
    learner_id: uuid.UUID,
    lesson_id: int,
    completed_at: datetime,
    version: int,
    committed: float,
) -> None:
    try:
        faults.before_cache_update()
        patched = cache.apply(
            learner_id, lambda entry: entry.with_completion(lesson_id, completed_at, version)
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


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    install_path(state.app, LegacyPath())
