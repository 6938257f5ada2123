"""One holder for whatever must start after gunicorn forks: threads, sockets and clients
do not survive a fork, so each process builds its own on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """A value built lazily, once per process; a forked child builds its own."""

    def __init__(self, build: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._build, self._close = build, close
        self._value: T | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> T:
        """This process's value, built on first use (the fast path takes no lock)."""
        value, pid = self._value, os.getpid()
        if value is not None and self._pid == pid:
            return value
        with self._lock:
            if self._value is None or self._pid != pid:
                # A value inherited from the parent belongs to the parent: never close it here.
                self._value, self._pid = self._build(), pid
            return self._value

    def peek(self) -> T | None:
        """This process's value if it has built one; never builds."""
        value = self._value
        return value if value is not None and self._pid == os.getpid() else None

    def replace(self, value: T) -> None:
        """Put `value` in place of this process's value, and close the one it replaces: a
        value rebuilt beside the one in use, which served every caller meanwhile."""
        with self._lock:
            old, mine = self._value, self._pid == os.getpid()
            self._value, self._pid = value, os.getpid()
        if old is not None and mine and self._close is not None:
            self._close(old)

    def reset(self) -> None:
        """Close and forget this process's value (the next get builds a new one)."""
        with self._lock:
            value, mine = self._value, self._pid == os.getpid()
            self._value, self._pid = None, 0
        if value is not None and mine and self._close is not None:
            self._close(value)
