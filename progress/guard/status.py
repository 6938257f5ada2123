"""What the plan's page and command line show beside the plan: whether the guard runs by
itself and why not, and what a margin costs at the current traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app

from ..models import RolloutPlan, utcnow
from .eta import MarginCost, margin_costs
from .evaluation import recent_evaluations
from .own_counters import SOURCE_MARK


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


class PlanView:
    """The plan with its guard status and margin costs, for RolloutPlanOut."""

    def __init__(self, plan: RolloutPlan) -> None:
        self._plan = plan
        self.guard = guard_status(plan)
        latest = next(iter(recent_evaluations(1)), None)
        self.margin_costs: list[MarginCost] = margin_costs(
            latest.checks if latest else None,
            latest.window_seconds if latest else 0,
            current_margin=plan.success_rate_margin,
            false_rollback_rate=plan.false_rollback_rate,
            min_stage_seconds=plan.min_stage_seconds,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plan, name)
