"""Prometheus metric families, each series created at zero, and the sums read from them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import prometheus_client
from flask import Flask
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, multiprocess
from prometheus_client.metrics_core import Metric

from .path_names import PATHS

# (sample name, its labels) -> value, summed over workers or instances
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class _KnownSeries:
    """`labels()` remembering each series it returned: prometheus-client checks and converts
    the label values and takes a lock on every call, and the request path asks for the same
    few series several times per request. The label values here are all bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known: dict[tuple[str, ...], Any] = {}

    def labels(self, *values: str) -> Any:
        series = self._known.get(values)
        if series is None:
            series = self._known[values] = super().labels(*values)  # type: ignore[misc]
        return series


class Counter(_KnownSeries, prometheus_client.Counter):
    pass


class Histogram(_KnownSeries, prometheus_client.Histogram):
    pass


# The latency histograms `flask rollout tune` reads: steps of at most 1.7x between bounds
# (the guard's 0.25 s budget among them), so a timeout recommended from a p99.9 lands
# within a bucket narrow enough to place it (docs/operations.md, "Tuning the timeouts").
LATENCY_BUCKETS = (
    0.001, 0.0015, 0.002, 0.0025, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03,
    0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0,
    7.5, 10.0,
)  # fmt: skip

completions = Counter("progress_completions", "Lesson completions answered", ["path", "outcome"])
completion_seconds = Histogram(
    "progress_completion_seconds",
    "A completion's write: the transaction that records it and bumps the version",
    ["path"],
    buckets=LATENCY_BUCKETS,
)
progress_read_seconds = Histogram(
    "progress_progress_read_seconds",
    "One read of a learner's progress from the database (the replica, or the primary)",
    ["source"],
    buckets=LATENCY_BUCKETS,
)
replica_wait_seconds = Histogram(
    "progress_replica_wait_seconds",
    "From a replica read found behind the known version to the read that served it (the"
    " replica caught up, or the primary after the retry budget): the replica's lag retries",
    buckets=LATENCY_BUCKETS,
)
cache_updates = Counter(
    "progress_cache_updates", "Cache updates after a completion", ["path", "result"]
)
cache_update_seconds = Histogram(
    "progress_cache_update_seconds",
    "From DB commit to cache updated (and verified, on the verified path)",
    ["path"],
    buckets=LATENCY_BUCKETS,
)
cache_lookups = Counter("progress_cache_lookups", "Cache lookups", ["path", "result"])
staleness_incidents = Counter(
    "progress_cache_staleness_incidents",
    "Cached entries found behind the primary (below a known version, or behind it when a"
    " locked answer is confirmed there)",
    ["path"],
)
access_checks = Counter(
    "progress_access_checks", "Access checks answered", ["path", "source", "result"]
)
false_lock_screens = Counter(
    "progress_false_lock_screens",
    "Locked answers that the primary contradicts",
    ["path", "detected_by"],
)
cache_mismatches = Counter(
    "progress_cache_mismatches",
    "The cache said locked, the DB said accessible, and the DB answer was used",
    ["path"],
)
review_sets = Counter("progress_review_sets", "Review sets answered", ["path", "source"])
stale_review_sets = Counter(
    "progress_stale_review_sets",
    "Review sets missing the words of a lesson the primary holds completed",
    ["path", "detected_by"],
)
circuit_breaker_open = Gauge(
    "progress_circuit_breaker_open",
    "1 while the cache is bypassed (in any live worker)",
    multiprocess_mode="livemax",
)
circuit_breaker_trips = Counter("progress_circuit_breaker_trips", "Times the breaker opened")
db_retries = Counter("progress_db_retries", "DB read retries", ["reason"])
reads = Counter(
    "progress_reads",
    "Progress reads by the database that answered and why it was that one (docs/design.md)",
    ["path", "target", "reason"],
)
# Why a read went where it went (docs/design.md#where-a-read-goes).
REPLICA_READ_REASONS = ("no_version", "replayed", "replay_unknown", "position_unknown")
PRIMARY_READ_REASONS = (
    "replica_behind",  # the replica isn't known to have replayed the version's position
    "replica_missed",  # the replica answered below the version all the same
    "version_check",  # position unknown: does the primary hold the version at all?
    "retry_exhausted",  # position unknown: the replica didn't catch up within the budget
    "no_replica",  # none configured (SQLite), or set aside after a failure
    "replica_failed",  # the replica failed this read
    "double_check",  # a "locked" not read from the primary, confirmed there
    "review_check",  # a review set for a client without its version, confirmed there
    "cache_update",  # the completion's re-read (layer 2)
    "audit",  # the legacy path's audit of its answers
)
rollout_percentage = Gauge(
    "progress_rollout_percentage", "The flag's current percentage", multiprocess_mode="mostrecent"
)
# Requests by route template (never the raw URL: ids would make a series per learner).
http_requests = Counter(
    "progress_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
http_request_seconds = Histogram(
    "progress_http_request_duration_seconds",
    "From the request's arrival in the app to its answer",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# By route template; every limited route's series is created at zero by progress/rate_limits.py.
rate_limited = Counter(
    "progress_rate_limited", "Requests refused 429 by a per-learner abuse limit", ["route"]
)
# The rollout plan's stage and the guard's decisions are read from the database at scrape
# time (progress/guard/keeping.py), so they reach /metrics wherever the guard runs.

LABEL_VALUES = {
    completions: [(p, o) for p in PATHS for o in ("success", "error")],
    cache_updates: [
        (p, r) for p in PATHS for r in ("verified", "applied", "failed", "timeout", "skipped")
    ],
    cache_update_seconds: [(p,) for p in PATHS],
    completion_seconds: [(p,) for p in PATHS],
    progress_read_seconds: [(s,) for s in ("primary", "replica")],
    cache_lookups: [(p, r) for p in PATHS for r in ("hit", "miss", "stale")],
    staleness_incidents: [(p,) for p in PATHS],
    access_checks: [
        (p, s, r) for p in PATHS for s in ("cache", "db") for r in ("accessible", "locked")
    ],
    false_lock_screens: [(p, d) for p in PATHS for d in ("double_check", "audit", "client_report")],
    cache_mismatches: [(p,) for p in PATHS],
    review_sets: [(p, s) for p in PATHS for s in ("cache", "db")],
    stale_review_sets: [(p, d) for p in PATHS for d in ("double_check", "audit")],
    db_retries: [(r,) for r in ("replica_lag", "db_error")],
    reads: [
        *((p, "replica", r) for p in PATHS for r in REPLICA_READ_REASONS),
        *((p, "primary", r) for p in PATHS for r in PRIMARY_READ_REASONS),
    ],
}


class _Off:
    """A family that records nothing: PROGRESS_METRICS=off, to measure what metrics cost."""

    def labels(self, *_labels: str, **_named: str) -> _Off:
        return self

    def inc(self, *_args: float) -> None:
        pass

    observe = set = inc


if os.environ.get("PROGRESS_METRICS", "on").lower() == "off":
    completions = cache_updates = cache_update_seconds = cache_lookups = _Off()  # type: ignore[assignment]
    staleness_incidents = access_checks = false_lock_screens = cache_mismatches = _Off()  # type: ignore[assignment]
    circuit_breaker_open = circuit_breaker_trips = db_retries = reads = _Off()  # type: ignore[assignment]
    rollout_percentage = http_requests = http_request_seconds = _Off()  # type: ignore[assignment]
    rate_limited = review_sets = stale_review_sets = _Off()  # type: ignore[assignment]
    completion_seconds = progress_read_seconds = replica_wait_seconds = _Off()  # type: ignore[assignment]


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def create_series_at_zero(routes: Iterable[tuple[str, str]] = ()) -> None:
    """So dashboards and rate() see every series before its first event; `routes` are the
    app's (method, route template) pairs, for the latency histogram."""
    for family, combinations in LABEL_VALUES.items():
        for labels in combinations:
            family.labels(*labels)
    for method, route in routes:
        http_request_seconds.labels(method, route)


def create_route_series_at_zero(app: Flask) -> None:
    """The latency histogram of every route the app serves, at zero from the start."""
    create_series_at_zero(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    )


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """One answered request; `route` is the matched rule's template (None: no route)."""
    method = method if method in METHODS else "other"
    route = route or "unmatched"
    http_requests.labels(method, route, str(status)).inc()
    http_request_seconds.labels(method, route).observe(seconds)


def registry() -> CollectorRegistry:
    """Every worker's metrics under gunicorn (multiprocess mode); this process's otherwise."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


def add_samples(families: Iterable[Metric], into: Samples) -> Samples:
    """Add the families' samples into `into`, sample by sample (e.g. one instance's
    /metrics after another's); returns `into`."""
    for family in families:
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            into[key] = into.get(key, 0.0) + sample.value
    return into


def sample_total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series carrying `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and wanted <= lbl)


def path_figures() -> dict[str, dict[str, float | None]]:
    """The figures the admin page shows for each path, by their Python names (all workers
    under multiprocess mode)."""
    samples = add_samples(registry().collect(), {})

    def total(name: str, **labels: str) -> float:
        return sample_total(samples, name, **labels)

    figures: dict[str, dict[str, float | None]] = {}
    for path in PATHS:
        ok = total("progress_completions_total", path=path, outcome="success")
        errors = total("progress_completions_total", path=path, outcome="error")
        hits = total("progress_cache_lookups_total", path=path, result="hit")
        lookups = total("progress_cache_lookups_total", path=path)
        figures[path] = {
            "completions": ok + errors,
            "completion_errors": errors,
            "completion_success_rate": ok / (ok + errors) if ok + errors else None,
            "false_lock_screens": total("progress_false_lock_screens_total", path=path),
            "staleness_incidents": total("progress_cache_staleness_incidents_total", path=path),
            "cache_hit_rate": hits / lookups if lookups else None,
            "cache_mismatches": total("progress_cache_mismatches_total", path=path),
            "access_checks": total("progress_access_checks_total", path=path),
            "review_sets": total("progress_review_sets_total", path=path),
            "stale_review_sets": total("progress_stale_review_sets_total", path=path),
        }
    return figures
