"""What the guard keeps besides its evaluations: a count of each decision, which /metrics
exports from the database (so it reaches Prometheus wherever the guard runs: in a worker or
in a `flask rollout guard --loop` sidecar), and the pruning of old evaluations."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import get_args

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .. import store
from ..extensions import db
from ..models import GuardDecisionCount, GuardEvaluation, RolloutPlan, utcnow
from .decision import Decision
from .notes import recent_notes

NOTES_EXPORTED = 20  # the latest notes on /metrics (Grafana's annotations)

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
        self,
        plan: RolloutPlan,
        counts: dict[str, int],
        eta_seconds: int | None = None,
        notes: Sequence[GuardEvaluation] = (),
    ) -> None:
        self._plan, self._counts, self._eta_seconds = plan, counts, eta_seconds
        self._notes = notes

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
        on_last = plan.updated_at is not None and plan.on_last_stage
        watching = on_last and plan.completed_at is None
        yield GaugeMetricFamily(
            "progress_rollout_watch_active",
            "1 while the watch at the plan's last stage runs (until it ends clean)",
            value=int(watching),
        )
        left = math.nan
        if watching:
            ends = plan.stage_started_at + timedelta(hours=plan.watch_hours)
            left = max((ends - utcnow()).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "progress_rollout_watch_remaining_seconds",
            "Seconds left in the watch at the plan's last stage; NaN outside it",
            value=left,
        )
        yield GaugeMetricFamily(
            "progress_rollout_complete",
            "1 once the watch at the last stage ended clean: the legacy path may be retired",
            value=int(on_last and plan.completed_at is not None),
        )
        # People's notes on decisions, for Grafana's annotations: the value is when the
        # decision was made (ms since the epoch), the text a label. Only the latest few,
        # each a person's, so the series stay few.
        notes = GaugeMetricFamily(
            "progress_rollout_guard_note",
            "A person's note on a guard decision; the value is the decision's time in ms",
            labels=["evaluation", "decision", "note", "by"],
        )
        for noted in self._notes:
            notes.add_metric(
                [str(noted.id), noted.decision, (noted.note or "")[:300], noted.noted_by or ""],
                noted.at.timestamp() * 1000,
            )
        yield notes
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
    registry.register(
        RolloutCollector(
            plan,
            counts,
            latest.eta_seconds if latest else None,
            recent_notes(plan.flag, NOTES_EXPORTED),
        )
    )
    return generate_latest(registry)
