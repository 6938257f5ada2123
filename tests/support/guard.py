"""What the guard's tests share: synthetic figures, the admin routes, a clean slate of
guard tables, and, for the end-to-end tests, Prometheus scraping the service under gunicorn
with traffic on both paths."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests
import sqlalchemy as sa
from flask import Flask

from harness.processes import free_port
from harness.prometheus import prometheus_installed, running_prometheus
from harness.service import running_service
from progress import guard, rollout
from progress.api.schemas import GuardEvaluationOut
from progress.extensions import db
from progress.guard.figures import Figures
from progress.models import (
    GuardDecisionCount,
    GuardEvaluation,
    RolloutChange,
    RolloutPlan,
    utcnow,
)
from progress.paths import path_for_learner

from .apps import SECRET
from .availability import unavailable
from .learners import AuthActions
from .service import service_env
from .waiting import wait_until

PLAN = "/api/v1/admin/rollout/plan"
EVALUATIONS = "/api/v1/admin/rollout/evaluations"
ADVANCE = "/api/v1/admin/rollout/advance"
GO = {"reason": "tests: the stage is ready"}  # advance needs a reason
BASE = "/api/v1/modules/basics/lessons/"
LESSONS = ["greetings", "introductions", "numbers-1-10", "colours", "polite-phrases"]


def figures(
    *,
    # completions ok, errors, access checks: enough for the test to tell 0.1 point
    verified: tuple[float, float, float] = (20_000, 0, 80_000),
    legacy: tuple[float, float, float] = (200_000, 0, 800_000),
    shown: float = 0,
    caught: float = 0,
    slow: float | None = 0.0,  # verified's share of cache updates over the budget; None: none
    p95: float | None = 0.01,
    breaker: float | None = 0.0,
    window: int = 600,
) -> Figures:
    updates = {"verified": verified[0] + verified[1], "legacy": legacy[0] + legacy[1]}
    within = {"verified": updates["verified"] * (1 - (slow or 0)), "legacy": updates["legacy"]}
    buckets = {
        p: {0.1: within[p], 0.25: within[p], 0.5: updates[p], math.inf: updates[p]} for p in updates
    }
    return Figures(
        window_s=window,
        false_locks={"client_report": shown, "audit": 0.0, "double_check": caught},
        completions={
            "verified": {"success": verified[0], "error": verified[1]},
            "legacy": {"success": legacy[0], "error": legacy[1]},
        },
        access_checks={"verified": verified[2], "legacy": legacy[2]},
        cache_update_p95_s={"verified": p95, "legacy": 0.002},
        cache_update_buckets={} if slow is None else buckets,
        breaker_open_share=breaker,
        breaker_trips=0.0,
    )


@contextlib.contextmanager
def emptied_guard_tables(app: Flask) -> Iterator[None]:
    """No plan, no evaluation and no decision count before and after."""
    _empty_guard_tables(app)
    try:
        yield
    finally:
        _empty_guard_tables(app)


def _empty_guard_tables(app: Flask) -> None:
    with app.app_context():
        db.session.execute(sa.delete(GuardEvaluation))
        db.session.execute(sa.delete(GuardDecisionCount))
        db.session.execute(sa.delete(RolloutPlan))
        db.session.commit()


@contextlib.contextmanager
def prometheus_at(app, url: str):
    """Point an existing app's guard at `url` for a moment (no schedule is started)."""
    app.config["PROMETHEUS_URL"] = url
    try:
        yield
    finally:
        app.config["PROMETHEUS_URL"] = ""


def check_named(checks: list[dict], name: str) -> dict:
    """One check of an evaluation's `checks`, by its name."""
    return next(c for c in checks if c["name"] == name)


def guard_app(make_pg_app, prometheus_url: str):
    """An app instance that evaluates on demand (no schedule), like `flask rollout guard`."""
    return make_pg_app(
        PROMETHEUS_URL=prometheus_url,
        PROGRESS_GUARD_INTERVAL_S=0,
        PROGRESS_GUARD_MIN_WINDOW_S=3,
    )


def require_prometheus() -> None:
    if not prometheus_installed():
        unavailable("prometheus is not installed (apt-get install prometheus)")


@contextlib.contextmanager
def guarded_services(tmp_path, pg_database, instances=1, workers=1, **extra):
    """Prometheus (1 s scrapes) and `instances` gunicorn instances that it scrapes, each
    with the guard's per-worker schedule (1 s unless `extra` says otherwise) pointed at that
    Prometheus. Prometheus is started first, on the instances' ports chosen in advance, so
    they know its URL."""
    require_prometheus()
    ports = [free_port() for _ in range(instances)]
    targets = [f"127.0.0.1:{port}" for port in ports]
    with (
        running_prometheus(targets, tmp_path) as prometheus,
        contextlib.ExitStack() as stack,
    ):
        services = []
        for port in ports:
            env = service_env(
                pg_database,
                tmp_path / f"metrics-{port}",
                **{
                    "PROMETHEUS_URL": prometheus.url,
                    "PROGRESS_GUARD_INTERVAL_S": "1",
                    "PROGRESS_GUARD_MIN_WINDOW_S": "3",
                    **extra,
                },
            )
            services.append(
                stack.enter_context(running_service(env, tmp_path, workers=workers, port=port))
            )
        wait_for_samples(prometheus, instances)
        yield prometheus, services


def wait_for_samples(prometheus, targets: int, samples: int = 4) -> None:
    """Until every target has `samples` scrapes stored: increase() needs two in its window,
    and Prometheus starts scraping a few seconds after it is ready."""
    query = 'count_over_time(up{job="lesson-progress"}[1m])'
    wait_until(
        lambda: (
            sum(int(float(s["value"][1])) >= samples for s in prometheus.query(query)) >= targets
        ),
        30,
        f"{samples} scrapes of each target",
    )


def learners_on_each_path(app, n: int) -> dict[str, list]:
    """Learners whose bucket at the current percentage is known: n on each path."""
    chosen: dict[str, list] = {"legacy": [], "verified": []}
    with app.app_context():
        while min(len(v) for v in chosen.values()) < n:
            learner = AuthActions(SECRET).learner()
            path = path_for_learner(learner.id)
            if len(chosen[path]) < n:
                chosen[path].append(learner)
    return chosen


def walk_the_first_module(url: str, learner) -> str:
    """Open each lesson, complete it, open the next: 5 completions, 9 access checks."""
    session = requests.Session()
    session.headers.update(learner.headers)
    served = set()
    for lesson, following in zip(LESSONS, [*LESSONS[1:], None], strict=True):
        assert session.get(url + BASE + lesson + "/access", timeout=10).json()["accessible"]
        done = session.post(url + BASE + lesson + "/complete", timeout=10)
        assert done.status_code == 200, done.text
        served.add(done.json()["path"])
        if following:
            session.get(url + BASE + following + "/access", timeout=10)
    (path,) = served
    return path


def drive_healthy_traffic(url: str, learners: dict[str, list]) -> None:
    with ThreadPoolExecutor(8) as pool:
        jobs = {
            pool.submit(walk_the_first_module, url, learner): path
            for path, group in learners.items()
            for learner in group
        }
    for job, path in jobs.items():
        assert job.result() == path  # the flag picked the path we expected


def evaluations_oldest_first(app) -> list[dict]:
    with app.app_context():
        kept = reversed(guard.recent_evaluations(500))
        return [
            GuardEvaluationOut.model_validate(e, from_attributes=True).model_dump() for e in kept
        ]


def guard_changes(app) -> list[RolloutChange]:
    with app.app_context():
        return [c for c in rollout.rollout_history() if c.changed_by == "guard"]


def print_timeline(app) -> None:
    """What `flask rollout history` and `flask rollout evaluations --format text` print,
    for the test's log (shown with -s, or under a failure)."""
    runner = app.test_cli_runner()
    print(runner.invoke(args=["rollout", "history"]).output)
    print(
        runner.invoke(args=["rollout", "evaluations", "--format", "text", "--limit", "200"]).output
    )


def kept_evaluation(age: timedelta, **fields: object) -> GuardEvaluation:
    """An evaluation as the guard keeps it, made `age` ago; `fields` replace the defaults (a
    hold at stage 0 with no checks)."""
    defaults: dict[str, object] = {
        "flag": "verified-progress-path",
        "stage": 0,
        "percentage": 0,
        "window_seconds": 60,
        "checks": [],
        "decision": "hold",
        "reason": "kept for the test",
        "acted": False,
        "instance": "tests",
    }
    return GuardEvaluation(at=utcnow() - age, **{**defaults, **fields})
