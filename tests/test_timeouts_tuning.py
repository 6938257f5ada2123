"""`flask rollout tune` and GET /api/v1/admin/timeouts: each timeout setting against the
latency histogram that governs it: percentiles, the recommendation by the stated rule, the
share each candidate would have cut, buckets too coarse to place it, and bad input refused."""

from __future__ import annotations

import itertools
import json
import math

from harness.processes import free_port
from progress import rollout
from progress.guard import tuning

from .support.guard import prometheus_at

TIMEOUTS = "/api/v1/admin/timeouts"
CACHE = next(s for s in tuning.SETTINGS if s.name == "PROGRESS_CACHE_UPDATE_TIMEOUT_MS")


def spread_buckets() -> dict[float, float]:
    """10,000 cache updates: 9,000 within 5 ms, 9,990 within 50 ms, every one within 75 ms."""
    return {0.005: 9_000, 0.03: 9_900, 0.05: 9_990, 0.075: 10_000, 0.1: 10_000, math.inf: 10_000}


def test_the_recommendation_is_the_p999_times_one_and_a_half_rounded_up():
    """p99.9 lies at 50 ms (the 9,990th of 10,000): x 1.5 = 75 ms, a round value already;
    the line to deploy says so, and at the current 2 s nothing would have been cut."""
    advice = tuning.advise(CACHE, [spread_buckets()], 2000)
    assert advice.p999_ms == 50.0
    assert advice.recommended_ms == 75.0
    assert advice.line == "PROGRESS_CACHE_UPDATE_TIMEOUT_MS=75"
    shares = {c.value_ms: c.share_over for c in advice.candidates}
    assert shares[75.0] == 0.0  # exact at a bucket's bound: every update within 75 ms
    assert shares[2000] == 0.0
    # Half of 75, rounded up: 40 ms, between the 30 ms and 50 ms bounds: 55 of 10,000 above.
    assert math.isclose(shares[40.0], 0.0055)
    assert shares[150.0] == 0.0
    assert advice.warnings == []


def test_a_p999_resting_on_a_handful_of_requests_says_to_read_more_days():
    """Of 2,000 updates, 2 lie above the p99.9: the recommendation stands, with a warning."""
    few = {0.005: 1_990, 0.05: 1_998, 0.075: 2_000, math.inf: 2_000}
    advice = tuning.advise(CACHE, [few], 2000)
    assert advice.recommended_ms is not None
    assert any("rests on 2.0 of 2,000 observations" in w for w in advice.warnings)


def test_a_recommendation_is_clamped_and_says_so():
    fast = {0.001: 100_000, math.inf: 100_000}
    advice = tuning.advise(CACHE, [fast], 2000)
    assert advice.recommended_ms == 50.0  # the setting's floor
    assert any("clamped to 50 ms" in w for w in advice.warnings)


def test_buckets_too_coarse_to_place_the_recommendation_are_named_with_the_ones_to_add():
    """The cache-update histogram's former buckets, 50 ms then 100 ms: a p99.9 between them
    could be anywhere in a factor of 2, so the advice says so and which bounds to add."""
    coarse = {0.05: 9_985, 0.1: 10_000, 0.25: 10_000, math.inf: 10_000}
    advice = tuning.advise(CACHE, [coarse], 2000)
    assert any("too coarse to place the recommendation" in w for w in advice.warnings)
    assert advice.buckets_needed == [0.075]
    beyond = {0.05: 9_000, math.inf: 10_000}
    advice = tuning.advise(CACHE, [beyond], 2000)
    assert any("above the largest bucket" in w for w in advice.warnings)


def test_the_histograms_buckets_place_every_recommendation():
    """Every step between the latency buckets is at most the ratio the advice needs."""
    bounds = tuning.metrics.LATENCY_BUCKETS
    assert all(b / a <= tuning.MAX_BUCKET_RATIO for a, b in itertools.pairwise(bounds))
    assert 0.25 in bounds  # the guard's latency budget stays a bucket bound


def test_no_observations_keep_the_current_value():
    advice = tuning.advise(CACHE, [{}], 2000)
    assert advice.recommended_ms is None
    assert advice.line == "PROGRESS_CACHE_UPDATE_TIMEOUT_MS=2000"
    assert "no observations" in advice.warnings[0]


def test_tune_on_the_instances_own_counters_after_real_completions(app, auth):
    """Without Prometheus, the command reads this process's histograms: after completions
    on the verified path, the cache update and the completion's write have observations,
    and every timeout setting has its line to deploy."""
    client = app.test_client()
    with app.app_context():
        rollout.set_rollout(100, "tests: everyone on verified", "tests")
    learner = auth.learner()
    for lesson in ("greetings", "introductions"):
        done = client.post(
            f"/api/v1/modules/basics/lessons/{lesson}/complete", headers=learner.headers
        )
        assert done.status_code == 200, done.get_json()
    result = app.test_cli_runner().invoke(args=["rollout", "tune", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"] == "instance"
    by_name = {a["setting"]: a for a in report["settings"]}
    assert set(by_name) == {s.name for s in tuning.SETTINGS}
    assert by_name["PROGRESS_DB_TIMEOUT_MS"]["observations"] >= 2
    assert by_name["PROGRESS_DB_TIMEOUT_MS"]["recommendedMs"] is not None
    assert all(a["line"].startswith(a["setting"] + "=") for a in by_name.values())
    text = app.test_cli_runner().invoke(args=["rollout", "tune", "--format", "text"])
    assert "deploy    PROGRESS_DB_TIMEOUT_MS=" in text.output
    assert "Nothing was changed" in text.output


def test_bad_days_are_refused_with_the_field_named_and_prometheus_down_is_a_502(app, admin):
    client = app.test_client()
    for days in ("0", "abc", "91", "nan"):
        answer = client.get(f"{TIMEOUTS}?days={days}", headers=admin.headers)
        assert answer.status_code == 400, (days, answer.get_json())
        assert answer.get_json()["error"]["field"] == "days"
    with prometheus_at(app, f"http://127.0.0.1:{free_port()}"):
        answer = client.get(TIMEOUTS, headers=admin.headers)
    assert answer.status_code == 502
    assert answer.get_json()["error"]["code"] == "prometheus_unavailable"
