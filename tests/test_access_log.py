"""One JSON line per request on the access log, with the request's id, learner, path,
route, status and duration: the line the hot path's cheaper logging must keep."""

import io
import json
import logging

import pytest

from progress.logs import JsonFormatter

ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


@pytest.fixture
def access_lines():
    logger = logging.getLogger("progress.access")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_every_request_writes_one_json_access_line(client, auth, access_lines):
    learner = auth.learner()
    assert client.post(COMPLETE, headers=learner.headers).status_code == 200
    answer = client.get(ACCESS, headers={**learner.headers, "X-Request-ID": "trace-7"})
    assert answer.status_code == 200
    assert client.get(ACCESS + "?minVersion=x", headers=learner.headers).status_code == 400

    complete, access, rejected = access_lines()
    assert access["msg"] == "request"
    assert access["logger"] == "progress.access"
    assert access["level"] == "info"
    assert access["request_id"] == "trace-7" == answer.headers["X-Request-ID"]
    assert access["learner_id"] == str(learner.id)
    assert access["progress_path"] == answer.headers["X-Progress-Path"] == "legacy"
    assert access["method"] == "GET"
    assert access["route"] == "/api/v1/modules/<moduleId>/lessons/<lessonId>/access"
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float)
    assert access["ts"].endswith("+00:00")
    assert complete["method"] == "POST"
    assert complete["status"] == 200
    assert rejected["status"] == 400
    assert len(complete["request_id"]) == 32  # made up when the client sends none
