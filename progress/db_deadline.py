"""A client-side deadline on every database call, for a server that stops answering.

libpq's connect_timeout covers a connection that never completes, the pool's timeout an
exhausted pool, and PostgreSQL's statement_timeout a slow query on a server that still runs.
None of them ends a call on an open connection to a server (or network path) that has
stopped answering: the kernel still acknowledges, so the read just blocks. The watchdog here
gives each call a deadline; past it, it shuts the connection's socket down so the blocked
read returns, psycopg raises OperationalError, and SQLAlchemy discards the connection.

Calls covered: every statement (cursor execute), commit and rollback, the pool's reset on
check-in, and the liveness ping on check-out (done here, under the deadline, instead of
SQLAlchemy's pool_pre_ping, which runs outside every event).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from .per_process import PerProcess

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 1.0


class DeadlineWatchdog:
    """One daemon thread per process: arms and disarms deadlines per DBAPI connection."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._armed: dict[int, tuple[float, Any]] = {}  # id(conn) -> (deadline, conn)
        self._wake = threading.Condition()
        self._thread: PerProcess[threading.Thread] = PerProcess(self._start)
        self.fired = 0  # connections cut (for tests and logs)

    def arm(self, dbapi_conn: Any, timeout_s: float | None = None) -> None:
        self._thread.get()  # threads do not survive gunicorn's fork: one per process
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        with self._wake:
            self._armed[id(dbapi_conn)] = (deadline, dbapi_conn)
            self._wake.notify()

    def disarm(self, dbapi_conn: Any) -> None:
        with self._wake:
            self._armed.pop(id(dbapi_conn), None)

    def _start(self) -> threading.Thread:
        with self._wake:
            self._armed.clear()  # the parent's connections, not this process's
        thread = threading.Thread(target=self._run, name="db-deadline", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                due = [key for key, (deadline, _) in self._armed.items() if deadline <= now]
                for key in due:
                    _, conn = self._armed.pop(key)
                    self._cut(conn)
                nearest = min((d for d, _ in self._armed.values()), default=now + 60)
                self._wake.wait(max(0.01, nearest - now))

    def _cut(self, dbapi_conn: Any) -> None:
        """Shut the socket down (under the lock, so the connection is still armed: its
        owner is blocked in a call and has not closed it)."""
        try:
            fd = dbapi_conn.pgconn.socket
        except Exception:  # already closed
            return
        self.fired += 1
        log.error("database call exceeded its deadline; cutting the connection")
        # A duplicate descriptor: shutdown acts on the socket, close only on the copy.
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)


def connect_timeout_s(timeout_ms: int) -> int:
    """libpq's connect_timeout for a deadline: it counts whole seconds, at least 2."""
    return max(2, math.ceil(timeout_ms / 1000))


def install(engine: sa.Engine, timeout_s: float) -> DeadlineWatchdog:
    """Put every call `engine` makes under a deadline of `timeout_s`."""
    watchdog = DeadlineWatchdog(timeout_s)

    def arm_connection(conn: sa.Connection, *_args: Any) -> None:
        if not conn.invalidated:  # a cut connection's rollback touches no socket
            watchdog.arm(conn.connection.dbapi_connection)

    def disarm_connection(conn: sa.Connection, *_args: Any) -> None:
        if not conn.invalidated:
            watchdog.disarm(conn.connection.dbapi_connection)

    def disarm_on_error(context: exc.ExceptionContext) -> None:
        conn = context.connection
        if conn is not None and not conn.invalidated and conn.connection is not None:
            watchdog.disarm(conn.connection.dbapi_connection)

    sa.event.listen(engine, "before_cursor_execute", arm_connection)
    sa.event.listen(engine, "after_cursor_execute", disarm_connection)
    sa.event.listen(engine, "commit", arm_connection)
    sa.event.listen(engine, "rollback", arm_connection)
    sa.event.listen(engine, "handle_error", disarm_on_error)

    # A healthy ping takes a millisecond; a hung one gives way to a fresh connection, which
    # then meets connect_timeout, so the whole checkout stays near one timeout.
    ping_timeout_s = min(PING_TIMEOUT_S, timeout_s)

    def ping_on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        watchdog.arm(dbapi_conn, ping_timeout_s)
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # the pool then tries a fresh connection
            raise exc.DisconnectionError(str(error)) from error
        finally:
            watchdog.disarm(dbapi_conn)

    def arm_raw(dbapi_conn: Any, *_args: Any) -> None:
        watchdog.arm(dbapi_conn)

    def disarm_raw(dbapi_conn: Any, *_args: Any) -> None:
        watchdog.disarm(dbapi_conn)

    sa.event.listen(engine, "checkout", ping_on_checkout)
    sa.event.listen(engine, "reset", arm_raw)  # the rollback on check-in
    for name in ("checkin", "close", "close_detached", "detach", "invalidate", "soft_invalidate"):
        sa.event.listen(engine, name, disarm_raw)
    return watchdog
