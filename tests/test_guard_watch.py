"""The watch at 100%, without servers: the decision during and at the end of the watch, the
baseline from the kept evaluations, and the simulated watches (progress.guard.watch_simulation)
that hold the false pauses to the plan's rate and catch a twice-worse verified path."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from progress import guard, rollout
from progress.extensions import db
from progress.guard import simulation, watch, watch_simulation
from progress.guard.checks import Thresholds, judge
from progress.guard.decision import Situation, WatchClock, decide
from progress.guard.watch import Baseline, with_baseline
from progress.models import PLAN_DEFAULTS, RolloutPlan

from .support.guard import ADVANCE, EVALUATIONS, GO, PLAN, figures, kept_evaluation

SEED = 20261207
END = datetime(2026, 12, 1, tzinfo=UTC)


def baseline(completions: float, errors: float, slow: float = 0.0) -> Baseline:
    return Baseline(
        END - timedelta(days=7),
        END,
        "prometheus",
        completions,
        errors,
        {0.25: completions - slow, math.inf: completions},
        [],
    )


def watching(elapsed_s: float, length_s: float = 48 * 3600, paused: bool = False) -> Situation:
    return Situation(
        percentage=100,
        next_percentage=None,
        stage_elapsed_s=elapsed_s,
        min_stage_seconds=600,
        auto_advance=False,
        on_failure="rollback",
        paused=paused,
        watch=WatchClock(elapsed_s, length_s, False, "legacy's 7 days before the move"),
    )


def decision_at_100(verified: tuple[float, float, float], kept: Baseline, now: Situation):
    seen = with_baseline(figures(verified=verified, legacy=(0, 0, 0)), kept)
    checks = judge(seen, Thresholds.of(PLAN_DEFAULTS), 100)
    return checks, decide(checks, now)


def test_a_regression_against_the_baseline_pauses_the_watch_rather_than_rolling_back():
    """Verified fails 3% of completions where legacy's week failed 0.5%: the watch pauses at
    100% (going back is a person's call), and says it compared with the baseline."""
    checks, verdict = decision_at_100(
        (97_000, 3_000, 400_000), baseline(1e6, 5_000), watching(3600)
    )
    rate = next(c for c in checks if c.name == "completion_success_rate")
    assert rate.status == "fail"
    assert "(the baseline: legacy's 7 days before the move)" in rate.detail
    assert verdict.decision == "pause"
    assert "going back a stage is a person's decision" in verdict.reason


def test_the_watch_holds_with_a_countdown_then_completes_when_clean():
    """Within the watch, every check passing still holds and says how long is left; once
    the watch's time is over, the same figures complete the rollout."""
    kept = baseline(1e6, 5_000)
    healthy = (995_000, 5_000, 4_000_000)
    _, during = decision_at_100(healthy, kept, watching(3600))
    assert during.decision == "hold"
    assert "47 h of 48 h left" in during.reason
    _, after = decision_at_100(healthy, kept, watching(48 * 3600))
    assert after.decision == "complete"
    assert "the legacy path may be retired" in after.reason


def test_a_watch_over_but_not_yet_clean_keeps_holding():
    """The watch's time is over but the test cannot yet tell (too few completions): hold."""
    _, verdict = decision_at_100((300, 0, 1_200), baseline(1e6, 5_000), watching(7200, 3600))
    assert verdict.decision == "hold"
    assert "over, not yet clean" in verdict.reason


def test_without_a_baseline_at_100_percent_the_comparisons_have_no_data():
    checks = judge(
        figures(verified=(1000, 0, 4000), legacy=(0, 0, 0)), Thresholds.of(PLAN_DEFAULTS), 100
    )
    rate = next(c for c in checks if c.name == "completion_success_rate")
    assert (rate.status, rate.detail) == ("no_data", "no data: no legacy baseline at 100%")


@pytest.mark.parametrize(("kind", "rate"), [("success_rate", 0.005), ("latency", 0.05)])
def test_equal_paths_are_rarely_paused_over_a_whole_watch(kind, rate):
    """With verified as good as legacy's week, looking every minute for 48 h at 1,000
    completions a minute, at most the plan's false-rollback rate of watches pause (plus
    three Monte Carlo standard errors)."""
    tally = watch_simulation.measure_watch(simulation.Scenario(kind, 1_000, rate, 1), 100, SEED)
    allowed = PLAN_DEFAULTS.false_rollback_rate + simulation.monte_carlo_error(0.01, 100)
    assert tally.share(len(tally.paused)) <= allowed, tally
    assert tally.completed >= 0.95 * tally.watches  # and at that traffic they complete


def test_a_twice_worse_verified_path_is_paused_within_the_watch_at_1000_a_minute():
    """0.5% -> 1% errors at 1,000 completions a minute: every watch pauses, well within the
    48 hours (the simulated median is minutes), and none completes."""
    tally = watch_simulation.measure_watch(
        simulation.Scenario("success_rate", 1_000, 0.005, 2), 60, SEED
    )
    assert len(tally.paused) == tally.watches
    assert max(tally.paused) < watch_simulation.WATCH_MIN
    assert tally.completed == 0


def test_the_plan_carries_the_watch_and_refuses_a_watch_of_nothing(guarded, admin):
    """48 hours against 7 days by default; fractions are taken; 0 or less is refused with
    the field named, and nothing changes."""
    client = guarded.test_client()
    plan = client.get(PLAN, headers=admin.headers).get_json()
    assert (plan["watchHours"], plan["baselineDays"]) == (48.0, 7.0)
    assert plan["watch"]["state"] == "not_started"
    assert "starts when the rollout reaches 100%" in plan["watch"]["text"]
    changed = client.put(PLAN, headers=admin.headers, json={"watchHours": 0.5})
    assert changed.get_json()["watchHours"] == 0.5
    for field, value in (("watchHours", 0), ("baselineDays", -1), ("baselineDays", 91)):
        refused = client.put(PLAN, headers=admin.headers, json={field: value})
        assert refused.status_code == 400, refused.get_json()
        assert refused.get_json()["error"]["field"] == field
    assert client.get(PLAN, headers=admin.headers).get_json()["watchHours"] == 0.5


def test_notes_are_kept_with_evaluations_through_advance_and_the_note_route(guarded, admin):
    """A note on advance lands on the latest evaluation; the note route replaces it; an
    unknown evaluation is a 404 and an empty note a 400, each naming the field."""
    client = guarded.test_client()
    with guarded.app_context():
        db.session.add(kept_evaluation(timedelta(minutes=1)))
        db.session.commit()
    moved = client.post(ADVANCE, headers=admin.headers, json={**GO, "note": "support is ready"})
    assert moved.status_code == 200, moved.get_json()
    (latest,) = client.get(EVALUATIONS, headers=admin.headers).get_json()["evaluations"]
    assert (latest["note"], latest["notedBy"]) == ("support is ready", admin.email)
    route = f"{EVALUATIONS}/{latest['id']}/note"
    replaced = client.put(route, headers=admin.headers, json={"note": "and it went well"})
    assert replaced.get_json()["note"] == "and it went well"
    missing = client.put(f"{EVALUATIONS}/999999/note", headers=admin.headers, json={"note": "x"})
    assert missing.status_code == 404
    assert missing.get_json()["error"]["field"] == "evaluationId"
    empty = client.put(route, headers=admin.headers, json={"note": ""})
    assert empty.status_code == 400
    assert empty.get_json()["error"]["field"] == "note"


def test_back_goes_to_the_previous_stage_and_refuses_at_the_first(guarded, admin):
    client = guarded.test_client()
    at_first = client.post(PLAN.replace("plan", "back"), headers=admin.headers, json=GO)
    assert at_first.status_code == 409
    client.post(ADVANCE, headers=admin.headers, json=GO)  # 0% -> 10%
    back = client.post(PLAN.replace("plan", "back"), headers=admin.headers, json=GO)
    assert back.status_code == 200, back.get_json()
    assert back.get_json()["stagePercentage"] == 0


def test_the_baseline_from_kept_evaluations_adds_each_stages_last_look(guarded):
    """Without Prometheus: each run of looks counts from its stage's start, so the last
    look of each run holds its totals; the runs add up."""

    def look(age_min, stage, window, completions, errors):
        return kept_evaluation(
            timedelta(minutes=age_min),
            stage=stage,
            percentage=10 * stage,
            window_seconds=window,
            checks=[
                {
                    "name": "completion_success_rate",
                    "figures": {"legacyCompletions": completions, "legacyErrors": errors},
                    "threshold": {},
                }
            ],
        )

    with guarded.app_context():
        db.session.add_all(
            [look(50, 1, 60, 100, 1), look(40, 1, 660, 900, 9), look(30, 0, 60, 0, 0),
             look(20, 1, 60, 50, 0), look(10, 1, 660, 500, 5)]
        )  # fmt: skip
        db.session.commit()
        now = datetime.now(UTC)
        kept = watch.from_evaluations(guard.current_plan().flag, now - timedelta(hours=1), now)
    assert (kept.completions, kept.errors, kept.source) == (1400, 14, "evaluations")


def test_a_person_ends_a_watch_that_is_over_but_not_clean_with_a_note(guarded, admin):
    """The guard holds at the end of a watch it cannot call clean (too little traffic, no
    baseline); a person may end it once its hours are over, never before or while paused,
    and the note says why."""
    client = guarded.test_client()
    complete = PLAN.replace("plan", "complete")
    with guarded.app_context():
        guard.update_plan({"watch_hours": 1}, "tests")
        rollout.set_rollout(100, "tests: the last stage", "tests")
        db.session.add(kept_evaluation(timedelta(0), stage=2, percentage=100))
        db.session.commit()
    early = client.post(complete, headers=admin.headers, json={"note": "quiet week"})
    assert early.status_code == 409
    assert "the watch runs until" in early.get_json()["error"]["message"]
    with guarded.app_context():
        plan = db.session.get(RolloutPlan, guard.current_plan().flag)
        plan.stage_started_at -= timedelta(hours=2)
        plan.paused = True
        db.session.commit()
    paused = client.post(complete, headers=admin.headers, json={"note": "quiet week"})
    assert paused.status_code == 409
    client.put(PLAN, headers=admin.headers, json={"paused": False})  # restarts the watch
    with guarded.app_context():
        plan = db.session.get(RolloutPlan, guard.current_plan().flag)
        plan.stage_started_at -= timedelta(hours=2)
        db.session.commit()
    done = client.post(complete, headers=admin.headers, json={"note": "too quiet to tell"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["watch"]["state"] == "complete"
    (latest,) = client.get(EVALUATIONS, headers=admin.headers).get_json()["evaluations"]
    assert latest["note"] == "the end of the watch, by hand: too quiet to tell"
    again = client.post(complete, headers=admin.headers, json={"note": "again"})
    assert again.status_code == 409


def test_every_move_to_another_stage_forgets_the_last_watch():
    """Leaving the last stage by any road (a person's move, the guard's advance or rollback)
    clears the baseline and the completion, so the next arrival starts a new watch."""
    now = datetime.now(UTC)
    for move in (
        lambda plan: plan.follow_percentage(10, now),  # a person's move
        lambda plan: plan.start_stage(0, now),  # the guard's rollback
    ):
        plan = RolloutPlan(flag="f", stage_index=2, stage_started_at=now, completed_at=now)
        plan.baseline = baseline(1e6, 10).as_json()
        move(plan)
        assert (plan.baseline, plan.completed_at, plan.ready) == (None, None, False)
        assert plan.stage_started_at == now
