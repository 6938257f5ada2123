"""What the guard keeps besides its evaluations: a count of each decision, which /metrics
exports from the database (so it reaches Prometheus wherever the guard runs: in a worker or
in a `flask rollout guard --loop` sidecar), and the pruning of old evaluations."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import get_args

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import store
from ..extensions import db
from ..models import GuardDecisionCount, GuardEvaluation, RolloutPlan
from .decision import Decision

DECISIONS = get_args(Decision)


def count_decision(flag: str, decision: str) -> None:
    """One more `decision`, in the evaluation's transaction (under the guard's lock)."""
    row = db.session.get(GuardDecisionCount, (flag, decision), with_for_update=True)
    if row is None:
        db.session.add(GuardDecisionCount(flag=flag, decision=decision, count=1))
    else:
        row.count += 1


def prune_evaluations(flag: str, retention_days: int) -> int:
    """Delete the evaluations older than the retention; how many went."""
    return store.prune_older_than(GuardEvaluation.at, retention_days, GuardEvaluation.flag == flag)


class RolloutCollector(Collector):
    """The guard's figures as the database holds them at scrape time: the stage of the plan
    and how many times each decision was made. Every instance exports the same values, so
    dashboards and alerts take max() across instances, never sum()."""

    def __init__(
        self, plan: RolloutPlan, counts: dict[str, int], eta_seconds: int | None = None
    ) -> None:
        self._plan, self._counts, self._eta_seconds = plan, counts, eta_seconds

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        plan = self._plan
        yield GaugeMetricFamily(
            "progress_rollout_stage",
            "The rollout plan's current stage index (0 is the first stage)",
            value=plan.stage_index,
        )
        yield GaugeMetricFamily(
            "progress_rollout_stage_percentage",
            "The percentage of the rollout plan's current stage",
            value=plan.stage_percentage or 0,
        )
        yield GaugeMetricFamily(
            "progress_rollout_plan_stages",
            "How many stages the rollout plan has",
            value=len(plan.stages),
        )
        yield GaugeMetricFamily(
            "progress_rollout_guard_paused",
            "1 while the rollout guard's plan is paused (after a pause or a rollback)",
            value=int(bool(plan.paused)),
        )
        eta = self._eta_seconds
        yield GaugeMetricFamily(
            "progress_guard_eta_seconds",
            "The rollout guard's estimate, at its latest evaluation, of the seconds until "
            "it can advance or act at the current traffic; NaN while it cannot tell",
            value=math.nan if eta is None else eta,
        )
        decisions = CounterMetricFamily(
            "progress_rollout_guard_decisions",
            "Rollout guard decisions, wherever the guard ran",
            labels=["decision"],
        )
        for decision in DECISIONS:
            decisions.add_metric([decision], self._counts.get(decision, 0))
        yield decisions


def exposition(plan: RolloutPlan) -> bytes:
    """The guard's metrics in Prometheus' text format, read from the database now."""
    counts = dict(
        db.session.execute(
            sa.select(GuardDecisionCount.decision, GuardDecisionCount.count).where(
                GuardDecisionCount.flag == plan.flag
            )
        ).all()
    )
    latest = db.session.scalar(
        sa.select(GuardEvaluation)
        .where(GuardEvaluation.flag == plan.flag)
        .order_by(GuardEvaluation.id.desc())
        .limit(1)
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RolloutCollector(plan, counts, latest.eta_seconds if latest else None))
    return generate_latest(registry)
