"""The watch at 100% against a real Prometheus scraping the service under gunicorn on
PostgreSQL: the legacy path's traffic before the move is the baseline (Prometheus range
queries); at 100% a clean watch completes the rollout, and a regression pauses it, after
which a person goes back a stage with one click, a reason and a note. The watch and the
baseline are seconds long here (`watchHours` and `baselineDays` take fractions)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from progress import guard, rollout

from .support.apps import SECRET
from .support.guard import (
    BASE,
    PLAN,
    check_named,
    drive_healthy_traffic,
    evaluations_oldest_first,
    guarded_services,
    learners_on_each_path,
    print_timeline,
    prometheus_at,
    walk_the_first_module,
)
from .support.learners import AuthActions
from .support.waiting import wait_until

WATCH_S = 6  # the watch, in seconds
BASELINE_S = 40  # the legacy history before the move, in seconds


def start_at_ten_percent(app, **plan) -> None:
    """The plan with a watch of seconds, at 10% (the guard off until the move)."""
    with app.app_context():
        guard.update_plan(
            {
                "min_stage_seconds": 0,
                "min_completions": 10,
                "min_access_checks": 20,
                "latency_margin": 0.5,
                "watch_hours": WATCH_S / 3600,
                "baseline_days": BASELINE_S / 86_400,
                **plan,
            },
            "tests",
        )
        guard.advance_stage("product@example.com", "tests: start the stage")


def move_to_one_hundred(app, prometheus, served: float) -> None:
    """Once Prometheus holds the legacy completions, a person moves to 100% (the plan
    follows to its last stage) and the guard is enabled."""
    wait_until(
        lambda: (prometheus.value('sum(progress_completions_total{path="legacy"})') or 0) >= served,
        15,
        "Prometheus to scrape the legacy completions",
    )
    with app.app_context():
        rollout.set_rollout(100, "tests: the last stage", "product@example.com")
        guard.update_plan({"enabled": True}, "tests")
    # A scrape inside the stage's window before its traffic: increase() counts from the
    # window's first sample, so traffic before it would be lost to the guard.
    prometheus.wait_for_scrape("lesson-progress", after=time.time())


def plan_answer(url: str, admin) -> dict:
    return requests.get(url + PLAN, headers=admin.headers, timeout=10).json()


def on_verified(url: str, learner) -> bool:
    """The service's flag refreshed (1 s): this learner's answer names the verified path."""
    answer = requests.get(url + BASE + "greetings/access", headers=learner.headers, timeout=10)
    return answer.headers.get("X-Progress-Path") == "verified"


@pytest.mark.slow
def test_a_clean_watch_at_one_hundred_percent_completes_the_rollout(
    pg_guarded, pg_database, tmp_path
):
    """Legacy learners before the move make the baseline; at 100% healthy verified traffic
    is compared with it, and once the watch's time is over the rollout is complete: the
    page's plan answer and `rollout status` say the legacy path may be retired, and a
    person's note on the end of the watch is kept and exported for Grafana; `flask rollout
    tune` reads the run's latency histograms from the same Prometheus."""
    app = pg_guarded
    start_at_ten_percent(app, success_rate_margin=0.5)
    learners = learners_on_each_path(app, 4)
    admin = AuthActions(SECRET).learner(admin=True)
    with guarded_services(tmp_path, pg_database) as (prometheus, (svc,)):
        drive_healthy_traffic(svc.url, {"legacy": learners["legacy"]})
        move_to_one_hundred(app, prometheus, served=20)
        newcomers = [AuthActions(SECRET).learner() for _ in range(4)]
        # A learner the flag sent to legacy at 10%: on verified once the flag refreshed.
        wait_until(lambda: on_verified(svc.url, learners["legacy"][0]), 10, "the flag to refresh")
        with ThreadPoolExecutor(4) as pool:
            paths = list(pool.map(lambda one: walk_the_first_module(svc.url, one), newcomers))
        assert set(paths) == {"verified"}
        # The guard's first look at 100% takes the baseline (it looks every second).
        watching = wait_until(
            lambda: (w := plan_answer(svc.url, admin)["watch"])["baseline"] and w,
            15,
            "the guard to take the baseline",
        )
        assert watching["state"] in ("watching", "over", "complete"), watching
        assert watching["baseline"]["source"] == "prometheus"
        assert watching["baseline"]["completions"] >= 10  # 20, as increase() sees them
        assert watching["baseline"]["wholeDays"] is False
        try:
            done = wait_until(
                lambda: (p := plan_answer(svc.url, admin))["watch"]["state"] == "complete" and p,
                45,  # the watch is 10 s; the rest is a busy machine's margin
                "the watch to end clean",
            )
        finally:
            print_timeline(app)
        evaluations = evaluations_oldest_first(app)
        complete = next(e for e in evaluations if e["decision"] == "complete")
        noted = requests.put(
            svc.url + f"/api/v1/admin/rollout/evaluations/{complete['id']}/note",
            headers=admin.headers,
            json={"note": "48 h clean; retire legacy next sprint"},
            timeout=10,
        )
        metrics_text = requests.get(svc.url + "/metrics", timeout=10).text
        # The timeouts from the same Prometheus: its histograms saw these completions.
        with prometheus_at(app, prometheus.url):
            tuned = app.test_cli_runner().invoke(args=["rollout", "tune", "--format", "json"])
    print_timeline(app)
    assert tuned.exit_code == 0, tuned.output
    report = json.loads(tuned.stdout)
    assert report["source"] == "prometheus"
    db_timeout = next(a for a in report["settings"] if a["setting"] == "PROGRESS_DB_TIMEOUT_MS")
    assert db_timeout["observations"] >= 20  # 40 completions, as increase() sees them
    assert db_timeout["recommendedMs"] >= 250  # the rule's floor
    assert db_timeout["line"] == f"PROGRESS_DB_TIMEOUT_MS={int(db_timeout['recommendedMs'])}"

    assert done["watch"]["completedAt"] is not None
    assert "legacy path may be retired" in done["watch"]["text"]
    assert complete["acted"]
    assert complete["percentage"] == 100
    assert complete["windowSeconds"] >= WATCH_S
    assert "ended clean" in complete["reason"]
    rate = check_named(complete["checks"], "completion_success_rate")
    assert rate["status"] == "pass"
    assert f"(the baseline: legacy's {BASELINE_S} s before the move)" in rate["detail"]
    # 20 each; increase() extrapolates from the scrapes it has (a busy machine misses some).
    assert rate["figures"]["legacyCompletions"] >= 10
    assert rate["figures"]["verifiedCompletions"] >= 10
    # Before it completed, the guard held and counted the watch down.
    before = [e for e in evaluations if e["percentage"] == 100 and e["id"] < complete["id"]]
    assert before
    assert all(e["decision"] == "hold" for e in before)
    assert any("left" in e["reason"] for e in before)
    assert noted.status_code == 200, noted.text
    assert noted.json()["note"] == "48 h clean; retire legacy next sprint"
    assert 'progress_rollout_guard_note{by="' in metrics_text
    assert 'note="48 h clean; retire legacy next sprint"' in metrics_text
    assert "progress_rollout_complete 1.0" in metrics_text
    with app.app_context():
        status = app.test_cli_runner().invoke(args=["rollout", "status", "--format", "text"])
    assert "the legacy path may be retired" in status.output


@pytest.mark.slow
def test_a_regression_during_the_watch_pauses_it_and_a_person_goes_back_a_stage(
    pg_guarded, pg_database, tmp_path
):
    """The verified path's completions fail (an injected regression) where the legacy
    path's did not before the move: the guard pauses at 100% (not a rollback) and says it
    compared with the baseline; a person then goes back to 10% with a reason and a note,
    kept with the pause."""
    app = pg_guarded
    start_at_ten_percent(app, success_rate_margin=0.2)
    learners = learners_on_each_path(app, 4)
    admin = AuthActions(SECRET).learner(admin=True)
    with guarded_services(
        tmp_path, pg_database, PROGRESS_FAULTS="verified_completion_failure_rate=1"
    ) as (prometheus, (svc,)):
        drive_healthy_traffic(svc.url, {"legacy": learners["legacy"]})
        move_to_one_hundred(app, prometheus, served=20)
        newcomers = [AuthActions(SECRET).learner() for _ in range(4)]
        # A learner the flag sent to legacy at 10%: on verified once the flag refreshed.
        wait_until(lambda: on_verified(svc.url, learners["legacy"][0]), 10, "the flag to refresh")
        for learner in newcomers:
            for _ in range(5):  # each attempt fails on the verified path
                failed = requests.post(
                    svc.url + BASE + "greetings/complete", headers=learner.headers, timeout=10
                )
                assert failed.status_code >= 500
        paused = wait_until(
            lambda: (p := plan_answer(svc.url, admin))["paused"] and p,
            20,
            "the guard to pause the watch",
        )
        back = requests.post(
            svc.url + "/api/v1/admin/rollout/back",
            headers=admin.headers,
            json={"reason": "tests: completions fail at 100%", "note": "rolled back the deploy"},
            timeout=10,
        )
    print_timeline(app)

    assert paused["watch"]["state"] == "paused"
    evaluations = evaluations_oldest_first(app)
    (pause,) = [e for e in evaluations if e["acted"]]
    assert (pause["decision"], pause["percentage"]) == ("pause", 100)
    rate = check_named(pause["checks"], "completion_success_rate")
    assert rate["status"] == "fail"
    assert "worse by more than 20 points" in rate["detail"]
    assert "(the baseline: legacy's" in rate["detail"]
    assert "going back a stage is a person's decision" in pause["reason"]
    assert back.status_code == 200, back.text
    assert (back.json()["stagePercentage"], back.json()["paused"]) == (10, True)
    with app.app_context():
        assert rollout.rollout_state().percentage == 10
        kept = next(e for e in guard.recent_evaluations(500) if e.id == pause["id"])
        assert (kept.note, kept.noted_by) == ("rolled back the deploy", admin.email)
