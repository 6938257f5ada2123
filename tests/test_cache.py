"""The per-process cache: the version rule, atomic patches, TTL, thread safety."""

import threading
import uuid
from datetime import UTC, datetime
from types import MappingProxyType

from progress.cache import ProgressCache, ProgressSnapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def snap(learner: uuid.UUID, version: int, lessons: set[int]) -> ProgressSnapshot:
    return ProgressSnapshot(learner, version, MappingProxyType(dict.fromkeys(lessons, NOW)))


def test_an_entry_is_never_replaced_by_an_older_version():
    cache, learner = ProgressCache(100, 60), uuid.uuid4()
    assert cache.put(snap(learner, 3, {1, 2, 3}))
    assert not cache.put(snap(learner, 2, {1, 2}))
    assert cache.get(learner).version == 3
    assert cache.put(snap(learner, 3, {1, 2, 3}))  # an equal version refreshes the entry


def test_apply_patches_an_existing_entry_and_ignores_an_absent_one():
    cache, learner = ProgressCache(100, 60), uuid.uuid4()
    assert cache.apply(learner, lambda s: s.with_completion(9, NOW, 1)) is None
    cache.put(snap(learner, 1, {1}))
    patched = cache.apply(learner, lambda s: s.with_completion(2, NOW, 2))
    assert patched.version == 2
    assert set(patched.completed) == {1, 2}


def test_entries_expire_after_the_ttl():
    clock = [0.0]
    cache, learner = ProgressCache(100, 5, timer=lambda: clock[0]), uuid.uuid4()
    cache.put(snap(learner, 1, {1}))
    clock[0] = 4.9
    assert cache.get(learner) is not None
    clock[0] = 5.1
    assert cache.get(learner) is None


def test_floor_remembers_the_highest_committed_version():
    cache, learner = ProgressCache(100, 60), uuid.uuid4()
    cache.raise_floor(learner, 4)
    cache.raise_floor(learner, 2)
    assert cache.floor(learner) == 4
    assert cache.floor(uuid.uuid4()) == 0


def test_invalidate_only_drops_entries_older_than_the_given_version():
    cache, learner = ProgressCache(100, 60), uuid.uuid4()
    cache.put(snap(learner, 5, {1}))
    assert not cache.invalidate(learner, below_version=5)
    assert cache.invalidate(learner, below_version=6)
    assert cache.get(learner) is None


def test_concurrent_puts_and_patches_keep_the_highest_version_and_never_raise():
    cache = ProgressCache(maxsize=50, ttl_s=0.01)  # tiny and expiring: maximal churn
    learners = [uuid.uuid4() for _ in range(80)]
    errors = []

    def hammer(seed: int) -> None:
        try:
            for i in range(2000):
                learner = learners[(seed * 7 + i) % len(learners)]
                cache.put(snap(learner, i, {i}))
                cache.apply(learner, lambda s, i=i: s.with_completion(i + 1, NOW, i + 1))
                cache.get(learner)
        except Exception as exc:  # a KeyError inside TTLCache.expire() without the lock
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_patch_is_exact_only_from_the_version_just_before():
    learner = uuid.uuid4()
    base = snap(learner, 3, {1, 2, 3})
    next_one = base.with_completion(4, NOW, 4)
    assert next_one.exact
    assert next_one.proves(4, 4)
    skipped = base.with_completion(6, NOW, 6)  # versions 4 and 5 were someone else's
    assert not skipped.exact
    assert not skipped.proves(6, 6)
    assert base.with_completion(2, NOW, 3) is base  # already there: unchanged, still exact


def test_the_cache_holds_at_most_maxsize_learners():
    """PROGRESS_CACHE_MAXSIZE bounds the entries and the floors: the oldest go first."""
    cache = ProgressCache(maxsize=100, ttl_s=300)
    learners = [uuid.uuid4() for _ in range(1000)]
    for version, learner in enumerate(learners, start=1):
        cache.put(ProgressSnapshot(learner, version, MappingProxyType({})))
        cache.raise_floor(learner, version)
    held = [learner for learner in learners if cache.get(learner) is not None]
    floors = [learner for learner in learners if cache.floor(learner) > 0]
    assert held == learners[-100:]
    assert floors == learners[-100:]
