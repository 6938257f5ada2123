"""What a person running the service by hand reads (`make run`): gunicorn's start-up, then,
once a worker serves, the message with the URLs and tokens, and no line per request. (pg_app:
the test database migrated and seeded.)"""

from __future__ import annotations

from pathlib import Path

import requests
from flask import Flask

from harness.service import running_service
from tests.support.service import service_env
from tests.support.waiting import wait_until


def test_the_ready_message_comes_last_once_and_requests_write_no_lines(
    pg_app: Flask, pg_database: str, tmp_path: Path
):
    """With PROGRESS_ACCESS_LOG=off and a ready message, the log ends with the message
    (after the worker booted), printed once, and requests add no access line to it."""
    message = tmp_path / "ready.txt"
    message.write_text("Ready on the test port\nadmin token: xyz\n")
    env = service_env(
        pg_database,
        tmp_path / "metrics",
        PROGRESS_LOG_LEVEL="INFO",
        PROGRESS_GUARD_INTERVAL_S="0",
        PROGRESS_ACCESS_LOG="off",
        GUNICORN_READY_MESSAGE_FILE=str(message),
    )
    with running_service(env, tmp_path, workers=2) as service:
        # The first worker prints it; the other may be the one that answered ready.
        wait_until(
            lambda: "Ready on the test port" in service.log_path.read_text(), 60, "the message"
        )
        for _ in range(5):
            assert requests.get(service.url + "/api/v1/curriculum", timeout=10).ok
        log = service.log_path.read_text()
    assert log.count("Ready on the test port") == 1, log
    assert log.index("Booting worker") < log.index("Ready on the test port")
    assert "admin token: xyz" in log
    assert '"logger":"progress.access"' not in log, "a request wrote an access line"


def test_by_default_each_request_writes_its_access_line(
    pg_app: Flask, pg_database: str, tmp_path: Path
):
    """Without the setting, gunicorn's workers keep the JSON access line per request."""
    env = service_env(
        pg_database, tmp_path / "metrics", PROGRESS_LOG_LEVEL="INFO", PROGRESS_GUARD_INTERVAL_S="0"
    )
    with running_service(env, tmp_path, workers=1) as service:
        assert requests.get(service.url + "/api/v1/curriculum", timeout=10).ok
        log = service.log_path.read_text()
    assert '"route":"/api/v1/curriculum"' in log
