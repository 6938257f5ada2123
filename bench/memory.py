"""What a cached learner costs: `python -m bench.memory`.

Fills the service's own ProgressCache with learners whose snapshots hold every lesson of
the course (20), built as the store builds them (a UUID key, a dict of lesson id ->
timezone-aware datetime behind a MappingProxyType), and counts the bytes allocated with
tracemalloc: the entry alone, and the entry plus its version floor (which a completion or
an announcement adds).
"""

from __future__ import annotations

import json
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from progress.cache import ProgressCache, ProgressSnapshot


def _snapshot(learner: uuid.UUID, lessons: int, base: datetime) -> ProgressSnapshot:
    completed = {
        lesson_id: base + timedelta(minutes=lesson_id) for lesson_id in range(1, lessons + 1)
    }
    return ProgressSnapshot(learner, lessons, MappingProxyType(completed))


def bytes_per_cached_learner(learners: int = 10_000, lessons: int = 20) -> dict[str, int]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    cache = ProgressCache(maxsize=learners, ttl_s=3600)
    ids = [uuid.UUID(int=n + 1) for n in range(learners)]
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        for learner in ids:
            cache.put(_snapshot(learner, lessons, base))
        entries = tracemalloc.take_snapshot()
        for learner in ids:
            cache.raise_floor(learner, lessons)
        floors = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    def grown(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> int:
        return sum(stat.size_diff for stat in after.compare_to(before, "filename"))

    # The learner ids exist before the cache sees them (they come from the token), but a
    # cached learner keeps its UUID alive: count it.
    uuid_bytes = sum(ident.__sizeof__() + ident.int.__sizeof__() for ident in ids[:100]) // 100
    entry = grown(entries, start) // learners + uuid_bytes
    with_floor = entry + grown(floors, entries) // learners
    return {
        f"bytes per cached learner ({lessons} lessons), entry": entry,
        f"bytes per cached learner ({lessons} lessons), entry + version floor": with_floor,
    }


if __name__ == "__main__":
    print(json.dumps(bytes_per_cached_learner(), indent=2))
