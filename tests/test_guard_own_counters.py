"""The guard without Prometheus: under gunicorn with two workers it judges the instance's
own counters, summed over the workers, counting from its first look at the stage; the plan
says where its figures come from and warns when several instances judge on their own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from harness.service import running_service
from progress import guard
from progress.extensions import db
from progress.guard.own_counters import SOURCE_MARK, figures_from

from .support.guard import (
    PLAN,
    check_named,
    drive_healthy_traffic,
    evaluations_oldest_first,
    guard_changes,
    kept_evaluation,
    learners_on_each_path,
    print_timeline,
    wait_until,
)
from .support.service import service_env


@pytest.mark.slow
def test_one_instance_advances_on_its_own_counters(pg_guarded, pg_database, tmp_path):
    """No PROMETHEUS_URL, two gunicorn workers waking the guard every second: it counts
    from its first look at 10%, sees the healthy traffic of both workers, and advances
    10% -> 100% once, every evaluation saying it used the instance's own counters."""
    app = pg_guarded
    with app.app_context():
        guard.update_plan(
            {
                "min_stage_seconds": 3,
                # Every completion the traffic makes: the guard can't act before it has
                # counted them all, from both workers.
                "min_completions": 20,
                "min_access_checks": 20,
                "success_rate_margin": 0.5,  # twenty completions a path can show this much
                "latency_margin": 0.5,
                "auto_advance": True,
                "enabled": True,
            },
            "tests",
        )
        guard.advance_stage("product@example.com", "tests: start the stage")
    learners = learners_on_each_path(app, 4)
    env = service_env(pg_database, tmp_path / "metrics", PROGRESS_GUARD_INTERVAL_S="1")
    with running_service(env, tmp_path, workers=2) as svc:

        def looked() -> bool:
            return bool(evaluations_oldest_first(app))

        wait_until(looked, 30, "the guard's first look at the stage")
        drive_healthy_traffic(svc.url, learners)

        wait_until(lambda: guard_changes(app), 40, "the guard to advance on its own counters")
    print_timeline(app)
    evaluations = evaluations_oldest_first(app)
    assert all(e["instance"].endswith(SOURCE_MARK) for e in evaluations)
    acted = [e for e in evaluations if e["acted"]]
    assert [(e["decision"], e["percentage"]) for e in acted] == [("advance", 10)]
    sample = check_named(acted[0]["checks"], "sample_size")["figures"]
    # 4 learners a path, 5 completions each, served by either worker: all counted.
    assert sample["verifiedCompletions"] == sample["legacyCompletions"] == 20
    (change,) = guard_changes(app)
    assert (change.previous_percentage, change.percentage) == (10, 100)


def test_figures_from_counters_read_as_the_prometheus_queries_do():
    """Increases of the counters become the guard's figures: completions by outcome,
    false locks by detection, the latency buckets and their p95."""

    def key(name, **labels):
        return (name, frozenset(labels.items()))

    increase = {
        key("progress_completions_total", path="verified", outcome="success"): 98.0,
        key("progress_completions_total", path="verified", outcome="error"): 2.0,
        key("progress_completions_total", path="legacy", outcome="success"): 900.0,
        key("progress_false_lock_screens_total", path="verified", detected_by="audit"): 1.0,
        key("progress_false_lock_screens_total", path="legacy", detected_by="audit"): 7.0,
        key("progress_false_lock_screens_total", path="legacy", detected_by="client_report"): 5.0,
        key(
            "progress_access_checks_total", path="verified", source="db", result="accessible"
        ): 40.0,
        key("progress_cache_update_seconds_bucket", path="verified", le="0.1"): 50.0,
        key("progress_cache_update_seconds_bucket", path="verified", le="0.25"): 100.0,
        key("progress_cache_update_seconds_bucket", path="verified", le="+Inf"): 100.0,
    }
    found = figures_from(increase, {}, 60)
    assert found.completions["verified"] == {"success": 98.0, "error": 2.0}
    assert found.completions["legacy"] == {"success": 900.0, "error": 0.0}
    assert found.false_locks == {"client_report": 0.0, "audit": 1.0, "double_check": 0.0}
    # Reported lock screens are the audit's too: the larger count, never the sum (5 + 7).
    assert found.legacy_false_locks == 7.0
    assert found.access_checks == {"verified": 40.0, "legacy": 0.0}
    assert found.cache_update_buckets["verified"][0.25] == 100.0
    assert found.cache_update_p95_s["verified"] == pytest.approx(0.1 + 0.15 * 0.9)
    assert found.breaker_open_share == 0.0


def test_the_plan_says_where_the_guard_s_figures_come_from(guarded, admin):
    """Without PROMETHEUS_URL: the instance's own counters; no schedule says why; a
    disabled plan says so; an enabled one runs."""
    client = guarded.test_client()

    def status():
        return client.get(PLAN, headers=admin.headers).get_json()["guard"]

    assert status()["source"] == "instance"
    assert "PROGRESS_GUARD_INTERVAL_S is 0" in status()["reason"]
    guarded.config["PROGRESS_GUARD_INTERVAL_S"] = 60
    try:
        assert not status()["running"]
        assert status()["reason"].startswith("the plan is disabled")
        client.put(PLAN, headers=admin.headers, json={"enabled": True})
        assert (status()["running"], status()["reason"]) == (True, None)
    finally:
        guarded.config["PROGRESS_GUARD_INTERVAL_S"] = 0


def test_two_instances_judging_on_their_own_counters_are_warned_about(guarded, admin):
    with guarded.app_context():
        for host in ("web-1", "web-2"):
            db.session.add(
                kept_evaluation(timedelta(seconds=5), instance=f"{host}:metrics{SOURCE_MARK}")
            )
        db.session.commit()
    (warning,) = (
        guarded.test_client().get(PLAN, headers=admin.headers).get_json()["guard"]["warnings"]
    )
    assert warning.startswith("2 instances are judging the rollout on their own counters")
    assert "PROMETHEUS_URL" in warning
