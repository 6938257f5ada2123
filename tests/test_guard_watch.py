"""The watch at 100%, without servers: the decision during and at the end of the watch, the
baseline from the kept evaluations, and the simulated watches (progress.guard.watch_simulation)
that hold the false pauses to the plan's rate and catch a twice-worse verified path."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from progress.guard import simulation, watch_simulation
from progress.guard.checks import Thresholds, judge
from progress.guard.decision import Situation, WatchClock, decide
from progress.guard.watch import Baseline, with_baseline
from progress.models import PLAN_DEFAULTS

from .support.guard import figures

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
