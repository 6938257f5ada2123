"""The guard's decision table, pure: the checks `judge` makes from synthetic figures, the
decision `decide` takes from them and where the rollout stands, and the rule for stages."""

from __future__ import annotations

from dataclasses import replace

import pytest

from progress import guard
from progress.guard.checks import Thresholds, judge
from progress.guard.decision import Situation, decide
from progress.guard.figures import Figures
from progress.models import PLAN_DEFAULTS

from .support.guard import (
    figures,
)

LIMITS = Thresholds.of(PLAN_DEFAULTS)  # 50 and 200 on each path, margins 0.1 and 5 points


def situation(**changes) -> Situation:
    return Situation(
        **{
            "percentage": 10,
            "next_percentage": 100,
            "stage_elapsed_s": 900,
            "min_stage_seconds": 600,
            "auto_advance": True,
            "on_failure": "rollback",
            "paused": False,
            **changes,
        }
    )


def verdict(fig: Figures, **changes):
    now = situation(**changes)
    return decide(judge(fig, LIMITS, now.percentage), now)


SMALL = (200, 0, 800)  # too few completions to tell 0.1 point either way


@pytest.mark.parametrize(
    ("fig", "changes", "decision", "says"),
    [
        (
            figures(),
            {},
            "advance",
            "verified success rate 100% vs 100%: not worse by more than 0.1 point with 99% "
            "confidence after 220,000 completions",
        ),
        (figures(), {"auto_advance": False}, "ready", "ready for 100%"),
        (figures(), {"stage_elapsed_s": 120}, "hold", "has run 120 s of its 600 s"),
        (
            figures(shown=1, verified=(3, 0, 5)),
            {},
            "rollback",
            "false lock screens shown on the verified path: 1 in",
        ),
        (figures(shown=1), {"on_failure": "pause"}, "pause", "false lock screens shown"),
        (figures(shown=1), {"paused": True}, "rollback", "rolling back to 0%"),
        (figures(shown=1), {"paused": True, "on_failure": "pause"}, "hold", "already paused"),
        (figures(caught=7), {}, "advance", "7 caught by its double check"),
        (figures(verified=(0, 0, 0), legacy=(0, 0, 0)), {}, "hold", "no data"),
        (figures(verified=(0, 0, 0)), {}, "hold", "no data: no traffic on the verified path"),
        (figures(verified=(10, 0, 40)), {}, "hold", "too little data"),
        (
            figures(verified=SMALL, legacy=(2000, 0, 8000)),
            {},
            "hold",
            "verified success rate 100% vs 100% after 2,200 completions: inconclusive, holding",
        ),
        (
            figures(verified=(19_000, 1_000, 80_000)),
            {},
            "rollback",
            "verified success rate 95% vs 100%: worse by more than 0.1 point with 99% "
            "confidence after 220,000 completions",
        ),
        (figures(verified=(19_000, 1_000, 80_000)), {"on_failure": "pause"}, "pause", "95%"),
        (figures(verified=(10, 30, 40)), {}, "rollback", "verified success rate 25% vs 100%"),
        (
            figures(verified=(19_990, 10, 80_000), legacy=(199_900, 100, 800_000)),
            {},
            "advance",
            "99.95% vs 99.95%: not worse by more than 0.1 point",
        ),
        (
            figures(slow=0.4),
            {},
            "pause",
            "cache updates over 0.25 s: verified 40% vs 0%: worse by more than 5 points with 99% "
            "confidence",
        ),
        (
            figures(slow=0.4, verified=(20, 0, 40), legacy=(200, 0, 800)),
            {},
            "hold",
            "cache updates over 0.25 s: verified 40% vs 0% after 220 updates: inconclusive",
        ),
        (figures(breaker=0.8), {}, "pause", "circuit breaker open 80%"),
        (figures(breaker=0.3), {}, "advance", "circuit breaker open 30%"),
        (figures(slow=None), {}, "hold", "no cache updates on the verified or legacy path"),
        (figures(), {"paused": True}, "hold", "paused"),
        (figures(), {"percentage": 0, "next_percentage": 10}, "hold", "0%"),
        (figures(shown=3), {"percentage": 0, "next_percentage": 10}, "hold", "0%"),
        (
            figures(legacy=(0, 0, 0)),
            {"percentage": 100, "next_percentage": None},
            "hold",
            "last stage",
        ),
        (
            figures(shown=2, legacy=(0, 0, 0)),
            {"percentage": 100, "next_percentage": None},
            "rollback",
            "false lock screens shown on the verified path: 2",
        ),
        (figures(), {"off_plan": True, "next_percentage": None}, "hold", "not a stage"),
    ],
    ids=[
        "healthy-auto",
        "healthy-manual",
        "stage-time-not-over",
        "one-false-lock-whatever-the-sample",
        "false-lock-pauses-when-planned",
        "false-lock-rolls-back-even-when-paused",
        "false-lock-while-paused-by-plan",
        "double-check-catches-are-not-shown",
        "no-traffic",
        "no-verified-traffic",
        "small-sample",
        "success-rate-inconclusive",
        "worse-success-rate",
        "worse-success-rate-pause-plan",
        "clear-regression-on-a-small-sample",
        "success-rate-within-margin",
        "slow-cache-updates-pause",
        "slow-cache-updates-inconclusive",
        "breaker-stayed-open",
        "breaker-tripped-briefly",
        "no-cache-updates",
        "paused-holds",
        "zero-percent",
        "zero-percent-ignores-old-false-locks",
        "last-stage",
        "last-stage-false-lock",
        "off-plan",
    ],
)
def test_the_decision_on_synthetic_figures(fig, changes, decision, says):
    """Each situation gives its decision, and the reason says in words what it found."""
    result = verdict(fig, **changes)
    assert result.decision == decision, result.reason
    assert says in result.reason


def test_slow_cache_updates_pause_even_when_the_plan_rolls_back():
    """Slowness leaves the verified path right (bounded update, breaker): it pauses."""
    assert verdict(figures(slow=0.4), on_failure="rollback").decision == "pause"


def test_every_check_reports_its_figures_threshold_and_test():
    checks = {c.name: c for c in judge(figures(shown=1, caught=2), LIMITS, 10)}
    assert set(checks) == {
        "false_lock_screens",
        "sample_size",
        "completion_success_rate",
        "cache_update_latency",
        "circuit_breaker",
    }
    locks = checks["false_lock_screens"].as_json()
    assert locks["status"] == "fail"
    assert locks["figures"] == {
        "shown": 1.0,
        "clientReport": 1.0,
        "audit": 0.0,
        "caughtByDoubleCheck": 2.0,
    }
    assert locks["threshold"] == {"maxShown": 0}
    assert "test" not in locks
    assert checks["sample_size"].threshold["minCompletions"] == 50
    rate = checks["completion_success_rate"].as_json()
    assert rate["threshold"] == {"margin": 0.001, "confidence": 0.99}
    test = rate["test"]
    assert (test["method"], test["counting"], test["verdict"]) == ("mSPRT", "errors", "not_worse")
    assert test["evidence"] == 220_000
    assert test["statistic"] == 0
    assert test["lower"] < 0 < test["upper"] <= test["margin"] == 0.001
    assert test["confidence"] == 0.99
    latency = checks["cache_update_latency"].as_json()
    assert latency["figures"]["verifiedP95Seconds"] == 0.01
    assert latency["threshold"]["bucketSeconds"] == 0.25
    assert latency["test"]["counting"] == "updates over the budget"


def test_a_budget_between_buckets_counts_against_the_bucket_below():
    """The budget is read from the histogram's buckets: with 0.3 s, an update is within it
    only when it is in the 0.25 s bucket (those between 0.25 and 0.5 s may be over)."""
    (latency,) = [
        c
        for c in judge(figures(), replace(LIMITS, p95_budget_s=0.3), 10)
        if c.name == "cache_update_latency"
    ]
    assert latency.threshold["bucketSeconds"] == 0.25
    assert "cache updates over 0.25 s" in latency.detail


def test_no_series_at_all_is_no_data_for_every_check():
    empty = Figures(window_s=60, false_locks=None, completions=None, access_checks=None)
    checks = judge(empty, LIMITS, 10)
    assert {c.status for c in checks} == {"no_data"}
    assert decide(checks, situation()).decision == "hold"


@pytest.mark.parametrize(
    ("given", "kept"),
    [([0, 10, 100], [0, 10, 100]), ([100, 10], [0, 10, 100]), ([0, 50], [0, 50])],
)
def test_stages_are_kept_rising_from_zero(given, kept):
    assert guard.validate_stages(given) == kept


@pytest.mark.parametrize("bad", [[0], [0, 0, 10], [0, 101], [0, True], [-1, 10]])
def test_bad_stages_are_refused(bad):
    with pytest.raises(ValueError, match=r"stage|percent|0\.\.100"):
        guard.validate_stages(bad)


def test_a_lock_screen_both_reported_and_audited_counts_once():
    """The client's report and the audit find the same lock screens from either side: the
    check counts the larger of the two, never their sum."""
    seen = figures()
    seen.false_locks.update(client_report=2.0, audit=3.0)
    locks = {c.name: c for c in judge(seen, LIMITS, 10)}["false_lock_screens"].as_json()
    assert (locks["status"], locks["figures"]["shown"]) == ("fail", 3.0)
    assert "shown on the verified path: 3 in" in locks["detail"]
