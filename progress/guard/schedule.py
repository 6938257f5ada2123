"""The guard's schedule in each worker process: with an interval, a daemon thread that
evaluates every PROGRESS_GUARD_INTERVAL_S (on Prometheus' figures with PROMETHEUS_URL, on
this instance's own counters without). Every worker of every
instance runs one; the lock and the "evaluated moments ago" rule make it one evaluation per
interval."""

from __future__ import annotations

import logging
import random
import threading

from flask import Flask

from ..extensions import start_with_requests
from ..per_process import PerProcess
from .evaluation import evaluate

log = logging.getLogger(__name__)


class Schedule:
    """One process's thread that wakes the guard every interval."""

    def __init__(self, app: Flask, interval_s: float) -> None:
        self._app, self.interval_s = app, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-guard", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        # Workers start together; a random first wait spreads their wake-ups.
        wait = self.interval_s * random.uniform(0.2, 1.0)  # noqa: S311 - jitter, not secrets
        while not self._stop.wait(wait):
            wait = self.interval_s
            try:
                with self._app.app_context():
                    run = evaluate(scheduled=True)
                if run.outcome == "evaluated":
                    log.info("rollout guard evaluated", extra={"guard_reason": run.message})
            except Exception:
                log.exception("rollout guard evaluation failed")


def init_app(app: Flask) -> None:
    """Start the schedule from each worker's first request (threads do not survive
    gunicorn's fork); nothing at all with an interval of 0."""
    interval_s = app.config["PROGRESS_GUARD_INTERVAL_S"]
    if interval_s <= 0:
        return
    schedule = PerProcess(lambda: Schedule(app, interval_s), close=Schedule.stop)

    start_with_requests(app, schedule.get, liveness=False)  # a pid check once started
