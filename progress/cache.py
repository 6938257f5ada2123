"""The per-process progress cache: snapshots, the version rule, one lock.

It knows nothing of the database or HTTP: a snapshot is whatever the store read.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from cachetools import TTLCache


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """A learner's completed lessons at one progress version."""

    learner_id: uuid.UUID
    version: int
    completed: Mapping[int, datetime]  # lesson id -> completed at
    loaded_at: float = field(default_factory=time.monotonic)
    # True when it is the database's state at `version`: read in one statement, or derived
    # from such a snapshot by the one completion that made version + 1.
    exact: bool = True
    xp_total: int = 0  # the learner's XP at `version`

    def age_ms(self, now: float | None = None) -> int:
        return int(((time.monotonic() if now is None else now) - self.loaded_at) * 1000)

    def with_completion(
        self, lesson_id: int, completed_at: datetime, version: int, xp_total: int = 0
    ) -> ProgressSnapshot:
        """The optimistic copy after one more completion (progress only grows, and so does
        XP: `xp_total` is the total that completion's transaction wrote).

        Exact only when this copy was exact and `version` is the very next one: nothing else
        can have been committed in between (the store bumps versions one at a time)."""
        if lesson_id in self.completed and version <= self.version:
            return self
        completed = dict(self.completed)
        completed.setdefault(lesson_id, completed_at)
        exact = self.exact and version == self.version + 1
        return replace(
            self,
            completed=MappingProxyType(completed),
            version=max(self.version, version),
            xp_total=max(self.xp_total, xp_total),
            exact=exact,
            loaded_at=time.monotonic() if exact else self.loaded_at,
        )

    def proves(self, lesson_id: int, version: int) -> bool:
        """The entry is the database's state at `version` or later and holds the lesson."""
        return self.exact and self.version >= version and lesson_id in self.completed


@dataclass(frozen=True, slots=True)
class Known:
    """A version known to be committed and, when known, a WAL position (bytes, as
    `pg_lsn - '0/0'`) that its commit can't be past: any replica that has replayed the
    position holds the version. None: no position known (SQLite, or not told)."""

    version: int
    position: int | None = None

    def needs(self, other: Known) -> Known:
        """What a read must reach to honour both: the higher version with its position;
        for the same version, the lower position (either one proves it)."""
        if self.version != other.version:
            return self if self.version > other.version else other
        positions = [p for p in (self.position, other.position) if p is not None]
        return Known(self.version, min(positions) if positions else None)


UNKNOWN = Known(0)


class ProgressCache:
    """A TTLCache of snapshots per learner, guarded by a lock (cachetools is not thread-safe).

    The version rule lives here: an entry is only replaced by a snapshot of an equal or
    higher version, so two concurrent completions can't erase each other. `floor` keeps
    the highest version known to be committed per learner, so an entry behind it can be
    told apart from a fresh one, and beside it, when known, a WAL position its commit can't
    be past (`known`): a replica that has replayed it holds that version.
    """

    def __init__(
        self, maxsize: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TTLCache[uuid.UUID, ProgressSnapshot] = TTLCache(
            maxsize=maxsize, ttl=ttl_s, timer=timer
        )
        self._floors: TTLCache[uuid.UUID, Known] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=timer)
        self._lock = threading.Lock()

    def get(self, learner_id: uuid.UUID) -> ProgressSnapshot | None:
        with self._lock:
            return self._entries.get(learner_id)

    def put(self, snapshot: ProgressSnapshot) -> bool:
        """Store `snapshot` unless the entry holds a newer version; True if stored."""
        with self._lock:
            current = self._entries.get(snapshot.learner_id)
            if current is not None and current.version > snapshot.version:
                return False
            self._entries[snapshot.learner_id] = snapshot
            return True

    def apply(
        self,
        learner_id: uuid.UUID,
        change: Callable[[ProgressSnapshot], ProgressSnapshot],
    ) -> ProgressSnapshot | None:
        """Replace an existing entry with `change(entry)` atomically; None if absent."""
        with self._lock:
            current = self._entries.get(learner_id)
            if current is None:
                return None
            updated = change(current)
            if updated.version < current.version:
                return current
            self._entries[learner_id] = updated
            # Not a second lookup: with a short TTL the entry can expire before it.
            return updated

    def raise_floor(self, learner_id: uuid.UUID, version: int, position: int | None = None) -> None:
        """Remember that `version` is committed (and, if given, a WAL position its commit
        can't be past); entries below it are behind. A newer version replaces the floor and
        its position; the same version only gains a position it lacked, or a lower one."""
        with self._lock:
            current = self._floors.get(learner_id, UNKNOWN)
            tighter = position is not None and (
                current.position is None or position < current.position
            )
            if version > current.version or (version == current.version and tighter):
                self._floors[learner_id] = Known(version, position)

    def floor(self, learner_id: uuid.UUID) -> int:
        with self._lock:
            return self._floors.get(learner_id, UNKNOWN).version

    def known(self, learner_id: uuid.UUID) -> Known:
        """The floor and, when known, the WAL position its commit can't be past."""
        with self._lock:
            return self._floors.get(learner_id, UNKNOWN)

    def invalidate(self, learner_id: uuid.UUID, below_version: int | None = None) -> bool:
        """Drop the entry (only if older than `below_version`, when given)."""
        with self._lock:
            current = self._entries.get(learner_id)
            if current is None or (below_version is not None and current.version >= below_version):
                return False
            del self._entries[learner_id]
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._floors.clear()


class SnapshotMemo:
    """Snapshots per learner kept as they were put, with no version rule and no floor: the
    legacy path's review cache, as the old app kept its learners' vocabulary progress."""

    def __init__(self, maxsize: int, ttl_s: float) -> None:
        self._entries: TTLCache[uuid.UUID, ProgressSnapshot] = TTLCache(maxsize=maxsize, ttl=ttl_s)
        self._lock = threading.Lock()

    def get(self, learner_id: uuid.UUID) -> ProgressSnapshot | None:
        with self._lock:
            return self._entries.get(learner_id)

    def put(self, snapshot: ProgressSnapshot) -> None:
        with self._lock:
            self._entries[snapshot.learner_id] = snapshot

    def forget(self, learner_id: uuid.UUID) -> bool:
        with self._lock:
            return self._entries.pop(learner_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
