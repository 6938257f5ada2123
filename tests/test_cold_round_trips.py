"""What a cold access check (every check reads PostgreSQL) costs in round trips, per path.

Counted at the wire with libpq's protocol trace, so what SQLAlchemy's events can't show is
counted too: a BEGIN, a ROLLBACK, a SET, the pool's ping. Each simple Query and each Sync
that closes an extended query is one round trip. The budget is the pool's liveness ping
and the one read; the `select 1` route the bench compares against pays four (ping, BEGIN,
select, ROLLBACK). A regression here shows as a bigger number.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask

from progress.extensions import db

from .support.apps import set_rollout
from .support.learners import AuthActions, Learner

OPEN = "/api/v1/modules/basics/lessons/introductions/access"
LOCKED = "/api/v1/modules/basics/lessons/numbers-1-10/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"
BUDGET = 2  # the pool's ping on checkout, and the one statement that reads the progress


def _messages_sent(trace: Path) -> list[str]:
    """The message types the client sent, from libpq's trace (tab-separated fields:
    direction, length, type, ...; timestamps suppressed)."""
    sent = []
    for line in trace.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[0] == "F":
            sent.append(fields[2].split(" ", 1)[0])
    return sent


@contextmanager
def wire_trace(app: Flask, trace: Path) -> Iterator[None]:
    """Trace every pooled connection from checkout (before the ping) to checkin."""
    fd = os.open(trace, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    flags = psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE

    def start(dbapi_conn: Any, *_args: Any) -> None:
        dbapi_conn.pgconn.trace(fd)
        dbapi_conn.pgconn.set_trace_flags(flags)

    def stop(dbapi_conn: Any, *_args: Any) -> None:
        dbapi_conn.pgconn.untrace()

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "checkout", start, insert=True)  # before the watchdog's ping
    sa.event.listen(engine, "checkin", stop)
    try:
        yield
    finally:
        sa.event.remove(engine, "checkout", start)
        sa.event.remove(engine, "checkin", stop)
        os.close(fd)


@pytest.fixture
def cold_app(make_pg_app: Callable[..., Flask]) -> Flask:
    return make_pg_app(PROGRESS_CACHE_MAXSIZE="1")


@pytest.mark.parametrize(("percentage", "path"), [(0, "legacy"), (100, "verified")])
@pytest.mark.parametrize(("url", "accessible"), [(OPEN, True), (LOCKED, False)])
def test_a_cold_access_check_costs_the_ping_and_one_read(
    cold_app: Flask,
    auth: AuthActions,
    tmp_path: Path,
    percentage: int,
    path: str,
    url: str,
    accessible: bool,
) -> None:
    set_rollout(cold_app, percentage)
    client = cold_app.test_client()
    learner, other = auth.learner(), auth.learner()

    def check(who: Learner) -> dict:
        response = client.get(url, headers=who.headers)
        assert response.status_code == 200
        return response.json

    for who in (learner, other):  # created, and known to this worker from now on
        assert client.post(COMPLETE, headers=who.headers).json["path"] == path
        check(who)  # the other learner's check evicts this one: the cache holds one
    trace = tmp_path / "trace"
    with wire_trace(cold_app, trace):
        answer = check(learner)
    assert (answer["source"], answer["accessible"], answer["path"]) == ("db", accessible, path)
    sent = _messages_sent(trace)
    round_trips = sent.count("Query") + sent.count("Sync")
    assert round_trips == BUDGET, sent
