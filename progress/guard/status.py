"""What the plan's page and command line show beside the plan: whether the guard runs by
itself and why not, and what a margin costs at the current traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from ..models import RolloutPlan
from .eta import MarginCost, margin_costs
from .evaluation import recent_evaluations


@dataclass(frozen=True)
class GuardStatus:
    running: bool
    source: str | None  # "prometheus", "instance" or None
    reason: str | None
    warnings: list[str]


def guard_status(plan: RolloutPlan) -> GuardStatus:
    """The guard's schedule as configured for this process, in plain words."""
    config = current_app.config
    source = "prometheus" if config["PROMETHEUS_URL"] else None
    if source is None:
        why = "PROMETHEUS_URL is not set, so the guard has no figures to judge"
    elif config["PROGRESS_GUARD_INTERVAL_S"] <= 0:
        why = "PROGRESS_GUARD_INTERVAL_S is 0: the guard runs only when called (rollout guard)"
    elif not plan.enabled:
        why = "the plan is disabled: enable it to let the guard judge each stage"
    else:
        why = None
    return GuardStatus(why is None, source, why, [])


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
