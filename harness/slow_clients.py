"""Slow clients, as a server meets them: connections that send one byte of a request and
then nothing, held open while other requests are timed. The front door's test and the
figures in docs/operations.md (`python -m bench.slow_clients`) both use these."""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import requests


@contextlib.contextmanager
def slow_sockets(port: int, count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """`count` connections to host:port, each having sent the first byte of a request line;
    closed on the way out."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"G")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class Timings:
    """One URL's requests: each one's seconds, and how many got no answer in time."""

    seconds: list[float]
    unanswered: int = 0
    failed: int = 0  # answered, but not 200

    def p95(self) -> float:
        """The 95th percentile, an unanswered request counting as infinitely slow."""
        everything = sorted(self.seconds) + [math.inf] * self.unanswered
        if not everything:
            return math.nan
        return everything[min(len(everything) - 1, math.ceil(0.95 * len(everything)) - 1)]

    def describe(self) -> str:
        total = len(self.seconds) + self.unanswered
        if not self.seconds:
            return f"{total} requests, none answered"
        ordered = sorted(self.seconds)
        p50 = ordered[len(ordered) // 2]
        return (
            f"{total} requests, {self.unanswered} unanswered, {self.failed} not 200; "
            f"answered: p50 {p50 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; "
            f"p95 of all {self.p95() * 1000:.1f} ms"
        )


def sample(
    urls: Mapping[str, tuple[str, Mapping[str, str]]],
    duration_s: float,
    timeout_s: float = 2.0,
    pause_s: float = 0.05,
) -> dict[str, Timings]:
    """Each URL (name -> (url, headers)) in turn, on fresh connections, for `duration_s`;
    a request unanswered within `timeout_s` counts as unanswered."""
    timings = {name: Timings([]) for name in urls}
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        for name, (url, headers) in urls.items():
            started = time.monotonic()
            try:
                answer = requests.get(url, headers=dict(headers), timeout=timeout_s)
            except requests.RequestException:
                timings[name].unanswered += 1
                continue
            timings[name].seconds.append(time.monotonic() - started)
            timings[name].failed += answer.status_code != 200
        time.sleep(pause_s)
    return timings
