"""The access check's fast path (progress/api/fast_access.py) answers exactly as the Flask
route does: the same status, headers in the same order, body, access log line and request
metrics, on real PostgreSQL; it hands every other request to Flask, and an error past the
request's checks is answered once, by the fast path, as Flask's handler answers it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from werkzeug.test import EnvironBuilder

from progress.api.fast_access import AccessFastPath, unmirrored_hooks
from progress.extensions import start_with_requests

from .support.apps import set_rollout, settle_background
from .support.tcp_proxy import TcpProxy

ORIGIN = "http://localhost:5173"
ACCESS = "/api/v1/modules/basics/lessons/{}/access"
ROUTE = "/api/v1/modules/<moduleId>/lessons/<lessonId>/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def comparable(self, request_id_sent: bool) -> tuple[Any, ...]:
        """Everything but what differs between two identical requests by design: a new
        request id (unless the client sent one), a lock receipt's nonce and time, and the
        cached entry's age."""
        headers = [
            (name, "<new>" if name == "X-Request-ID" and not request_id_sent else value)
            for name, value in self.headers
            if name != "Content-Length"
        ]
        body: Any = self.body
        if self.body and dict(self.headers).get("Content-Type") == "application/json":
            body = json.loads(self.body)
            if isinstance(body, dict):
                body = {
                    key: ("<set>" if value is not None else None)
                    if key in ("lockReceipt", "cacheAgeMs")
                    else value
                    for key, value in body.items()
                }
        return self.status, headers, body


def call(wsgi: Callable[..., Iterable[bytes]], **request: Any) -> Answer:
    environ = EnvironBuilder(**request).get_environ()
    started: list[Any] = []
    chunks = wsgi(environ, lambda status, headers, exc=None: started.append((status, headers)))
    body = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    status, headers = started[0]
    return Answer(status, list(headers), body)


@pytest.fixture
def service(make_pg_app):
    """An instance with CORS origins set, and a count of the requests Flask answered."""
    app = make_pg_app(PROGRESS_CORS_ORIGINS=ORIGIN)
    fast: AccessFastPath = app.wsgi_app  # type: ignore[assignment]
    assert isinstance(fast, AccessFastPath)
    flask_answers: list[str] = []
    flask_wsgi = fast.flask_wsgi

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        flask_answers.append(environ["PATH_INFO"])
        return flask_wsgi(environ, start_response)

    fast.flask_wsgi = counted
    return app, fast, flask_wsgi, flask_answers


def requests_to_compare(learner, other_token: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, the request, whether the fast path answers it)."""
    auth = {"Authorization": f"Bearer {learner.token}"}
    return [
        ("open lesson", {"path": ACCESS.format("introductions"), "headers": auth}, True),
        ("locked lesson", {"path": ACCESS.format("numbers-1-10"), "headers": auth}, True),
        (
            "minVersion",
            {"path": ACCESS.format("introductions"), "query_string": "minVersion=1", **_h(auth)},
            True,
        ),
        (
            "minVersion and minPosition",
            {
                "path": ACCESS.format("introductions"),
                "query_string": "minVersion=1&minPosition=123456",
                **_h(auth),
            },
            True,
        ),
        (
            "minPosition first",
            {
                "path": ACCESS.format("introductions"),
                "query_string": "minPosition=123456&minVersion=1",
                **_h(auth),
            },
            True,
        ),
        (
            "minPosition twice",
            {
                "path": ACCESS.format("introductions"),
                "query_string": "minVersion=1&minPosition=1&minPosition=2",
                **_h(auth),
            },
            False,
        ),
        (
            "minPosition past a bigint",
            {
                "path": ACCESS.format("introductions"),
                "query_string": f"minVersion=1&minPosition={2**63}",
                **_h(auth),
            },
            False,
        ),
        (
            "the client's request id",
            {
                "path": ACCESS.format("introductions"),
                "headers": {**auth, "X-Request-ID": "trace-42.a_b"},
            },
            True,
        ),
        (
            "a request id that is not one",
            {"path": ACCESS.format("introductions"), "headers": {**auth, "X-Request-ID": "a b"}},
            True,
        ),
        ("no token", {"path": ACCESS.format("introductions")}, False),
        (
            "a bad token",
            {"path": ACCESS.format("introductions"), "headers": {"Authorization": "Bearer x.y.z"}},
            False,
        ),
        (
            "another secret's token",
            {
                "path": ACCESS.format("introductions"),
                "headers": {"Authorization": f"Bearer {other_token}"},
            },
            False,
        ),
        ("unknown lesson", {"path": ACCESS.format("no-such-lesson"), **_h(auth)}, False),
        (
            "unknown module",
            {"path": "/api/v1/modules/nope/lessons/greetings/access", **_h(auth)},
            False,
        ),
        (
            "negative minVersion",
            {"path": ACCESS.format("introductions"), "query_string": "minVersion=-1", **_h(auth)},
            False,
        ),
        (
            "minVersion not a number",
            {"path": ACCESS.format("introductions"), "query_string": "minVersion=x", **_h(auth)},
            False,
        ),
        (
            "minVersion and a cache-buster",
            {
                "path": ACCESS.format("introductions"),
                "query_string": "minVersion=1&_=123",
                **_h(auth),
            },
            False,
        ),
        (
            "a cross-origin call",
            {"path": ACCESS.format("introductions"), "headers": {**auth, "Origin": ORIGIN}},
            False,
        ),
        (
            "a body",
            {"path": ACCESS.format("introductions"), "data": b"{}", **_h(auth)},
            False,
        ),
        ("HEAD", {"path": ACCESS.format("introductions"), "method": "HEAD", **_h(auth)}, False),
        ("POST", {"path": ACCESS.format("introductions"), "method": "POST", **_h(auth)}, False),
        ("a trailing slash", {"path": ACCESS.format("introductions") + "/", **_h(auth)}, False),
        (
            "a non-ASCII lesson id",
            {"path": ACCESS.format("gr\u00fc\u00dfe"), **_h(auth)},
            False,
        ),
    ]


def _h(auth: dict[str, str]) -> dict[str, Any]:
    return {"headers": auth}


@pytest.mark.parametrize("rollout", [0, 100], ids=["legacy", "verified"])
def test_each_request_is_answered_as_the_flask_route_answers_it(service, auth, rollout):
    app, fast, flask_wsgi, flask_answers = service
    set_rollout(app, rollout)
    learner = auth.learner()
    client = app.test_client()
    assert client.post(COMPLETE, headers=learner.headers).status_code == 200
    settle_background(app)
    other = auth.__class__(secret="another-secret-" + "y" * 40).learner()

    for what, request, answered_here in requests_to_compare(learner, other.token):
        call(fast, **request)  # the same state for both below: cached, user known
        flask_answers.clear()
        sent_id = "X-Request-ID" in request.get("headers", {}) and what != (
            "a request id that is not one"
        )
        by_fast_path = call(fast, **request)
        assert (flask_answers == []) is answered_here, what
        by_flask = call(flask_wsgi, **request)
        assert by_fast_path.comparable(sent_id) == by_flask.comparable(sent_id), what

    open_answer = call(fast, **requests_to_compare(learner, other.token)[0][1])
    assert open_answer.status == "200 OK"
    assert json.loads(open_answer.body)["path"] == ("verified" if rollout else "legacy")


def test_the_fast_path_logs_and_counts_each_request_as_flask_does(service, auth, caplog):
    _app, fast, flask_wsgi, _ = service
    learner = auth.learner()
    request = {
        "path": ACCESS.format("introductions"),
        "headers": {"Authorization": f"Bearer {learner.token}", "X-Request-ID": "line-1"},
    }
    call(fast, **request)

    def requests_counted() -> float:
        value = REGISTRY.get_sample_value(
            "progress_http_requests_total", {"method": "GET", "route": ROUTE, "status": "200"}
        )
        return value or 0.0

    lines = []
    for wsgi in (fast, flask_wsgi):
        before = requests_counted()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="progress.access"):
            call(wsgi, **request)
        assert requests_counted() == before + 1
        (record,) = [r for r in caplog.records if r.name == "progress.access"]
        lines.append(
            {
                "msg": record.getMessage(),
                **{k: getattr(record, k) for k in ("method", "route", "status")},
            }
        )
    assert (
        lines[0] == lines[1] == {"msg": "request", "method": "GET", "route": ROUTE, "status": 200}
    )


def test_a_database_failure_past_the_checks_is_answered_once_by_the_fast_path(
    make_pg_app, pg_database, auth, caplog
):
    """The database stops answering (the proxy in front of it stops: connections refused):
    the fast path answers the 503 itself, as Flask's handler would, and Flask never gets
    the request to try the database a second time."""
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        app = make_pg_app(
            DATABASE_URL=pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
            PROGRESS_DB_TIMEOUT_MS=1000,
        )
        fast: AccessFastPath = app.wsgi_app  # type: ignore[assignment]
        request = {
            "path": ACCESS.format("introductions"),
            "headers": {"Authorization": f"Bearer {auth.learner().token}"},  # never seen
        }
        handed_on: list[str] = []
        flask_wsgi = fast.flask_wsgi
        fast.flask_wsgi = lambda environ, start: (
            handed_on.append("flask") or flask_wsgi(environ, start)
        )
        proxy.stop()
        with caplog.at_level(logging.INFO, logger="progress.access"):
            answer = call(fast, **request)
        assert handed_on == []
        assert answer.status == "503 SERVICE UNAVAILABLE"
        assert json.loads(answer.body) == {
            "error": {
                "code": "database_unavailable",
                "message": "The database is unavailable; retry.",
            }
        }
        assert [
            r.status
            for r in caplog.records
            if r.name == "progress.access"  # type: ignore[attr-defined]
        ] == [503]
        by_flask = call(flask_wsgi, **request)
        assert answer.comparable(False) == by_flask.comparable(False)


def test_a_hook_the_fast_path_does_not_stand_in_for_is_named(make_pg_app):
    app = make_pg_app()
    assert unmirrored_hooks(app) == []

    @app.before_request
    def audit_every_request() -> None:
        pass

    assert unmirrored_hooks(app) == [
        "tests.test_fast_access.test_a_hook_the_fast_path_does_not_stand_in_for_is_named"
        ".<locals>.audit_every_request"
    ]


def test_a_worker_whose_first_request_takes_the_fast_path_starts_its_background_work(
    make_pg_app, auth
):
    """Threads don't survive gunicorn's fork, so each worker starts its listener and guard
    schedule from its requests: the fast path's requests too (the liveness probe excepted)."""
    app = make_pg_app()
    started: list[str] = []
    start_with_requests(app, lambda: started.append("every request"))
    start_with_requests(app, lambda: started.append("not liveness"), liveness=False)
    fast: AccessFastPath = app.wsgi_app  # type: ignore[assignment]
    flask_wsgi = fast.flask_wsgi
    fast.flask_wsgi = lambda environ, start: pytest.fail("Flask answered")  # type: ignore[assignment]
    learner = auth.learner()
    answer = call(fast, path=ACCESS.format("greetings"), headers=learner.headers)
    assert answer.status == "200 OK"
    assert started == ["every request", "not liveness"]
    started.clear()
    fast.flask_wsgi = flask_wsgi
    assert call(fast, path="/healthz").status == "200 OK"
    assert started == ["every request"]


QUERY_TEXT = st.text(alphabet="minVersionPst=0123456789+-%20&;_x.\u00b2 ", max_size=24)
SEGMENT = st.one_of(
    st.sampled_from(["introductions", "greetings", "numbers-1-10", "basics"]),
    st.text(alphabet="abcdefgr-_.~%2F\u00e9 ", min_size=1, max_size=12),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.one_of(
        QUERY_TEXT,
        QUERY_TEXT.map("minVersion=".__add__),
        QUERY_TEXT.map("minVersion=1&minPosition=".__add__),
    ),
    lesson=SEGMENT,
)
def test_any_query_or_lesson_id_is_answered_as_flask_answers_it(service, auth, query, lesson):
    """Whatever the fast path takes for itself, Flask would have answered the same."""
    _app, fast, flask_wsgi, _ = service
    learner = LEARNER.setdefault("learner", auth.learner())
    request = {
        "path": f"/api/v1/modules/basics/lessons/{lesson}/access",
        "query_string": query,
        "headers": {"Authorization": f"Bearer {learner.token}"},
    }
    call(fast, **request)  # the same state for both below
    assert call(fast, **request).comparable(False) == call(flask_wsgi, **request).comparable(False)


LEARNER: dict[str, Any] = {}
