"""The timeouts from real data (the rollout's last phase): each timeout setting against the
latency histogram that governs it over the last N days, from Prometheus or this instance's
own counters. For each: the observed p50 / p99 / p99.9, the value the rule recommends
(p99.9 x 1.5, rounded up to a round value, clamped; RETRY_BASE: half the median wait), the share
of requests each candidate value would have cut, and the line to deploy. It changes
nothing: timeouts are deploy-time settings (docs/operations.md, "Tuning the timeouts")."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from .. import metrics
from ..exceptions import ProgressError
from ..metrics import Samples
from .figures import Prometheus, PrometheusUnavailable, _selector
from .own_counters import quantile

# The rule: the slowest of a thousand, with half again on top.
QUANTILE = 0.999
FACTOR = 1.5
# A bucket wider than this (upper / lower bound) cannot place a recommendation: the
# p99.9 could be anywhere in it.
MAX_BUCKET_RATIO = 1.7
# Fewer observations above the quantile than this, and the quantile rests on a handful
# of requests: the advice says to read more days.
MIN_TAIL = 10
# Round values a recommendation is rounded up to, in ms, times powers of ten.
ROUND = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5)


@dataclass(frozen=True)
class Histogram:
    """One latency histogram, as Prometheus names it, with the series that count."""

    name: str  # without _bucket
    labels: dict[str, str] = field(default_factory=dict)
    title: str = ""

    def describe(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{inner}}}" if inner else self.name


CACHE_UPDATE = Histogram(
    "progress_cache_update_seconds", {"path": "verified"}, "the verified path's cache update"
)
CACHE_UPDATE_ANY = Histogram("progress_cache_update_seconds", {}, "a cache update, either path")
PROGRESS_READ = Histogram("progress_progress_read_seconds", {}, "the progress read")
COMPLETION = Histogram("progress_completion_seconds", {}, "the completion's write")
REPLICA_WAIT = Histogram("progress_replica_wait_seconds", {}, "the replica's lag retries")


@dataclass(frozen=True)
class Setting:
    """A timeout setting, the histograms that govern it and its rule."""

    name: str
    histograms: tuple[Histogram, ...]  # the first is the one shown and cut
    rule: str
    low_ms: float
    high_ms: float
    # From each histogram's figure (its p99.9, or p50 for RETRY_BASE), the raw value in s.
    combine: Callable[[list[float]], float] = max
    quantile: float = QUANTILE
    factor: float = FACTOR


SETTINGS = (
    Setting(
        "PROGRESS_CACHE_UPDATE_TIMEOUT_MS",
        (CACHE_UPDATE,),
        "p99.9 of the verified path's cache update x 1.5",
        50,
        10_000,
    ),
    Setting(
        "PROGRESS_DB_TIMEOUT_MS",
        (COMPLETION, PROGRESS_READ),
        "the larger p99.9 of the completion's write and the progress read x 1.5",
        250,
        30_000,
    ),
    Setting(
        "PROGRESS_RETRY_MAX_MS",
        (REPLICA_WAIT,),
        "p99.9 of the replica's lag as reads waited it out x 1.5",
        100,
        10_000,
    ),
    Setting(
        "PROGRESS_RETRY_BASE_MS",
        (REPLICA_WAIT,),
        "half the median wait out of the replica's lag (the backoff doubles, so a wait is up "
        "to about twice the lag it waited out): most reads behind need one retry",
        5,
        500,
        quantile=0.5,
        factor=0.5,
    ),
    Setting(
        "PROGRESS_STALE_AFTER_MS",
        (COMPLETION, CACHE_UPDATE_ANY),
        "p99.9 of the completion's write plus p99.9 of a cache update x 1.5: how long a "
        "copy can be behind a completion",
        500,
        60_000,
        combine=sum,
    ),
)


@dataclass(frozen=True)
class Candidate:
    value_ms: float
    share_over: float | None  # the share of the histogram's requests above it
    requests_over: float | None
    label: str  # "current", "recommended", "" for another bucket bound


@dataclass(frozen=True)
class Advice:
    setting: str
    current_ms: float
    histogram: str  # the histogram shown, as Prometheus names it
    observations: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    recommended_ms: float | None  # None: no data, keep the current value
    rule: str
    line: str  # the setting to deploy
    candidates: list[Candidate]
    warnings: list[str]
    buckets_needed: list[float]  # bounds (s) that would place the recommendation


@dataclass(frozen=True)
class TimeoutsReport:
    source: str  # "prometheus" or "instance"
    days: float
    window: str  # in words
    settings: list[Advice]
    note: str


Buckets = dict[float, float]  # upper bound (inf: all) -> observations at or below it


class HistogramsUnavailable(ProgressError):
    """Prometheus could not be asked for the histograms; nothing was changed."""

    status, code = 502, "prometheus_unavailable"


def tune_timeouts(days: float) -> TimeoutsReport:
    """Every timeout setting against its histograms over the last `days` (Prometheus), or
    since this instance started (its own counters, without PROMETHEUS_URL)."""
    config = current_app.config
    if config["PROMETHEUS_URL"]:
        prometheus = Prometheus(config["PROMETHEUS_URL"], config["PROGRESS_GUARD_QUERY_TIMEOUT_S"])
        selector = config["PROGRESS_GUARD_SELECTOR"]

        def read(h: Histogram) -> Buckets:
            return _from_prometheus(prometheus, h, days, selector)

        source, window = "prometheus", f"the last {days:g} day" + ("s" if days != 1 else "")
    else:
        samples = metrics.add_samples(metrics.registry().collect(), {})

        def read(h: Histogram) -> Buckets:
            return _from_samples(samples, h)

        source, window = "instance", "since this instance started (its own counters)"
    try:
        advice = [advise(s, [read(h) for h in s.histograms], config[s.name]) for s in SETTINGS]
    except PrometheusUnavailable as exc:
        raise HistogramsUnavailable(f"Prometheus {exc}") from None
    return TimeoutsReport(
        source,
        days,
        window,
        advice,
        "Nothing was changed: timeouts are deploy-time settings; deploy the lines you choose.",
    )


def _from_prometheus(prometheus: Prometheus, h: Histogram, days: float, selector: str) -> Buckets:
    window = f"{max(int(days * 86_400), 60)}s"
    expr = f"sum by (le) (increase({h.name}_bucket{_selector(selector, **h.labels)}[{window}]))"
    return {float(m["le"]): v for m, v in prometheus.query(expr, time.time()) if "le" in m}


def _from_samples(samples: Samples, h: Histogram) -> Buckets:
    buckets: Buckets = {}
    wanted = set(h.labels.items())
    for (name, labels), value in samples.items():
        if name != f"{h.name}_bucket" or not wanted <= labels:
            continue
        le = float(dict(labels)["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    return buckets


def advise(setting: Setting, histograms: list[Buckets], current_ms: float) -> Advice:
    """The advice for one setting from its histograms' cumulative buckets; pure."""
    shown = histograms[0]
    total = shown.get(math.inf, 0.0)
    warnings: list[str] = []
    needed: list[float] = []
    figures: list[float] = []
    for h, buckets in zip(setting.histograms, histograms, strict=True):
        if buckets.get(math.inf, 0.0) <= 0:
            continue
        value = quantile(setting.quantile, buckets)
        if value is None:
            continue
        tail = buckets[math.inf] * (1 - setting.quantile)
        if tail < MIN_TAIL:
            warnings.append(
                f"{h.describe()}: its p{setting.quantile * 100:g} rests on {tail:.1f} of "
                f"{buckets[math.inf]:,.0f} observations above it: too few to trust; read "
                "more days"
            )
        coarse = _coarse(buckets, setting.quantile)
        if coarse:
            warnings.append(f"{h.describe()}: {coarse}")
            needed += _finer(buckets, setting.quantile)
        figures.append(value)
    recommended = None
    if figures:
        raw_ms = setting.combine(figures) * setting.factor * 1000
        recommended = _round_up(min(max(raw_ms, setting.low_ms), setting.high_ms))
        if raw_ms < setting.low_ms:
            warnings.append(f"the rule gives {raw_ms:.3g} ms; clamped to {setting.low_ms:g} ms")
        if raw_ms > setting.high_ms:
            warnings.append(f"the rule gives {raw_ms:.3g} ms; clamped to {setting.high_ms:g} ms")
        top = quantile(setting.quantile, shown)
        if top is not None and setting.factor > 1 and top * 1000 >= 0.9 * current_ms:
            warnings.append(
                f"the p{setting.quantile * 100:g} is at the current {current_ms:g} ms: the "
                "timeout cuts what it would measure, so the recommendation is a floor"
            )
    else:
        warnings.append("no observations in the window: keep the current value")

    def ms(q: float) -> float | None:
        value = quantile(q, shown) if total > 0 else None
        return None if value is None else round(value * 1000, 2)

    return Advice(
        setting=setting.name,
        current_ms=current_ms,
        histogram=setting.histograms[0].describe(),
        observations=round(total, 2),
        p50_ms=ms(0.5),
        p99_ms=ms(0.99),
        p999_ms=ms(0.999),
        recommended_ms=recommended,
        rule=setting.rule,
        line=f"{setting.name}={_int(recommended if recommended is not None else current_ms)}",
        candidates=_candidates(shown, current_ms, recommended),
        warnings=warnings,
        buckets_needed=sorted(set(needed)),
    )


def _candidates(buckets: Buckets, current_ms: float, recommended: float | None) -> list[Candidate]:
    """The current value, the recommendation and round values around them, each with the
    share of requests it would have cut (exact at a bucket's bound, linear within one)."""
    values = {current_ms: "current"}
    if recommended is not None:
        values[recommended] = "recommended" if recommended != current_ms else "current"
        for factor in (0.5, 2.0):
            values.setdefault(_round_up(recommended * factor), "")
    total = buckets.get(math.inf, 0.0)
    return [
        Candidate(
            value_ms=v,
            share_over=None if total <= 0 else round(share_over(buckets, v / 1000), 6),
            requests_over=None if total <= 0 else round(share_over(buckets, v / 1000) * total, 2),
            label=label,
        )
        for v, label in sorted(values.items())
    ]


def share_over(buckets: Buckets, seconds: float) -> float:
    """The share of observations above `seconds`, linear within a bucket."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return 0.0
    below, lower = 0.0, 0.0
    for edge in sorted(buckets):
        count = buckets[edge]
        if seconds < edge:
            if math.isinf(edge):  # beyond the largest bound: all of it counts as over
                return max(total - below, 0.0) / total
            within = below + (count - below) * (seconds - lower) / (edge - lower)
            return max(total - within, 0.0) / total
        below, lower = count, edge
    return 0.0


def _coarse(buckets: Buckets, q: float) -> str | None:
    """Why the buckets cannot place the q-quantile, if they cannot."""
    total = buckets.get(math.inf, 0.0)
    rank, lower = q * total, 0.0
    for edge in sorted(buckets):
        if buckets[edge] >= rank:
            if math.isinf(edge):
                return (
                    f"the p{q * 100:g} is above the largest bucket ({lower:g} s): "
                    "add larger buckets"
                )
            if lower > 0 and edge / lower > MAX_BUCKET_RATIO:
                return (
                    f"the p{q * 100:g} lies between the buckets {lower:g} s and {edge:g} s, "
                    f"{edge / lower:.2g}x apart: too coarse to place the recommendation"
                )
            return None
        lower = edge
    return None


def _finer(buckets: Buckets, q: float) -> list[float]:
    """Bounds that split the bucket holding the q-quantile into steps of at most 1.5x."""
    total = buckets.get(math.inf, 0.0)
    rank, lower = q * total, 0.0
    for edge in sorted(buckets):
        if buckets[edge] >= rank:
            top = edge if not math.isinf(edge) else max(lower, 0.001) * 8
            bound, added = max(lower, 0.001) * 1.5, []
            while bound < top:
                added.append(round(bound, 6))
                bound *= 1.5
            return added
        lower = edge
    return []


def _round_up(ms: float) -> float:
    """Up to the next round value: 1, 1.5, 2, 2.5, 3, 4, 5, 7.5 times a power of ten."""
    if ms <= 0:
        return 0.0
    power = 10 ** math.floor(math.log10(ms))
    for step in (*ROUND, 10.0):
        if step * power >= ms - 1e-9:
            return float(_int(step * power))
    return float(_int(10 * power))


def _int(value: float) -> int:
    return math.ceil(value - 1e-9)
