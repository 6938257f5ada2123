"""What the plan's page and command line show beside the plan: whether the guard runs by
itself and why not, and what a margin costs at the current traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from flask import current_app

from ..models import RolloutPlan, utcnow
from .decision import duration_text
from .eta import MarginCost, margin_costs
from .evaluation import recent_evaluations
from .own_counters import SOURCE_MARK
from .watch import Baseline, describe_days, watch_length_s, whole_days

WatchState = Literal["not_started", "watching", "paused", "over", "complete"]


@dataclass(frozen=True)
class GuardStatus:
    running: bool
    source: str | None  # "prometheus", "instance" or None
    reason: str | None
    warnings: list[str]


def guard_status(plan: RolloutPlan) -> GuardStatus:
    """The guard's schedule as configured for this process, in plain words."""
    config = current_app.config
    source = "prometheus" if config["PROMETHEUS_URL"] else "instance"
    if config["PROGRESS_GUARD_INTERVAL_S"] <= 0:
        why = "PROGRESS_GUARD_INTERVAL_S is 0: the guard runs only when called (rollout guard)"
    elif not plan.enabled:
        why = "the plan is disabled: enable it to let the guard judge each stage"
    else:
        why = None
    warnings = [] if source == "prometheus" else _instances_without_prometheus(config)
    return GuardStatus(why is None, source, why, warnings)


def _instances_without_prometheus(config: Any) -> list[str]:
    """More than one instance judging on its own counters lately: each sees only its own
    learners, so none of them sees the rollout whole."""
    recent = timedelta(seconds=5 * (config["PROGRESS_GUARD_INTERVAL_S"] or 60))
    seen = {
        e.instance
        for e in recent_evaluations(50)
        if e.instance.endswith(SOURCE_MARK) and utcnow() - e.at <= recent
    }
    if len(seen) <= 1:
        return []
    return [
        f"{len(seen)} instances are judging the rollout on their own counters: each sees only "
        "its own learners. Set PROMETHEUS_URL so the guard sees every instance."
    ]


@dataclass(frozen=True)
class WatchView:
    """The watch at the last stage as the page and `rollout status` show it."""

    state: WatchState
    length_seconds: int
    started_at: datetime | None
    ends_at: datetime | None
    seconds_left: int | None
    completed_at: datetime | None
    baseline: dict[str, Any] | None  # the legacy path's figures before the move
    current: dict[str, Any] | None  # the verified path's since the watch began
    text: str


def watch_view(plan: RolloutPlan, latest: Any | None) -> WatchView:
    """Where the watch stands: its countdown, the baseline's figures and the latest
    evaluation's at this stage."""
    length = int(watch_length_s(plan))
    if not plan.on_last_stage or plan.stage_started_at is None or plan.updated_at is None:
        last = plan.stages[-1]
        text = f"the watch of {duration_text(length)} starts when the rollout reaches {last}%"
        return WatchView("not_started", length, None, None, None, None, None, None, text)
    started = plan.stage_started_at
    ends = started + timedelta(seconds=length)
    left = max(int((ends - utcnow()).total_seconds()), 0)
    baseline = _baseline_figures(plan)
    current = _current_figures(latest, plan) if latest is not None else None
    if plan.completed_at is not None:
        state: WatchState = "complete"
        text = "the rollout is complete: the watch ended clean; the legacy path may be retired"
    elif plan.paused:
        state, text = "paused", "the watch is paused: a check failed against the baseline"
    elif left == 0:
        state, text = (
            "over",
            ("the watch is over; it completes once every check passes, or when a person ends it"),
        )
    else:
        state, text = "watching", f"watching: {duration_text(left)} of {duration_text(length)} left"
    return WatchView(state, length, started, ends, left, plan.completed_at, baseline, current, text)


def _baseline_figures(plan: RolloutPlan) -> dict[str, Any] | None:
    if not plan.baseline:
        return None
    kept = Baseline.from_json(plan.baseline)
    updates = kept.buckets.get(float("inf"), 0.0)
    return {
        "start": kept.start,
        "end": kept.end,
        "source": kept.source,
        "span": describe_days(kept),
        "wholeDays": whole_days(plan.baseline_days),
        "completions": kept.completions,
        "errors": kept.errors,
        "successRate": kept.success_rate,
        "updates": updates,
        "overBudgetShare": kept.over_budget_share(plan.p95_budget_seconds),
        "days": kept.days,
    }


def _current_figures(latest: Any, plan: RolloutPlan) -> dict[str, Any] | None:
    """The verified path's figures at the latest evaluation of the last stage."""
    if latest.stage != plan.stage_index or latest.at < plan.stage_started_at:
        return None
    checks = {c["name"]: c.get("figures") or {} for c in latest.checks}
    rate, latency = (
        checks.get("completion_success_rate", {}),
        checks.get("cache_update_latency", {}),
    )
    updates = latency.get("verifiedUpdates")
    over = latency.get("verifiedOverBudget")
    return {
        "at": latest.at,
        "completions": rate.get("verifiedCompletions"),
        "errors": rate.get("verifiedErrors"),
        "successRate": rate.get("verified"),
        "updates": updates,
        "overBudgetShare": over / updates if updates else None,
    }


class PlanView:
    """The plan with its guard status, margin costs and watch, for RolloutPlanOut."""

    def __init__(self, plan: RolloutPlan) -> None:
        self._plan = plan
        self.guard = guard_status(plan)
        latest = next(iter(recent_evaluations(1)), None)
        self.watch = watch_view(plan, latest)
        self.margin_costs: list[MarginCost] = margin_costs(
            latest.checks if latest else None,
            latest.window_seconds if latest else 0,
            current_margin=plan.success_rate_margin,
            false_rollback_rate=plan.false_rollback_rate,
            min_stage_seconds=plan.min_stage_seconds,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plan, name)
