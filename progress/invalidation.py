"""Cross-process coherence: a committed completion is announced on a PostgreSQL channel with
(learner id, version), and every worker raises that learner's floor in its cache, so the
verified path never trusts an entry older than a version committed anywhere.

The announcement's position: NOTIFY is sent on commit, so its payload can't hold the commit's
WAL position. The listener reads the primary's insert position once after each batch it
received (one round trip per batch, on its own connection, off the request path), which is
past every commit it has heard of, and keeps it beside each version in the floor: a replica
that has replayed it holds the version. The payload, and the NOTIFY traffic, stay as they were.

Each worker listens on a dedicated autocommit connection (not one from the SQLAlchemy pool)
in a background thread. Notifications are delivered only to sessions listening at that
moment, so on every (re)connect the cache is cleared: anything announced meanwhile is lost.
The legacy path ignores floors, as the old app had no invalidation.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from . import faults
from .cache import ProgressCache
from .db_deadline import DeadlineWatchdog, connect_timeout_s
from .per_process import PerProcess

CHANNEL = "progress_versions"
# Past every commit record already written, so past every commit announced so far.
INSERT_POSITION = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
# Without a deadline (PROGRESS_DB_TIMEOUT_MS=0), the connect timeout it always had.
UNBOUNDED_CONNECT_TIMEOUT_S = 5
log = logging.getLogger(__name__)


def announce(session: Session, learner_id: uuid.UUID, version: int) -> None:
    """Queue the announcement in the caller's transaction: sent on commit, never before."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": f"{learner_id}:{version}"},
        )


def libpq_dsn(sqlalchemy_url: str) -> str:
    return (
        sa.make_url(sqlalchemy_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


class VersionListener:
    """LISTEN in a daemon thread; reconnect with backoff; clear the cache on each connect.

    Under PROGRESS_DB_TIMEOUT_MS like every other database call: connecting, the LISTEN, and
    a ping after each quiet second. A server that stops answering looks, to a listener that
    only waits, exactly like one with nothing to announce; the ping (cut by the watchdog
    past the deadline) turns that into a reconnect, which clears the cache."""

    def __init__(
        self,
        dsn: str,
        cache: ProgressCache,
        max_backoff_s: float = 5.0,
        timeout_ms: int = 0,
        quiet_s: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._cache = cache
        self._max_backoff_s = max_backoff_s
        self._quiet_s = quiet_s
        self._connect_timeout_s = (
            connect_timeout_s(timeout_ms) if timeout_ms else UNBOUNDED_CONNECT_TIMEOUT_S
        )
        self._watchdog = DeadlineWatchdog(timeout_ms / 1000) if timeout_ms else None
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.connections = 0  # how many times it (re)connected
        self.backend_pid: int | None = None
        self._thread = threading.Thread(target=self._run, name="progress-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def describe(self) -> str:
        return "ok (listening)" if self.connected.is_set() else "ok (reconnecting: floors unset)"

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s
                ) as conn:
                    self._execute(conn, f"LISTEN {CHANNEL}")
                    self._cache.clear()  # announcements sent while we were away are gone
                    self.backend_pid = conn.info.backend_pid
                    self.connections += 1
                    self.connected.set()
                    backoff = 0.1
                    while not self._stop.is_set():
                        # The first announcement as soon as it comes, then what came with it.
                        waited = conn.notifies(timeout=self._quiet_s, stop_after=1)
                        batch = [n.payload for n in waited]
                        if not batch:  # quiet, or hung: ask (one round trip)
                            self._execute(conn, "SELECT 1")
                            continue
                        batch += [n.payload for n in conn.notifies(timeout=0)]
                        for payload in batch:  # the floors at once, as ever
                            self.apply(payload)
                        position = self._execute(conn, INSERT_POSITION)
                        for payload in batch:  # then where their commits can't be past
                            self.apply(payload, position)
            except Exception as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "progress notifications interrupted; reconnecting",
                    extra={"error": type(exc).__name__, "retry_in_s": backoff},
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    @property
    def deadline_cuts(self) -> int:
        """How many of its calls the deadline cut (for tests and logs)."""
        return self._watchdog.fired if self._watchdog else 0

    def _execute(self, conn: psycopg.Connection, statement: str) -> Any:
        """One statement under the deadline, its first value (if any); past the deadline the
        socket is cut and psycopg raises."""
        if self._watchdog is not None:
            self._watchdog.arm(conn)
        try:
            cursor = conn.execute(statement)
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else row[0]
        finally:
            if self._watchdog is not None:
                self._watchdog.disarm(conn)

    def apply(self, payload: str, position: int | None = None) -> None:
        """Raise the learner's floor to the announced version; with `position`, a WAL
        position read on the primary after the announcement arrived."""
        if faults.current().drop_notifications:
            return
        learner, _, version = payload.partition(":")
        try:
            self._cache.raise_floor(uuid.UUID(learner), int(version), position)
        except ValueError:
            log.warning("malformed progress notification", extra={"payload": payload[:100]})


class ListenerHandle:
    """One listener per worker process, started on first use (threads don't survive fork)."""

    def __init__(self, app: Flask, cache: ProgressCache) -> None:
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        self.enabled = url.startswith("postgresql")  # the embedded SQLite is one process
        self._dsn = libpq_dsn(url) if self.enabled else ""
        self._timeout_ms = app.config["PROGRESS_DB_TIMEOUT_MS"]
        self._cache = cache
        self._listener: PerProcess[VersionListener] = PerProcess(
            self._start, close=VersionListener.stop
        )

    def _start(self) -> VersionListener:
        listener = VersionListener(self._dsn, self._cache, timeout_ms=self._timeout_ms)
        listener.start()
        return listener

    def ensure_started(self) -> None:
        if self.enabled:
            self._listener.get()

    @property
    def listener(self) -> VersionListener | None:
        """This process's listener, if it has started one."""
        return self._listener.peek()

    def describe(self) -> str:
        if not self.enabled:
            return "ok (not needed: one process on SQLite)"
        return self.listener.describe() if self.listener else "ok (starts on first request)"

    def stop(self) -> None:
        self._listener.reset()
