"""The circuit breaker around the progress cache (seed: open after 3 consecutive failures)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

from . import metrics


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed: use the cache. Open: bypass it and read the DB. After the cool-down it lets
    the cache be tried again (half open); one success closes it, one failure reopens it."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def allows_cache(self) -> bool:
        return self.state is not BreakerState.OPEN

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            if self._state is not BreakerState.CLOSED:
                self._state = BreakerState.CLOSED
                metrics.circuit_breaker_open.set(0)

    def record_failure(self) -> None:
        with self._lock:
            self._maybe_half_open()
            self._failures += 1
            reopen = self._state is BreakerState.HALF_OPEN
            if reopen or (self._state is BreakerState.CLOSED and self._failures >= self.threshold):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                metrics.circuit_breaker_open.set(1)
                metrics.circuit_breaker_trips.inc()

    def describe(self) -> str:
        state = self.state
        if state is BreakerState.OPEN:
            return f"ok (open for {self._clock() - self._opened_at:.1f}s: cache bypassed)"
        return f"ok ({state.value})"

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
