"""The read replica, per worker: its health and how far it has replayed.

Health: a replica that fails (down, or hung past the database deadline) is set aside for
PROGRESS_REPLICA_RECHECK_S, reads go to the primary meanwhile (on both paths), the warning is
logged once per interval, and /readyz shows it.

Replay position: every replica read also returns `pg_last_wal_replay_lsn()`, and the worker
keeps the latest one it saw. The verified path sends a read that needs a learner's version to
the replica only when this position is at or past that version's commit position
(progress/paths/verified.py); a position that is old only sends more reads to the primary.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app

from .set_aside import SetAside

log = logging.getLogger(__name__)
HEALTH_KEY = "progress.replica"
POSITION_KEY = "progress.replica_position"


class ReplayPosition:
    """The replica's replay position as last reported to this worker: bytes of WAL (as
    `pg_lsn - '0/0'`), None until a replica read reports one (or when it can't: a replica
    that is not a streaming standby reports none). Latest, not highest: two reads that
    report out of order leave it a little behind, which is only conservative, and a
    replaced replica's lower position is believed at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._position: int | None = None
        self._seen_at = 0.0
        self._asked = False  # a replica read has reported (a position, or that it has none)

    def report(self, position: int | None) -> None:
        with self._lock:
            self._position = position
            self._seen_at = time.monotonic()
            self._asked = True

    def forget(self) -> None:
        """A replica set aside: whatever it said before no longer routes reads, and the
        next read asks it again."""
        with self._lock:
            self._position = None
            self._asked = False

    @property
    def cannot_say(self) -> bool:
        """The replica answered without a position (it is not a streaming standby)."""
        with self._lock:
            return self._asked and self._position is None

    @property
    def unasked(self) -> bool:
        """No replica read has reported since the worker started or the replica failed."""
        with self._lock:
            return not self._asked

    @property
    def position(self) -> int | None:
        with self._lock:
            return self._position

    def has_replayed(self, position: int) -> bool:
        """Known to be at or past `position` (False when the replay position is unknown)."""
        replayed = self.position
        return replayed is not None and replayed >= position

    def age_s(self) -> float | None:
        with self._lock:
            return None if self._position is None else time.monotonic() - self._seen_at


def init_app(app: Flask) -> SetAside:
    health = SetAside(
        app.config["PROGRESS_REPLICA_RECHECK_S"],
        log,
        unavailable="read replica unavailable; reading from the primary",
        recovered="read replica answers again",
        meanwhile="reads go to the primary",
    )
    app.extensions[HEALTH_KEY] = health
    app.extensions[POSITION_KEY] = ReplayPosition()
    return health


def replica_health() -> SetAside:
    return current_app.extensions[HEALTH_KEY]


def replay_position() -> ReplayPosition:
    return current_app.extensions[POSITION_KEY]
