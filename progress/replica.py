"""The read replica's health, per worker: a replica that fails (down, or hung past the
database deadline) is set aside for PROGRESS_REPLICA_RECHECK_S, reads go to the primary
meanwhile (on both paths), the warning is logged once per interval, and /readyz shows it."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from flask import Flask, current_app

log = logging.getLogger(__name__)
HEALTH_KEY = "progress.replica"


class ReplicaHealth:
    def __init__(self, recheck_s: float) -> None:
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._set_aside_until = 0.0
        self._down_since: datetime | None = None
        self._error = ""
        self._last_warning = float("-inf")

    def usable(self) -> bool:
        """False while set aside; after the interval the next read tries it again."""
        return time.monotonic() >= self._set_aside_until

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._set_aside_until = now + self.recheck_s
            self._down_since = self._down_since or datetime.now(UTC)
            self._error = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            warn = now - self._last_warning >= self.recheck_s
            if warn:
                self._last_warning = now
        if warn:  # at most once per interval, not on every read
            log.warning(
                "read replica unavailable; reading from the primary",
                extra={"error": self._error, "recheck_s": self.recheck_s},
            )

    def answered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning("read replica answers again", extra={"down_since": since.isoformat()})

    def describe(self) -> str:
        since = self._down_since
        if since is None:
            return "ok"
        # Degraded, not unready: the primary answers every read meanwhile.
        return (
            f"degraded (unavailable since {since.isoformat(timespec='seconds')}, reads go to "
            f"the primary; {self._error})"
        )


def init_app(app: Flask) -> ReplicaHealth:
    health = ReplicaHealth(app.config["PROGRESS_REPLICA_RECHECK_S"])
    app.extensions[HEALTH_KEY] = health
    return health


def replica_health() -> ReplicaHealth:
    return current_app.extensions[HEALTH_KEY]
