"""The whole loop against a real Prometheus scraping the service under gunicorn on
PostgreSQL: healthy traffic advances 10% -> 100% once, and false lock screens on the
verified path roll back to 0% at the next evaluation."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import requests

from progress import guard

from .support.apps import SECRET
from .support.guard import (
    BASE,
    check_named,
    drive_healthy_traffic,
    evaluations_oldest_first,
    guard_changes,
    guarded_services,
    learners_on_each_path,
    print_timeline,
)
from .support.learners import AuthActions
from .support.waiting import wait_until


@pytest.mark.slow
def test_healthy_traffic_at_ten_percent_advances_to_one_hundred(pg_guarded, pg_database, tmp_path):
    """Two gunicorn workers each wake their guard every second; with healthy traffic on
    both paths and the stage's time over, one of them advances 10% -> 100%, once."""
    app = pg_guarded
    with app.app_context():
        guard.update_plan(
            {
                "min_stage_seconds": 6,
                "min_completions": 10,
                "min_access_checks": 20,
                # Twenty completions a path can show "not worse by more than 50 points",
                # not by 0.1: the sequential test holds until the evidence is there.
                "success_rate_margin": 0.5,
                "latency_margin": 0.5,
                "auto_advance": True,
            },
            "tests",
        )
        # 0% -> 10%: product starts the rollout
        guard.advance_stage("product@example.com", "tests: start the stage")
    learners = learners_on_each_path(app, 4)
    with guarded_services(tmp_path, pg_database, workers=2) as (_prometheus, (svc,)):
        drive_healthy_traffic(svc.url, learners)
        # On only now: an advance in the middle of the traffic would move its learners.
        with app.app_context():
            guard.update_plan({"enabled": True}, "tests")
        admin = AuthActions(SECRET).learner(admin=True)

        def percentage():
            return requests.get(svc.url + "/api/v1/admin/rollout", headers=admin.headers,
                                timeout=10).json()["percentage"]  # fmt: skip

        wait_until(lambda: percentage() == 100, 40, "the guard to advance to 100%")

        # The worker counts its decision just after the commit that moved the rollout.
        def counted():
            text = requests.get(svc.url + "/metrics", timeout=10).text
            return (
                text
                if 'progress_rollout_guard_decisions_total{decision="advance"} 1.0' in text
                else None
            )

        metrics_text = wait_until(counted, 10, "the advance to be counted")
    print_timeline(app)

    evaluations = evaluations_oldest_first(app)
    acted = [e for e in evaluations if e["acted"]]
    assert [(e["decision"], e["percentage"]) for e in acted] == [("advance", 10)]
    advance = acted[0]
    assert advance["windowSeconds"] >= 6  # not before the stage's time was over
    assert {c["name"]: c["status"] for c in advance["checks"]} == dict.fromkeys(
        [
            "false_lock_screens",
            "sample_size",
            "completion_success_rate",
            "cache_update_latency",
            "circuit_breaker",
        ],
        "pass",
    )
    rate = check_named(advance["checks"], "completion_success_rate")
    assert rate["test"]["verdict"] == "not_worse"
    assert rate["test"]["upper"] <= 0.5
    assert rate["test"]["evidence"] >= 20
    assert "not worse by more than 50 points with 99% confidence after" in rate["detail"]
    assert "not worse by more than 50 points with 99% confidence" in advance["reason"]
    assert (
        check_named(advance["checks"], "cache_update_latency")["test"]["counting"]
        == "updates over the budget"
    )
    # Before it advanced, the guard held while the evidence was not there either way.
    before = [e for e in evaluations if e["id"] < advance["id"]]
    assert all(e["decision"] == "hold" for e in before)
    sample = next(c for c in advance["checks"] if c["name"] == "sample_size")["figures"]
    assert sample["verifiedCompletions"] >= 10
    assert sample["legacyCompletions"] >= 10
    (change,) = guard_changes(app)
    assert (change.previous_percentage, change.percentage) == (10, 100)
    assert change.reason.startswith(f"guard advance (evaluation #{advance['id']}): advancing")
    with app.app_context():
        assert guard.current_plan().stage_index == 2
    assert 'progress_rollout_guard_decisions_total{decision="advance"} 1.0' in metrics_text
    assert "progress_rollout_stage 2.0" in metrics_text
    # Decided: the estimate says so, and the gauge exports it.
    assert (advance["etaSeconds"], advance["eta"]["text"]) == (0, "decided: advance")
    assert "progress_guard_eta_seconds 0.0" in metrics_text


@pytest.mark.slow
def test_false_lock_screens_on_the_verified_path_roll_back_at_the_next_evaluation(
    pg_guarded, pg_database, tmp_path
):
    """Instance X caches lesson 2 as locked, the learner completes lesson 1 on instance Y,
    X never hears of it (notifications dropped) and, with the double check off, answers
    "locked" from its copy; the learner reports the lock screen. The guard rolls back to
    0% at its next evaluation, and the history and the evaluation say why, with figures."""
    app = pg_guarded
    with app.app_context():
        guard.update_plan(
            # A sample far beyond this test's traffic: a false lock needs none.
            {"min_stage_seconds": 600, "min_completions": 500, "enabled": True},
            "tests",
        )
        guard.advance_stage("product@example.com", "tests: start the stage")
    *learners, forger = learners_on_each_path(app, 4)["verified"]
    faults = "disable_double_check=1,drop_notifications=1"
    # The instances share this machine's clock: a lock read after the acknowledgement is
    # judged false however soon after it comes (docs/lock-receipts.md).
    with guarded_services(
        tmp_path, pg_database, instances=2, PROGRESS_FAULTS=faults, PROGRESS_CLOCK_SKEW_MS="0"
    ) as (_prometheus, (x, y)):
        # First, forged reports of a lesson that is open: every one refused, nothing counted,
        # and the guard, evaluating every second, holds at 10%.
        forged_at = datetime.now(UTC)
        for body in forged_reports(x.url, forger, learners[0]):
            answer = requests.post(
                x.url + "/api/v1/events/lock-screen", headers=forger.headers, json=body, timeout=10
            )
            assert answer.status_code == 400, (body, answer.text)
        wait_until(
            lambda: len([e for e in evaluations_oldest_first(app) if e["at"] > forged_at]) >= 3,
            30,
            "three evaluations after the forged reports",
        )
        after_forgery = [e for e in evaluations_oldest_first(app) if e["at"] > forged_at]
        assert all(
            check_named(e["checks"], "false_lock_screens")["status"] == "pass"
            for e in after_forgery
        )
        assert not any(e["acted"] for e in after_forgery)
        assert guard_changes(app) == []
        shown = 0
        for learner in learners:
            h = learner.headers
            lesson_2 = BASE + "introductions/access"
            assert (
                requests.get(x.url + lesson_2, headers=h, timeout=10).json()["accessible"] is False
            )
            completed = requests.post(y.url + BASE + "greetings/complete", headers=h, timeout=10)
            assert completed.json()["path"] == "verified"
            answer = requests.get(x.url + lesson_2, headers=h, timeout=10).json()
            if answer["accessible"] is False:  # the false lock screen the learner saw
                report = requests.post(
                    x.url + "/api/v1/events/lock-screen",
                    headers=h,
                    json={
                        "moduleId": "basics",
                        "lessonId": "introductions",
                        "lockReceipt": answer["lockReceipt"],
                    },
                    timeout=10,
                )
                assert report.json() == {"falseLock": True}
                shown += 1
        assert shown == len(learners), "the faults did not produce the false lock screens"
        reported_at = time.time()
        admin = AuthActions(SECRET).learner(admin=True)

        def percentage():
            return requests.get(x.url + "/api/v1/admin/rollout", headers=admin.headers,
                                timeout=10).json()["percentage"]  # fmt: skip

        wait_until(lambda: percentage() == 0, 30, "the guard to roll back to 0%")
        rolled_back_after = time.time() - reported_at
        # The learners are back on the legacy path once the flag refreshes (1 s).
        wait_until(
            lambda: (
                requests.get(
                    x.url + BASE + "greetings/access", headers=learners[0].headers, timeout=10
                ).headers["X-Progress-Path"]
                == "legacy"
            ),
            10,
            "the learner to be served by the legacy path",
        )
    print_timeline(app)

    evaluations = evaluations_oldest_first(app)
    seen = [
        e for e in evaluations if check_named(e["checks"], "false_lock_screens")["status"] == "fail"
    ]
    first = seen[0]  # the first evaluation that saw a false lock is the one that rolled back
    assert (first["decision"], first["acted"], first["percentage"]) == ("rollback", True, 10)
    locks = check_named(first["checks"], "false_lock_screens")
    assert locks["figures"]["shown"] >= 1
    assert locks["figures"]["clientReport"] >= 1
    assert locks["threshold"] == {"maxShown": 0}
    assert (
        check_named(first["checks"], "sample_size")["status"] == "no_data"
    )  # acted without a sample
    assert "false lock screens shown on the verified path" in first["reason"]
    assert [e["decision"] for e in evaluations if e["acted"]] == ["rollback"]  # once, not twice
    # The next scrape (1 s) and the guard's next evaluation (1 s) after the report: about
    # 2-3 s; 15 s allowed, 5x.
    assert rolled_back_after < 15
    (change,) = guard_changes(app)
    assert (change.previous_percentage, change.percentage) == (10, 0)
    assert change.reason.startswith(f"guard rollback (evaluation #{first['id']}): rolling back")
    assert "client_report" in change.reason
    with app.app_context():
        plan = guard.current_plan()
        assert (plan.stage_index, plan.paused) == (0, True)


def forged_reports(url: str, forger, someone_else) -> list[dict]:
    """The forger completed lesson 1, so lesson 2 is open: a report that counted would be a
    verified-path false lock. No receipt with `path` claimed, a tampered receipt, another
    learner's, and a receipt for another lesson."""
    h = forger.headers
    assert requests.post(url + BASE + "greetings/complete", headers=h, timeout=10).ok
    other_lesson = requests.get(url + BASE + "colours/access", headers=h, timeout=10).json()
    theirs = requests.get(
        url + BASE + "introductions/access", headers=someone_else.headers, timeout=10
    ).json()
    head, _, signature = other_lesson["lockReceipt"].rpartition(".")
    intro = {"moduleId": "basics", "lessonId": "introductions"}
    return [
        {**intro, "path": "verified"},
        {**intro, "lockReceipt": head + "." + signature[::-1]},
        {**intro, "lockReceipt": theirs["lockReceipt"]},
        {**intro, "lockReceipt": other_lesson["lockReceipt"]},
    ]
