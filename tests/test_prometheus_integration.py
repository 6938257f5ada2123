"""A real Prometheus scrapes the service under gunicorn (2 workers, PostgreSQL) while both
paths serve traffic; every dashboard panel's query then returns data through Prometheus's
HTTP API, and the per-path figures equal what the test drove."""

import json
import time
from pathlib import Path

import pytest
import requests

from harness.prometheus import prometheus_installed, running_prometheus
from harness.service import running_service
from progress.paths import path_for_learner

from .support.apps import SECRET, set_rollout
from .support.availability import unavailable
from .support.learners import AuthActions
from .support.service import service_env

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
BASE = "/api/v1/modules/basics/lessons/"


def panel_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], target["expr"]))
    return queries


def annotation_queries() -> list[tuple[str, str, str]]:
    return [
        (path.name, mark["name"], mark["target"]["expr"])
        for path in DASHBOARDS
        for mark in json.loads(path.read_text())["annotations"]["list"]
        if "expr" in mark.get("target", {})
    ]


def concrete(expr: str) -> str:
    """Grafana's variables, as Grafana would fill them for a 5 minute view of all instances."""
    return (
        expr.replace('"$instance"', '".*"')
        .replace('"$job"', '"lesson-progress"')
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${__range}", "5m")
    )


@pytest.fixture
def learners_by_path(pg_app):
    """Learners whose bucket at 50% is known in advance, 12 on each path."""
    set_rollout(pg_app, 50)
    chosen = {"legacy": [], "verified": []}
    with pg_app.app_context():
        while min(len(v) for v in chosen.values()) < 12:
            learner = AuthActions(SECRET).learner()
            path = path_for_learner(learner.id)
            if len(chosen[path]) < 12:
                chosen[path].append(learner)
    return chosen


def drive(url: str, learner) -> tuple[str, bool]:
    """Open lesson 2 (locked) a few times so both workers cache it, complete lesson 1,
    open lesson 2 at once with the completion's version (as the reference client does), and
    report the lock screen if one shows: the learner held the acknowledgement, so a lock is
    false however soon it came."""
    headers = learner.headers
    for _ in range(4):
        requests.get(url + BASE + "introductions/access", headers=headers, timeout=10)
    done = requests.post(url + BASE + "greetings/complete", headers=headers, timeout=10).json()
    access = requests.get(
        url + BASE + "introductions/access",
        headers=headers,
        params={"minVersion": done["version"]},
        timeout=10,
    )
    false_lock = access.json()["accessible"] is False
    if false_lock:
        requests.post(
            url + "/api/v1/events/lock-screen",
            headers=headers,
            json={
                "moduleId": "basics",
                "lessonId": "introductions",
                "lockReceipt": access.json()["lockReceipt"],
            },
            timeout=10,
        )
    return done["path"], false_lock


@pytest.mark.slow
def test_dashboards_and_figures_on_a_real_prometheus(
    pg_app, pg_database, tmp_path, learners_by_path
):
    if not prometheus_installed():
        unavailable("prometheus is not installed (apt-get install prometheus)")
    assert DASHBOARDS, "no dashboards in grafana/dashboards"
    # The legacy patch lands late, as a slow cache would; the verified path's bounded
    # update times out and its breaker opens, and it stays right.
    env = service_env(
        pg_database,
        tmp_path / "metrics",
        PROGRESS_FAULTS="cache_update_delay_ms=1500",
        PROGRESS_CACHE_UPDATE_TIMEOUT_MS="200",
    )
    with running_service(env, tmp_path, workers=2) as service:
        target = f"127.0.0.1:{service.port}"
        with running_prometheus([target], tmp_path) as prometheus:
            seen = {"legacy": 0, "verified": 0}
            for path, learners in learners_by_path.items():
                for learner in learners:
                    served, false_lock = drive(service.url, learner)
                    assert served == path, service.log_tail()
                    seen[path] += false_lock
            # rate() and increase() need two samples after the traffic
            prometheus.wait_for_scrape("lesson-progress", after=time.time() + 1.5)
            prometheus.wait_for_scrape("lesson-progress", after=time.time() + 1.5)

            completions = "sum by (path) (progress_completions_total{outcome='success'})"
            for path, learners in learners_by_path.items():
                assert prometheus.value(completions, path=path) == len(learners)
            reports = (
                "sum by (path) (progress_false_lock_screens_total{detected_by='client_report'})"
            )
            audits = "sum by (path) (progress_false_lock_screens_total{detected_by='audit'})"
            assert seen["verified"] == 0
            assert prometheus.value(reports, path="verified") == 0
            assert seen["legacy"] > 0, "the lab did not exercise the race"
            assert prometheus.value(reports, path="legacy") == seen["legacy"]
            assert prometheus.value(audits, path="legacy") == seen["legacy"]

            empty = []
            for dashboard, title, expr in panel_queries():
                if not prometheus.query(concrete(expr)):
                    empty.append(f"{dashboard}: {title}: {expr}")
            assert empty == [], "panels without data:\n" + "\n".join(empty)
            for _dashboard, _name, expr in annotation_queries():  # valid; marks only on changes
                prometheus.query(concrete(expr))
