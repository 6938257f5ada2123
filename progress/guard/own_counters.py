"""The guard's figures without Prometheus: this instance's own counters, summed over its
workers (prometheus-client's multiprocess mode, `metrics.registry`), as increases since
the guard's first look at the stage. Right for one instance: with several, each sees only
its own learners, and Prometheus is needed (docs/guard.md).

The counters are cumulative since the instance started, so the reader keeps, between
looks, the totals at its first look at the stage and subtracts them; a total that went
down (the instance restarted) starts the count again from that look."""

from __future__ import annotations

import math
import os
import socket
import threading
from datetime import datetime

from .. import metrics
from ..metrics import Samples, sample_total
from .figures import PATHS, Figures

SOURCE_MARK = " (own counters)"  # ends an evaluation's `instance` made from them


def source_id() -> str:
    """This instance: its host and, under gunicorn, its metrics directory (one per
    instance, shared by its workers); else this process."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    where = os.path.basename(shared.rstrip("/")) if shared else str(os.getpid())
    return f"{socket.gethostname()}:{where}{SOURCE_MARK}"


def _counted(samples: Samples) -> Samples:
    """The cumulative samples: counters and histogram buckets (gauges are read as they are)."""
    return {k: v for k, v in samples.items() if k[0].endswith(("_total", "_bucket", "_count"))}


class OwnCounters:
    """The totals at the first look at a stage, kept between looks in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stage: tuple[str, datetime] | None = None
        self._since: datetime | None = None
        self._base: Samples = {}

    def read(self, flag: str, stage_started_at: datetime, now: datetime) -> Figures:
        """The increases since the first look at this stage (the window the figures say)."""
        samples = metrics.add_samples(metrics.registry().collect(), {})
        counted = _counted(samples)
        with self._lock:
            stage = (flag, stage_started_at)
            went_down = any(v < self._base.get(k, 0.0) for k, v in counted.items())
            if self._stage != stage or self._since is None or went_down:
                self._stage, self._since, self._base = stage, now, counted
            since, base = self._since, self._base
        increase = {k: v - base.get(k, 0.0) for k, v in counted.items()}
        window_s = max(int((now - since).total_seconds()), 0)
        return figures_from(increase, samples, window_s)


def figures_from(increase: Samples, current: Samples, window_s: int) -> Figures:
    """Figures as the guard's Prometheus queries give them, from counter increases and
    the gauges' current values."""

    def total(name: str, **labels: str) -> float:
        return sample_total(increase, name, **labels)

    buckets: dict[str, dict[float, float]] = {p: {} for p in PATHS}
    for (name, labels), value in increase.items():
        if name != "progress_cache_update_seconds_bucket":
            continue
        named = dict(labels)
        if named.get("path") in buckets:
            le = float(named["le"])  # "+Inf" reads as inf
            buckets[named["path"]][le] = buckets[named["path"]].get(le, 0.0) + value
    open_now = sample_total(current, "progress_circuit_breaker_open")
    return Figures(
        window_s=window_s,
        false_locks={
            by: total("progress_false_lock_screens_total", path="verified", detected_by=by)
            for by in ("client_report", "audit", "double_check")
        },
        completions={
            p: {
                outcome: total("progress_completions_total", path=p, outcome=outcome)
                for outcome in ("success", "error")
            }
            for p in PATHS
        },
        access_checks={p: total("progress_access_checks_total", path=p) for p in PATHS},
        cache_update_p95_s={p: quantile(0.95, buckets[p]) for p in PATHS},
        cache_update_buckets=buckets,
        breaker_open_share=1.0 if open_now > 0 else 0.0,  # open now: the look's share
        breaker_trips=total("progress_circuit_breaker_trips_total"),
        legacy_false_locks=max(  # one lock found from both sides counts once
            total("progress_false_lock_screens_total", path="legacy", detected_by=by)
            for by in ("client_report", "audit")
        ),
    )


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile's answer over cumulative buckets: linear within the bucket."""
    edges = sorted(buckets)
    total = buckets.get(math.inf, 0.0)
    if not edges or total <= 0:
        return None
    rank, below, lower = q * total, 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if math.isinf(edge):
                return lower  # Prometheus answers the highest finite bound
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (edge - lower) * share
        below, lower = count, edge
    return None
