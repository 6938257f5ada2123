"""A dependency the service can work without, set aside when it fails: for `recheck_s` after
a failure nothing waits on it, its warning is logged once per interval (not once per
request), and /readyz reports it degraded until it answers again. The read replica and the
abuse limits' storage are two."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime


class SetAside:
    def __init__(
        self,
        recheck_s: float,
        log: logging.Logger,
        *,
        unavailable: str,
        recovered: str,
        meanwhile: str,
    ) -> None:
        """`unavailable` and `recovered` are the two log lines; `meanwhile` says in /readyz
        what the service does without it."""
        self.recheck_s = recheck_s
        self._log = log
        self._unavailable, self._recovered, self._meanwhile = unavailable, recovered, meanwhile
        self._lock = threading.Lock()
        self._set_aside_until = 0.0
        self._down_since: datetime | None = None
        self._error = ""
        self._last_warning = float("-inf")

    def usable(self) -> bool:
        """False while set aside; after the interval the next call tries it again."""
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
        if warn:  # at most once per interval, not on every call
            self._log.warning(
                self._unavailable, extra={"error": self._error, "recheck_s": self.recheck_s}
            )

    def answered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            self._log.warning(self._recovered, extra={"down_since": since.isoformat()})

    def describe(self) -> str:
        since = self._down_since
        if since is None:
            return "ok"
        # Degraded, not unready: the service does without it meanwhile.
        return (
            f"degraded (unavailable since {since.isoformat(timespec='seconds')}, "
            f"{self._meanwhile}; {self._error})"
        )
