"""State that belongs to one worker process: the progress cache, the legacy path's review
cache, the loaded curriculum, identities already created, and a background thread pool
(made after gunicorn's fork)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from flask import Flask, current_app

from .breaker import CircuitBreaker
from .cache import ProgressCache, SnapshotMemo
from .curriculum import Curriculum, load_curriculum
from .extensions import start_with_requests
from .invalidation import ListenerHandle
from .per_process import PerProcess

STATE_KEY = "progress.worker"


class RecentlySeen:
    """A bounded, thread-safe memo of recent results (cachetools needs the lock)."""

    def __init__(self, maxsize: int) -> None:
        self._items: LRUCache[Hashable, Any] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class WorkerState:
    cache: ProgressCache
    known_identities: RecentlySeen  # learners already created in the database
    verified_tokens: RecentlySeen  # token -> (identity, expiry)
    breaker: CircuitBreaker
    listener: ListenerHandle
    review_cache: SnapshotMemo  # the legacy path's; the verified path derives review sets
    _curriculum: Curriculum | None = None
    # A thread pool per path, made in the process that uses it (threads do not survive fork).
    _executors: PerProcess[dict[str, Executor]] = field(
        default_factory=lambda: PerProcess(dict, close=_shut_down)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def curriculum(self) -> Curriculum:
        """Loaded once per process; `flask seed` on a running service needs a restart."""
        if self._curriculum is None:
            with self._lock:
                if self._curriculum is None:
                    self._curriculum = load_curriculum()
        return self._curriculum

    def submit(self, path: str, work: Callable[..., Any], *args: Any) -> Future:
        """Run `work` on `path`'s pool in a copy of the caller's context, so that its log
        lines carry the request's id, learner and path (progress/logs.py)."""
        return self.background(path).submit(contextvars.copy_context().run, work, *args)

    def background(self, path: str) -> Executor:
        """A thread pool per path for cache updates, so the legacy path's slow
        fire-and-forget patches never hold up the verified path's bounded ones. Created in
        the process that uses it (threads do not survive fork)."""
        pools = self._executors.get()
        pool = pools.get(path)
        if pool is None:
            with self._lock:
                pool = pools.get(path)
                if pool is None:
                    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"cache-{path}")
                    pools[path] = pool
        return pool

    def use_background(self, path: str, executor: Executor) -> None:
        """Run `path`'s cache updates on `executor` from now on in this process: the seam
        through which the interleaving model (tests/test_model.py) decides when they run."""
        pools = self._executors.get()
        with self._lock:
            pools[path] = executor

    def reset(self) -> None:
        """Forget everything this process holds (tests; a re-seeded curriculum)."""
        self.cache.clear()
        self.review_cache.clear()
        self.known_identities.clear()
        self.verified_tokens.clear()
        self.breaker.record_success()
        self._curriculum = None

    def shutdown(self) -> None:
        self.listener.stop()
        self._executors.reset()


def _shut_down(pools: dict[str, Executor]) -> None:
    for pool in pools.values():
        pool.shutdown(wait=True, cancel_futures=False)


def init_app(app: Flask) -> None:
    cache = ProgressCache(
        maxsize=app.config["PROGRESS_CACHE_MAXSIZE"], ttl_s=app.config["PROGRESS_CACHE_TTL_S"]
    )
    app.extensions[STATE_KEY] = state = WorkerState(
        cache=cache,
        listener=ListenerHandle(app, cache),
        review_cache=SnapshotMemo(
            maxsize=app.config["PROGRESS_CACHE_MAXSIZE"], ttl_s=app.config["PROGRESS_CACHE_TTL_S"]
        ),
        known_identities=RecentlySeen(maxsize=100_000),
        verified_tokens=RecentlySeen(maxsize=10_000),
        breaker=CircuitBreaker(
            threshold=app.config["PROGRESS_BREAKER_THRESHOLD"],
            cooldown_s=app.config["PROGRESS_BREAKER_COOLDOWN_MS"] / 1000,
        ),
    )

    start_with_requests(app, state.listener.ensure_started)  # a pid check once started


def worker_state() -> WorkerState:
    return current_app.extensions[STATE_KEY]
