"""Log lines keep their request's id, learner and path in whichever thread writes them: the
cache updates that a completion hands to the worker's thread pools log as the request."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from progress.logs import JsonFormatter

from .support.apps import set_rollout
from .support.waiting import wait_until

COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


class Lines(logging.Handler):
    """Each record's JSON line with the name of the thread that wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[tuple[str, dict]] = []
        self.written = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.threadName, json.loads(self.format(record))))
        self.written.set()

    def from_thread(self, prefix: str) -> list[dict]:
        return [line for thread, line in self.lines if thread.startswith(prefix)]


@pytest.fixture
def capture() -> Iterator[Callable[[str, int], Lines]]:
    """Capture one logger's lines at `level` for the test, as they would be written."""
    attached: list[tuple[logging.Logger, Lines, int]] = []

    def attach(name: str, level: int) -> Lines:
        logger, handler = logging.getLogger(name), Lines()
        attached.append((logger, handler, logger.level))
        logger.addHandler(handler)
        logger.setLevel(level)
        return handler

    yield attach
    for logger, handler, level in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_verified_update_logs_as_its_request_from_the_worker_thread(pg_app, auth, capture):
    set_rollout(pg_app, 100)
    learner = auth.learner()
    statements = capture("sqlalchemy.engine", logging.INFO)  # the library's lines, too
    done = pg_app.test_client().post(
        COMPLETE, headers={**learner.headers, "X-Request-ID": "trace-worker-1"}
    )
    assert done.status_code == 200
    assert done.headers["X-Progress-Path"] == "verified"

    # Nothing cached for a new learner: the update re-read progress from the primary.
    from_worker = statements.from_thread("cache-verified")
    assert from_worker
    for line in from_worker:
        assert line["request_id"] == "trace-worker-1" == done.headers["X-Request-ID"]
        assert line["learner_id"] == str(learner.id)
        assert line["progress_path"] == "verified"


def test_a_fire_and_forget_update_logs_as_its_request_after_the_response(
    pg_app, auth, capture, inject
):
    failures = capture("progress.paths.legacy", logging.DEBUG)
    inject(cache_update_failure_rate=1.0)  # the legacy update fails and logs it, swallowed
    learner = auth.learner()
    done = pg_app.test_client().post(
        COMPLETE, headers={**learner.headers, "X-Request-ID": "trace-worker-2"}
    )
    assert done.status_code == 200
    assert done.headers["X-Progress-Path"] == "legacy"

    assert failures.written.wait(10)
    # The review cache's clear fails the same way in the background, and may log first.
    wait_until(
        lambda: any(
            line["msg"] == "legacy cache update failed"
            for line in failures.from_thread("cache-legacy")
        ),
        10,
        "the cache update's failure logged",
    )
    [line] = [
        line
        for line in failures.from_thread("cache-legacy")
        if line["msg"] == "legacy cache update failed"
    ]
    assert line["request_id"] == "trace-worker-2"
    assert line["learner_id"] == str(learner.id)
    assert line["progress_path"] == "legacy"


def test_a_line_after_the_request_carries_none_of_its_tags(pg_app, auth, capture):
    lines = capture("progress.test", logging.INFO)
    learner = auth.learner()
    pg_app.test_client().get("/api/v1/progress", headers=learner.headers)
    logging.getLogger("progress.test").info("between requests")
    [(_, line)] = lines.lines
    assert "request_id" not in line
    assert "learner_id" not in line
