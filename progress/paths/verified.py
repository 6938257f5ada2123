"""The verified path: the seed's five layers, made exact.

1. optimistic update: after the commit the entry is patched at once, if it is exactly the
   state before this write (then it is exact at the new version: proof by construction);
2. verified update: otherwise re-read from the primary, replace the entry, check the lesson
   is in it; both steps bounded by PROGRESS_CACHE_UPDATE_TIMEOUT_MS;
3. navigation guard: never answer from a snapshot older than the version the client sent
   (minVersion) or that this worker wrote (the cache's floor);
4. staleness fallback: an entry at or above that version is used however old, since an
   "accessible" from any committed state stays true (progress only grows); a "locked" not
   read from the primary is confirmed there (the double check; from an entry older than
   PROGRESS_STALE_AFTER_MS always, even with the double check off), and the primary's
   newer state replaces the entry;
5. route, don't wait: a read that needs a known version goes to the replica only when the
   replica is known to have replayed that version's WAL position, otherwise to the primary
   at once; a replica read below the version is never believed. Only when the version's
   position is unknown (a client that sent minVersion alone) is the replica read and
   retried with backoff, then the primary answers.
Plus the circuit breaker around the cache. The review set is derived from the same read as
the access check (3 to 5), so it is never behind a version the learner holds; a set for a
client that sent no version (or from an entry past the staleness fallback) and not read
from the primary is confirmed there as a cached "locked" is.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from flask import Blueprint, Flask, current_app
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import OperationalError

from .. import faults, metrics, store
from ..cache import Known, ProgressSnapshot
from ..curriculum import LessonRef, is_lesson_accessible
from ..worker import STATE_KEY, worker_state
from . import (
    AccessAnswer,
    CompletionAnswer,
    ReviewAnswer,
    count_access,
    count_review,
    install_path,
    missing_review_lessons,
    record_completion,
    record_false_lock,
    record_stale_review,
)

bp = Blueprint("verified_path", __name__)
log = logging.getLogger(__name__)
NAME = "verified"


@dataclass(frozen=True)
class VerifiedSettings:
    stale_after_ms: int
    double_check_after_ms: int
    cache_update_timeout_s: float
    retry_base_s: float
    retry_max_s: float

    @classmethod
    def from_config(cls, config: dict) -> VerifiedSettings:
        return cls(
            stale_after_ms=config["PROGRESS_STALE_AFTER_MS"],
            double_check_after_ms=config["PROGRESS_DOUBLE_CHECK_AFTER_MS"],
            cache_update_timeout_s=config["PROGRESS_CACHE_UPDATE_TIMEOUT_MS"] / 1000,
            retry_base_s=config["PROGRESS_RETRY_BASE_MS"] / 1000,
            retry_max_s=config["PROGRESS_RETRY_MAX_MS"] / 1000,
        )


@dataclass(frozen=True, slots=True)
class Read:
    snapshot: ProgressSnapshot
    source: str  # "cache" | "db"
    from_primary: bool


class VerifiedPath:
    name = NAME
    reads_min_version = True  # layer 3

    def __init__(self, settings: VerifiedSettings) -> None:
        self.settings = settings

    # -- completion ---------------------------------------------------------------------

    def complete_lesson(
        self, learner_id: uuid.UUID, lesson: LessonRef, idempotency_key: str | None
    ) -> CompletionAnswer:
        state = worker_state()
        # A DB failure: cache nothing.
        completion = record_completion(NAME, learner_id, lesson, idempotency_key)
        version = completion.version
        # older entries are now behind; a replica past the position holds this version
        state.cache.raise_floor(learner_id, version, completion.position)
        xp = (completion.xp_earned, completion.xp_total, completion.position)
        if not state.breaker.allows_cache():
            metrics.cache_updates.labels(NAME, "skipped").inc()
            return CompletionAnswer(True, True, False, version, *xp)

        cache_updated = self._verified_update(learner_id, lesson, completion)
        return CompletionAnswer(True, True, cache_updated, version, *xp)

    def _verified_update(
        self, learner_id: uuid.UUID, lesson: LessonRef, completion: store.Completion
    ) -> bool:
        """Layers 1 and 2 on the background pool, so the whole update is bounded."""
        state = worker_state()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        started = time.perf_counter()
        future = state.submit(
            NAME,
            _update_entry,
            app,
            learner_id,
            lesson.id,
            completion,
        )
        try:
            result = "verified" if future.result(self.settings.cache_update_timeout_s) else "failed"
        except FutureTimeout:
            result = "timeout"
        except Exception:
            log.warning("verified cache update failed", exc_info=True)
            result = "failed"
        metrics.cache_update_seconds.labels(NAME).observe(time.perf_counter() - started)
        metrics.cache_updates.labels(NAME, result).inc()
        if result == "verified":
            state.breaker.record_success()
            return True
        state.breaker.record_failure()
        # the next check reads the DB
        state.cache.invalidate(learner_id, below_version=completion.version + 1)
        return False

    # -- access check ----------------------------------------------------------------------

    def check_access(
        self,
        learner_id: uuid.UUID,
        lesson: LessonRef,
        min_version: int,
        min_position: int | None = None,
    ) -> AccessAnswer:
        curriculum = worker_state().curriculum()
        read = self._read(learner_id, self._needed(learner_id, min_version, min_position))
        accessible = is_lesson_accessible(curriculum, read.snapshot.completed, lesson)
        if not accessible and not read.from_primary and self._needs_confirmation(read):
            # 4. Only "locked" needs proof: progress only grows, so "accessible" can't be false.
            primary = self._confirm_on_primary(learner_id, read)
            if is_lesson_accessible(curriculum, primary.completed, lesson):
                if read.source == "cache":
                    metrics.cache_mismatches.labels(NAME).inc()
                record_false_lock(NAME, learner_id, lesson, "double_check")
                accessible = True
            read = Read(primary, "db", from_primary=True)
        return count_access(
            NAME,
            AccessAnswer(
                accessible=accessible,
                source=read.source,  # type: ignore[arg-type]
                cache_age_ms=read.snapshot.age_ms() if read.source == "cache" else None,
                version=read.snapshot.version,
            ),
        )

    def read_progress(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ProgressSnapshot:
        """A page (re)load: always a fresh read, at least at the version known here."""
        state = worker_state()
        needed = self._needed(learner_id, min_version, min_position)
        snapshot = self._read_db(learner_id, needed).snapshot
        if state.breaker.allows_cache():
            state.cache.put(snapshot)
        return snapshot

    def read_review(
        self, learner_id: uuid.UUID, min_version: int, min_position: int | None = None
    ) -> ReviewAnswer:
        """The review set from the access check's read (at least the version known), never
        a copy of its own. A set at the client's minVersion or later holds every lesson the
        client was told it completed. Without one, any copy can lack a completion, so a set
        not read from the primary is confirmed there as a cached "locked" is (the double
        check); one the primary contradicts is counted and the primary's set is answered."""
        read = self._read(learner_id, self._needed(learner_id, min_version, min_position))
        if not read.from_primary and self._review_needs_confirmation(read, min_version):
            primary = self._confirm_on_primary(learner_id, read, "review_check")
            missing = missing_review_lessons(worker_state().curriculum(), read.snapshot, primary)
            if missing:
                record_stale_review(NAME, missing, "double_check")
            read = Read(primary, "db", from_primary=True)
        return count_review(NAME, ReviewAnswer(read.snapshot, read.source))  # type: ignore[arg-type]

    def _review_needs_confirmation(self, read: Read, min_version: int) -> bool:
        """A client that sent its version needs no confirmation of a set read at it, unless
        the set is an entry past the staleness fallback: a completion it hasn't heard of
        (another device's, within an announcement's delay) shows at its next review. This
        keeps reviews off the primary (docs/design.md#the-review-set-and-xp)."""
        if min_version and read.snapshot.version >= min_version and not self._stale(read):
            return False
        return self._needs_confirmation(read)

    def _stale(self, read: Read) -> bool:
        return read.source == "cache" and read.snapshot.age_ms() >= self.settings.stale_after_ms

    def _needs_confirmation(self, read: Read) -> bool:
        """Whether a "locked" not read from the primary is confirmed there."""
        if self._stale(read):
            return True  # the staleness fallback: an old entry's "locked" always is
        if read.source == "cache" and read.snapshot.age_ms() < self.settings.double_check_after_ms:
            return False
        return not faults.current().disable_double_check  # the double check, replicas' too

    def _confirm_on_primary(
        self, learner_id: uuid.UUID, read: Read, reason: str = "double_check"
    ) -> ProgressSnapshot:
        """The double check's read of the primary, which also replaces an older entry."""
        state = worker_state()
        primary = self._load_primary(learner_id, reason)
        if read.source == "cache" and primary.version > read.snapshot.version:
            metrics.staleness_incidents.labels(NAME).inc()  # a cached entry behind the primary
        if state.breaker.allows_cache():
            state.cache.put(primary)
        return primary

    @staticmethod
    def _needed(learner_id: uuid.UUID, min_version: int, min_position: int | None) -> Known:
        """The version a read must reach (the client's or this worker's floor, the higher)
        and, when known, a WAL position that proves a replica holds it."""
        sent = Known(min_version, min_position if min_version else None)
        return worker_state().cache.known(learner_id).needs(sent)

    def _read(self, learner_id: uuid.UUID, needed: Known) -> Read:
        """3 and 4: an entry at or above the known version is used, however old."""
        state = worker_state()
        if not state.breaker.allows_cache():
            return self._read_db(learner_id, needed)
        entry = state.cache.get(learner_id)
        if entry is not None and entry.version >= needed.version:
            metrics.cache_lookups.labels(NAME, "hit").inc()
            return Read(entry, "cache", from_primary=False)
        read = self._read_db(learner_id, needed)
        if entry is not None and read.snapshot.version > entry.version:
            metrics.cache_lookups.labels(NAME, "stale").inc()
            metrics.staleness_incidents.labels(NAME).inc()
        else:  # none, or behind a version nobody holds (a bogus minVersion): just unusable
            metrics.cache_lookups.labels(NAME, "miss").inc()
        state.cache.put(read.snapshot)
        return read

    # -- 5. reads that honour a known version ---------------------------------------------

    def _backoff(self) -> Iterator[float]:
        """Exponential delays from PROGRESS_RETRY_BASE_MS while they fit the retry budget."""
        deadline = time.monotonic() + self.settings.retry_max_s
        delay = self.settings.retry_base_s
        while time.monotonic() + delay <= deadline:
            yield delay
            delay *= 2

    def _read_db(self, learner_id: uuid.UUID, needed: Known) -> Read:
        """5. Where the read goes: nothing to wait for, the replica; a version whose position
        the replica has replayed, the replica; a position it hasn't, the primary at once. A
        replica answer below the version is never believed, whatever the positions said.
        Without a position on either side (the client's or a replica that can't say its
        own), the replica is retried with backoff as before."""
        if not store.has_replica():  # none, or set aside after a failure
            return Read(self._load_primary(learner_id, "no_replica"), "db", from_primary=True)
        if needed.version == 0:
            return Read(self._load_replica(learner_id, "no_version"), "db", from_primary=False)
        if needed.position is None or store.replica_cannot_say_its_position():
            return self._wait_for_replica(learner_id, needed.version)  # as before positions
        if store.replica_has_replayed(needed.position):
            return self._read_replayed(learner_id, needed, "replayed")
        if store.replica_position_unasked():  # this read asks it (a worker's first, say)
            return self._read_replayed(learner_id, needed, "replay_unknown")
        return Read(self._load_primary(learner_id, "replica_behind"), "db", from_primary=True)

    def _read_replayed(self, learner_id: uuid.UUID, needed: Known, reason: str) -> Read:
        """The replica, said to have replayed the version's position (or not yet asked):
        believed only at the version or later. Below it, the position didn't go with its
        version (a client's from an older completion, or a bogus one), the replica was
        replaced meanwhile, or it hadn't replayed it: the primary answers."""
        snapshot = self._load_replica(learner_id, reason)
        if snapshot.version >= needed.version:
            return Read(snapshot, "db", from_primary=False)
        return Read(self._load_primary(learner_id, "replica_missed"), "db", from_primary=True)

    def _wait_for_replica(self, learner_id: uuid.UUID, floor: int) -> Read:
        """The version's position is unknown: read the replica, retried with backoff while
        it is behind, then the primary answers."""
        delays = self._backoff()
        checked_primary = False
        behind_since = None  # the first replica read found behind the version
        while True:
            snapshot = self._load_replica(learner_id, "position_unknown")
            if snapshot.version >= floor:
                _waited(behind_since)
                return Read(snapshot, "db", from_primary=False)
            if not checked_primary:
                # A version the primary doesn't hold either (a client's minVersion from
                # elsewhere): no replica will catch up to it, answer from the primary now.
                checked_primary = True
                behind_since = time.monotonic()
                primary = self._load_primary(learner_id, "version_check")
                if primary.version < floor:
                    return Read(primary, "db", from_primary=True)
            delay = next(delays, None)
            if delay is None:
                break
            metrics.db_retries.labels("replica_lag").inc()
            time.sleep(delay)
        read = Read(self._load_primary(learner_id, "retry_exhausted"), "db", from_primary=True)
        _waited(behind_since)
        return read

    @staticmethod
    def _load_replica(learner_id: uuid.UUID, reason: str) -> ProgressSnapshot:
        """The replica (the store answers from the primary if it fails, and counts that)."""
        return store.load_progress(learner_id, path=NAME, reason=reason, replica=True)

    def _load_primary(self, learner_id: uuid.UUID, reason: str) -> ProgressSnapshot:
        """The primary, retried with backoff on connection errors within the retry budget."""
        delays = self._backoff()
        while True:
            try:
                return store.load_progress(learner_id, path=NAME, reason=reason)
            except OperationalError:
                delay = next(delays, None)
                if delay is None:
                    raise
                metrics.db_retries.labels("db_error").inc()
                time.sleep(delay)


def _waited(behind_since: float | None) -> None:
    """The replica's lag as a read waited it out (`flask rollout tune` reads it)."""
    if behind_since is not None:
        metrics.replica_wait_seconds.observe(time.monotonic() - behind_since)


def _update_entry(
    app: Flask, learner_id: uuid.UUID, lesson_id: int, completion: store.Completion
) -> bool:
    """Runs on the background pool. 1: patch the entry if it is the state just before this
    write; an exact entry at this version that holds the lesson is proof by construction.
    2: otherwise re-read from the primary, replace the entry, and check it holds the lesson."""
    faults.before_cache_update()
    cache = app.extensions[STATE_KEY].cache
    version = completion.version
    patched = cache.apply(
        learner_id,
        lambda entry: (
            entry.with_completion(lesson_id, completion.completed_at, version, completion.xp_total)
            if entry.version >= version - 1
            else entry
        ),
    )
    if patched is not None and patched.proves(lesson_id, version):
        return True
    with app.app_context():
        cache.put(store.load_progress(learner_id, path=NAME, reason="cache_update"))
    entry = cache.get(learner_id)
    return entry is not None and entry.version >= version and lesson_id in entry.completed


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    install_path(state.app, VerifiedPath(VerifiedSettings.from_config(state.app.config)))
