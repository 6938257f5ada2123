"""The guard's lock: one process judges (or changes the plan) at a time, across every
worker and instance."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator

import sqlalchemy as sa

from ..exceptions import ProgressError
from ..extensions import db


class GuardBusy(ProgressError):
    """Another process holds the guard's lock (an evaluation is under way)."""

    status = 409
    code = "guard_busy"


_local_locks: dict[str, threading.Lock] = {}
_local_locks_lock = threading.Lock()


def lock_key(flag: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock, one per flag."""
    digest = hashlib.blake2b(f"progress.rollout-guard:{flag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def local_lock(flag: str) -> threading.Lock:
    """The lock in this process for `flag` on this database (SQLite: one process)."""
    key = f"{db.engine.url.render_as_string(hide_password=True)}#{flag}"
    with _local_locks_lock:
        return _local_locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def guarded_transaction(flag: str, wait_s: float = 0.0) -> Iterator[bool]:
    """A transaction that holds the guard's lock for `flag`: yields whether it was taken.
    Committed on the way out (which, on PostgreSQL, releases the lock), rolled back on an
    error or when the lock was not taken.

    PostgreSQL: `pg_try_advisory_xact_lock`, so every instance and worker shares it and a
    crashed holder releases it with its connection. SQLite (the embedded default, one
    process): a lock in this process.
    """
    local = None
    deadline = time.monotonic() + wait_s
    if db.engine.dialect.name == "postgresql":
        key = lock_key(flag)
        while True:
            held = bool(db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))))
            if held or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    else:
        local = local_lock(flag)
        held = local.acquire(timeout=wait_s) if wait_s else local.acquire(blocking=False)
    try:
        if not held:
            db.session.rollback()
            yield False
            return
        try:
            yield True
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    finally:
        if local is not None and held:
            local.release()
