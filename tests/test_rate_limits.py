"""Abuse limits per learner (progress/rate_limits.py): completions, lock screen reports and
admin writes, counted per token subject, answered 429 `rate_limited` with Retry-After in the
service's error shape; shared by instances on one Redis; failing open when the storage is
down. And lock screen reports pruned after their retention, as the guard's evaluations are."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask

from harness.processes import free_port
from progress import metrics
from progress.extensions import db
from progress.models import LockScreenReport, utcnow

from .support.apps import build_app, dispose, settle_background
from .support.availability import require_redis
from .support.learners import Learner
from .support.tcp_proxy import TcpProxy

COMPLETE = "/api/v1/modules/basics/lessons/{}/complete"
COMPLETE_ROUTE = "/api/v1/modules/<moduleId>/lessons/<lessonId>/complete"
REPORT = "/api/v1/events/lock-screen"
ROLLOUT = "/api/v1/admin/rollout"
INTRO_ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
# Limits small enough to reach in a test; an hour's window, so no window ends mid-test.
SMALL = {
    "PROGRESS_RATE_LIMIT_COMPLETIONS": "3/hour",
    "PROGRESS_RATE_LIMIT_REPORTS": "2/hour",
    "PROGRESS_RATE_LIMIT_ADMIN": "2/hour",
}


@pytest.fixture
def instance(app: Flask, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """More instances of the service on `app`'s database (each engine), with small limits
    and the settings given."""
    built: list[Flask] = []

    def make(**overrides: str) -> Flask:
        made = build_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path, **SMALL, **overrides)
        built.append(made)
        return made

    yield make
    for made in built:
        settle_background(made)
        dispose(made)


@pytest.fixture
def redis_storage() -> dict[str, str]:
    """Settings for the test Redis, under a key prefix of this test's own."""
    return {
        "PROGRESS_RATE_LIMIT_STORAGE_URI": require_redis(),
        "PROGRESS_RATE_LIMIT_KEY_PREFIX": f"progress-test-{uuid.uuid4().hex}",
    }


def refused(route: str) -> float:
    samples = metrics.add_samples(metrics.registry().collect(), {})
    return metrics.sample_total(samples, "progress_rate_limited_total", route=route)


def complete(app: Flask, learner: Learner, lesson: str = "greetings") -> int:
    return app.test_client().post(COMPLETE.format(lesson), headers=learner.headers).status_code


def completed_lessons(app: Flask, learner: Learner) -> list[str]:
    answer = app.test_client().get("/api/v1/progress", headers=learner.headers).get_json()
    return [lesson["lessonId"] for lesson in answer["completed"]]


def rate_limits_check(app: Flask) -> tuple[int, str]:
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json()["checks"]["rate_limits"]


def test_a_learner_over_the_completion_limit_gets_429_rate_limited_and_nothing_changes(
    instance, auth
):
    """With the default storage (memory://), the 4th completion in the window is answered
    429 in the error shape with Retry-After, is counted by route, and completes nothing."""
    service = instance()
    learner = auth.learner()
    before = refused(COMPLETE_ROUTE)
    assert [complete(service, learner) for _ in range(3)] == [200, 200, 200]
    answer = service.test_client().post(COMPLETE.format("introductions"), headers=learner.headers)
    assert answer.status_code == 429
    assert answer.get_json()["error"]["code"] == "rate_limited"
    assert set(answer.get_json()["error"]) == {"code", "message"}
    assert 1 <= int(answer.headers["Retry-After"]) <= 3600  # the rest of the hour's window
    assert refused(COMPLETE_ROUTE) == before + 1
    assert completed_lessons(service, learner) == ["greetings"]
    assert rate_limits_check(service) == (200, "ok")


def test_another_learner_is_not_limited_by_one_who_is(instance, auth):
    """One learner over the limit leaves another learner's completions untouched."""
    service = instance()
    busy, other = auth.learner(), auth.learner()
    assert [complete(service, busy) for _ in range(4)] == [200, 200, 200, 429]
    assert complete(service, other) == 200


def test_requests_without_a_valid_token_are_answered_401_not_counted(instance, auth):
    """A request with no token or a forged one is the route's 401, however many come, and
    counts nothing against the learner whose id a forger might claim."""
    service = instance()
    learner = auth.learner()
    forged = Learner(learner.id, learner.email, learner.token[:-4] + "AAAA")
    client = service.test_client()
    for _ in range(5):
        assert client.post(COMPLETE.format("greetings")).status_code == 401
        assert complete(service, forged) == 401
    assert [complete(service, learner) for _ in range(3)] == [200, 200, 200]


def test_lock_screen_reports_are_limited_per_learner(instance, auth):
    """The third report in the window is 429, even of a receipt reported before."""
    service = instance()
    learner = auth.learner()
    client = service.test_client()
    receipt = client.get(INTRO_ACCESS, headers=learner.headers).get_json()["lockReceipt"]
    body = {"moduleId": "basics", "lessonId": "introductions", "lockReceipt": receipt}
    statuses = [client.post(REPORT, headers=learner.headers, json=body).status_code for _ in "abc"]
    assert statuses == [202, 202, 429]


def test_admin_writes_are_limited_and_reads_are_not(instance, auth):
    """An admin's third rollout change in the window is 429 and changes nothing; reading the
    rollout still answers."""
    service = instance()
    admin = auth.learner(admin=True)
    client = service.test_client()

    def move(percentage: int) -> int:
        body = {"percentage": percentage, "reason": "rate limit test"}
        return client.put(ROLLOUT, headers=admin.headers, json=body).status_code

    assert [move(10), move(20), move(30)] == [200, 200, 429]
    answer = client.get(ROLLOUT, headers=admin.headers)
    assert answer.status_code == 200
    assert answer.get_json()["percentage"] == 20


def test_two_instances_on_one_redis_share_the_count(instance, auth, redis_storage):
    """Completions sent alternately to two instances count against one limit; an instance
    under another key prefix on the same Redis (another deployment) counts apart."""
    first, second = instance(**redis_storage), instance(**redis_storage)
    other_deployment = instance(
        **{**redis_storage, "PROGRESS_RATE_LIMIT_KEY_PREFIX": f"other-{uuid.uuid4().hex}"}
    )
    learner = auth.learner()
    alternating = [complete((first, second)[n % 2], learner) for n in range(4)]
    assert alternating == [200, 200, 200, 429]
    assert complete(first, learner) == 429
    assert complete(other_deployment, learner) == 200


def test_a_redis_that_is_down_fails_open_with_one_warning_and_readyz_degraded(
    instance, auth, caplog
):
    """Redis refusing connections: every completion goes through (over the limit too), one
    warning is logged for the interval, and /readyz stays ready but says degraded."""
    closed = f"redis://127.0.0.1:{free_port()}/0"
    service = instance(PROGRESS_RATE_LIMIT_STORAGE_URI=closed)
    learner = auth.learner()
    with caplog.at_level(logging.WARNING, logger="progress.rate_limits"):
        assert [complete(service, learner) for _ in range(6)] == [200] * 6
    warnings = [r for r in caplog.records if "rate limit storage unavailable" in r.getMessage()]
    assert len(warnings) == 1
    status, check = rate_limits_check(service)
    assert status == 200
    assert check.startswith("degraded")
    assert "requests pass unlimited" in check


def test_a_hung_redis_is_waited_for_within_a_bound_then_set_aside(instance, auth, redis_storage):
    """Redis that stops answering on open connections: the completion still succeeds,
    within a bound, and /readyz says degraded; once it answers again, limits count again."""
    redis_url = urlsplit(redis_storage["PROGRESS_RATE_LIMIT_STORAGE_URI"])
    with TcpProxy((redis_url.hostname, redis_url.port)) as proxy:
        service = instance(
            **{
                **redis_storage,
                "PROGRESS_RATE_LIMIT_STORAGE_URI": f"redis://{proxy.host}:{proxy.port}{redis_url.path}",
                "PROGRESS_RATE_LIMIT_RECHECK_S": "1",
            }
        )
        learner = auth.learner()
        assert complete(service, learner) == 200  # counted: 1 of 3
        proxy.pause()
        started = time.monotonic()
        assert complete(service, learner) == 200
        # The storage's socket timeout is 0.5 s; 2 s is a margin of 4x.
        assert time.monotonic() - started < 2.0
        assert rate_limits_check(service)[1].startswith("degraded")
        proxy.resume()
        deadline = time.monotonic() + 10
        statuses = []
        while time.monotonic() < deadline and 429 not in statuses:
            statuses.append(complete(service, learner))
            time.sleep(0.2)  # polling past the 1 s recheck, with a deadline
        assert 429 in statuses
        assert rate_limits_check(service) == (200, "ok")


def test_lock_screen_reports_are_pruned_after_their_retention(app, auth):
    """Keeping a report deletes the reports older than PROGRESS_REPORT_RETENTION_DAYS (30)
    and keeps the younger ones."""
    learner = auth.learner()
    client = app.test_client()
    receipt = client.get(INTRO_ACCESS, headers=learner.headers).get_json()["lockReceipt"]
    now = utcnow()
    with app.app_context():
        for receipt_id, age_days in (("old", 31), ("young", 29)):
            db.session.add(
                LockScreenReport(
                    receipt_id=receipt_id,
                    learner_id=learner.id,
                    module_id="basics",
                    lesson_id="introductions",
                    path="legacy",
                    answered_version=0,
                    read_began_at=now - timedelta(days=age_days),
                    shown_at=now - timedelta(days=age_days),
                    reported_at=now - timedelta(days=age_days),
                    judgement="true_lock",
                )
            )
        db.session.commit()
    body = {"moduleId": "basics", "lessonId": "introductions", "lockReceipt": receipt}
    assert client.post(REPORT, headers=learner.headers, json=body).status_code == 202
    with app.app_context():
        kept = db.session.scalars(sa.select(LockScreenReport.receipt_id)).all()
        db.session.rollback()
    assert "old" not in kept
    assert "young" in kept
    assert len(kept) == 2
