"""The watch at the plan's last stage: at 100% there is no legacy path beside the verified
one, so the guard compares the verified path with the legacy path's own history, the
`baseline_days` before the move, for `watch_hours`; a clean watch marks the rollout
complete (docs/guard.md, "The watch at 100%").

The baseline is taken once, at the first look after the move, and kept with the plan: from
Prometheus (range queries, one step a day, so each day counts whole and time-of-day effects
average out), or, without Prometheus, from the guard's kept evaluations (each stage's last
look, whose counts run from the stage's start). The checks then judge the verified path's
figures since the move against it with the same sequential test and margins
(`with_baseline`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..extensions import db
from ..models import GuardEvaluation, RolloutPlan
from .figures import Figures, Prometheus, _selector

DAY_S = 86_400


@dataclass(frozen=True)
class Baseline:
    """The legacy path's figures over the days before the move."""

    start: datetime
    end: datetime  # the move to the last stage
    source: str  # "prometheus" or "evaluations"
    completions: float
    errors: float
    # the cache update histogram's cumulative buckets: upper bound -> updates at or below
    buckets: dict[float, float]
    days: list[dict[str, Any]]  # each day, oldest first: {"completions", "errors"} (Prometheus)

    @property
    def success_rate(self) -> float | None:
        return 1 - self.errors / self.completions if self.completions else None

    def over_budget_share(self, budget_s: float) -> float | None:
        """The share of updates over the budget (the highest bucket at or below it)."""
        total = self.buckets.get(math.inf, 0.0)
        edges = [le for le in self.buckets if le <= budget_s]
        if total <= 0:
            return None
        within = self.buckets[max(edges)] if edges else 0.0
        return max(total - within, 0.0) / total

    def as_json(self) -> dict[str, Any]:
        """As the plan keeps it (`rollout_plans.baseline`)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "source": self.source,
            "completions": round(self.completions, 2),
            "errors": round(self.errors, 2),
            "buckets": {_le(le): round(n, 2) for le, n in sorted(self.buckets.items())},
            "days": self.days,
        }

    @classmethod
    def from_json(cls, kept: dict[str, Any]) -> Baseline:
        return cls(
            datetime.fromisoformat(kept["start"]),
            datetime.fromisoformat(kept["end"]),
            kept["source"],
            float(kept["completions"]),
            float(kept["errors"]),
            {float(le): float(n) for le, n in kept["buckets"].items()},
            list(kept.get("days", [])),
        )


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def period(plan: RolloutPlan) -> tuple[datetime, datetime]:
    """The baseline's days: `baseline_days` ending at the move to the last stage."""
    end = plan.stage_started_at
    return end - timedelta(days=plan.baseline_days), end


def from_prometheus(
    prometheus: Prometheus, start: datetime, end: datetime, selector: str
) -> Baseline:
    """The legacy path's completions and cache update buckets over [start, end], one range
    step a day (a fraction of a day is one step): each point is a whole day's increase."""
    span = (end - start).total_seconds()
    steps = max(1, round(span / DAY_S))
    step = span / steps
    first, last = start.timestamp() + step, end.timestamp()
    legacy = _selector(selector, path="legacy")
    window = f"{max(round(step), 1)}s"
    outcomes = prometheus.query_range(
        f"sum by (outcome) (increase(progress_completions_total{legacy}[{window}]))",
        first,
        last,
        step,
    )
    buckets = prometheus.query_range(
        f"sum by (le) (increase(progress_cache_update_seconds_bucket{legacy}[{window}]))",
        first,
        last,
        step,
    )
    per_outcome = {m.get("outcome", ""): values for m, values in outcomes}
    ok, bad = per_outcome.get("success", []), per_outcome.get("error", [])
    days = [
        {"completions": round(s + e, 2), "errors": round(e, 2)}
        for s, e in zip(ok, bad + [0.0] * (len(ok) - len(bad)), strict=False)
    ]
    return Baseline(
        start,
        end,
        "prometheus",
        sum(ok) + sum(bad),
        sum(bad),
        {float(m["le"]): sum(values) for m, values in buckets if "le" in m},
        days,
    )


def from_evaluations(flag: str, start: datetime, end: datetime) -> Baseline:
    """The legacy path's figures from the guard's kept evaluations over [start, end]: each
    run of looks at a stage counts from the stage's start, so its last look holds its
    totals; a window that shrinks starts a new run (a new stage or a restart)."""
    rows = db.session.scalars(
        sa.select(GuardEvaluation)
        .where(GuardEvaluation.flag == flag, GuardEvaluation.at >= start, GuardEvaluation.at <= end)
        .order_by(GuardEvaluation.id)
    )
    completions = errors = 0.0
    buckets: dict[float, float] = {}
    for last in _last_of_each_run(rows):
        checks = {c["name"]: c for c in last.checks}
        rate = checks.get("completion_success_rate", {}).get("figures") or {}
        completions += float(rate.get("legacyCompletions") or 0)
        errors += float(rate.get("legacyErrors") or 0)
        latency = checks.get("cache_update_latency", {})
        updates = float((latency.get("figures") or {}).get("legacyUpdates") or 0)
        over = float((latency.get("figures") or {}).get("legacyOverBudget") or 0)
        if updates:  # kept as the share over the budget's bucket: one bucket and the total
            edge = float((latency.get("threshold") or {}).get("bucketSeconds") or 0.0)
            buckets[edge] = buckets.get(edge, 0.0) + updates - over
            buckets[math.inf] = buckets.get(math.inf, 0.0) + updates
    return Baseline(start, end, "evaluations", completions, errors, buckets, [])


def _last_of_each_run(rows: Iterable[GuardEvaluation]) -> list[GuardEvaluation]:
    """The last look of each run: a run ends when the stage or the percentage changes or
    the window shrinks."""
    runs: list[GuardEvaluation] = []
    previous: GuardEvaluation | None = None
    for row in rows:
        if previous is not None and (
            row.stage != previous.stage
            or row.percentage != previous.percentage
            or row.window_seconds < previous.window_seconds
        ):
            runs.append(previous)
        previous = row
    if previous is not None:
        runs.append(previous)
    return runs


def with_baseline(figures: Figures, baseline: Baseline) -> Figures:
    """The verified path's figures since the move, with the baseline as the "legacy" side
    of both comparisons."""
    legacy = {"success": baseline.completions - baseline.errors, "error": baseline.errors}
    completions = dict(figures.completions or {})
    completions["legacy"] = legacy
    buckets = dict(figures.cache_update_buckets)
    buckets["legacy"] = dict(baseline.buckets)
    return replace(
        figures,
        completions=completions,
        cache_update_buckets=buckets,
        baseline=f"legacy's {describe_days(baseline)} before the move",
    )


def describe_days(baseline: Baseline) -> str:
    """ "7 days", "1 day", or the seconds of a fraction of a day."""
    span = (baseline.end - baseline.start).total_seconds()
    days = span / DAY_S
    if abs(days - round(days)) < 1e-6 and round(days) >= 1:
        whole = round(days)
        return f"{whole} day" + ("s" if whole != 1 else "")
    return f"{span:,.0f} s"


def whole_days(baseline_days: float) -> bool:
    return baseline_days >= 1 and abs(baseline_days - round(baseline_days)) < 1e-9


def watch_length_s(plan: RolloutPlan) -> float:
    return plan.watch_hours * 3600
