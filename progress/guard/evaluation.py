"""One evaluation of the plan, under the guard's lock: the figures from Prometheus, the
checks, the decision, the action, and the evaluation kept with them in one commit."""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from flask import current_app

from .. import rollout
from ..extensions import db
from ..flags import flag_gate
from ..models import GuardEvaluation, RolloutPlan, utcnow
from ..per_process import PerProcess
from . import keeping, own_counters, watch
from .checks import Thresholds, judge, unmeasured
from .decision import Decision, Situation, Verdict, WatchClock, decide
from .eta import estimate, unknown
from .figures import Prometheus, PrometheusUnavailable, read_figures
from .lock import guarded_transaction

log = logging.getLogger(__name__)
# Without PROMETHEUS_URL: the totals at the first look at a stage, kept between looks.
_own_counters = PerProcess(own_counters.OwnCounters)


@dataclass(frozen=True)
class GuardRun:
    """What one call to `evaluate` did."""

    outcome: Literal["evaluated", "lock_held", "skipped", "disabled", "flag_unavailable"]
    message: str
    # The evaluation kept, detached from the session: it reads the same once that is gone.
    evaluation: GuardEvaluation | None = None


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recent_evaluations(limit: int = 50) -> list[GuardEvaluation]:
    """Newest first."""
    return list(
        db.session.scalars(
            sa.select(GuardEvaluation)
            .where(GuardEvaluation.flag == flag_gate().flag)
            .order_by(GuardEvaluation.id.desc())
            .limit(limit)
        )
    )


def _evaluated_within(flag: str, seconds: float) -> bool:
    last = db.session.scalar(
        sa.select(GuardEvaluation.at)
        .where(GuardEvaluation.flag == flag)
        .order_by(GuardEvaluation.id.desc())
        .limit(1)
    )
    return last is not None and (utcnow() - last).total_seconds() < seconds


def evaluate(*, scheduled: bool = False) -> GuardRun:
    """Evaluate the plan now and act on the decision; one process at a time.

    `scheduled`: a worker's periodic wake-up, skipped when any process evaluated within
    most of an interval (every worker wakes; one evaluation per interval is made).
    """
    config = current_app.config
    flag = flag_gate().flag
    with guarded_transaction(flag) as held:
        if not held:
            return GuardRun("lock_held", "another process holds the guard's lock and is evaluating")
        plan = db.session.get(RolloutPlan, flag, with_for_update=True)
        if plan is None or not plan.enabled:
            return GuardRun("disabled", "the plan is disabled (flask rollout plan --enable)")
        interval = config["PROGRESS_GUARD_INTERVAL_S"]
        if scheduled and _evaluated_within(flag, 0.9 * interval):
            return GuardRun("skipped", "evaluated moments ago by another process")
        try:
            state = rollout.rollout_state()
        except rollout.RolloutError as exc:
            log.warning("rollout guard: the flag is unreadable; holding", extra={"error": str(exc)})
            return GuardRun("flag_unavailable", f"the flag is unreadable: {exc}")
        evaluation, decision = _evaluate_locked(plan, state)
        keeping.count_decision(flag, decision)
        keeping.prune_evaluations(flag, config["PROGRESS_GUARD_RETENTION_DAYS"])
        db.session.flush()
        db.session.refresh(evaluation)  # an action's commit expired it
        db.session.expunge(evaluation)
    return GuardRun("evaluated", evaluation.reason, evaluation)


def _evaluate_locked(
    plan: RolloutPlan, state: rollout.RolloutState
) -> tuple[GuardEvaluation, Decision]:
    config = current_app.config
    now = utcnow()
    on_plan = plan.follow_percentage(state.percentage, now)
    elapsed = (now - plan.stage_started_at).total_seconds()
    window = max(int(elapsed), config["PROGRESS_GUARD_MIN_WINDOW_S"])
    instance = instance_id()
    prometheus = Prometheus(config["PROMETHEUS_URL"], config["PROGRESS_GUARD_QUERY_TIMEOUT_S"])
    try:
        if config["PROMETHEUS_URL"]:
            figures = read_figures(
                prometheus, window, now.timestamp(), config["PROGRESS_GUARD_SELECTOR"]
            )
        else:  # the embedded default: this instance's own counters
            figures = _own_counters.get().read(plan.flag, plan.stage_started_at, now)
            window, instance = figures.window_s, own_counters.source_id()
        watching = on_plan and plan.on_last_stage and plan.completed_at is None
        if watching and plan.baseline is None:  # the first look after the move
            plan.baseline = _baseline(plan, prometheus).as_json()
        clock = _watch_clock(plan, elapsed) if on_plan and plan.on_last_stage else None
        if watching and clock is not None and clock.baseline:
            figures = watch.with_baseline(figures, watch.Baseline.from_json(plan.baseline or {}))
    except PrometheusUnavailable as exc:
        log.warning(
            "rollout guard: Prometheus unavailable; holding, nothing changed",
            extra={"prometheus_url": prometheus.url, "error": str(exc)},
        )
        checks = unmeasured(f"Prometheus {exc}")
        verdict = Verdict("hold", f"Prometheus {exc}: holding, nothing changed")
        eta = unknown(f"no figures: Prometheus {exc}")
    else:
        checks = judge(figures, Thresholds.of(plan), state.percentage)
        has_next = on_plan and plan.stage_index + 1 < len(plan.stages)
        verdict = decide(
            checks,
            Situation(
                percentage=state.percentage,
                next_percentage=plan.stages[plan.stage_index + 1] if has_next else None,
                stage_elapsed_s=elapsed,
                min_stage_seconds=plan.min_stage_seconds,
                auto_advance=plan.auto_advance,
                on_failure=plan.on_failure,  # type: ignore[arg-type]
                paused=plan.paused,
                off_plan=not on_plan,
                watch=clock,
            ),
        )
        eta = estimate(
            [c.as_json() for c in checks],
            decision=verdict.decision,
            window_s=window,
            stage_elapsed_s=elapsed,
            # the watch's hours stand for the last stage's minimum time
            min_stage_seconds=int(clock.length_s) if clock else plan.min_stage_seconds,
            waiting_for_person=_waiting_for_person(plan, state.percentage, on_plan, has_next),
        )
        if window == 0:  # own counters: the first look at the stage counts from now on
            eta = unknown("the guard starts counting this stage at this look")
    evaluation = GuardEvaluation(
        at=now,
        flag=plan.flag,
        stage=plan.stage_index,
        percentage=state.percentage,
        window_seconds=window,
        checks=[c.as_json() for c in checks],
        decision=verdict.decision,
        reason=verdict.reason,
        acted=False,
        instance=instance,
        eta=eta.as_json(),
    )
    db.session.add(evaluation)
    db.session.flush()  # its id goes into the history's reason
    return _act(plan, verdict, state.percentage, evaluation), verdict.decision


def _baseline(plan: RolloutPlan, prometheus: Prometheus) -> watch.Baseline:
    """The legacy path's figures over the baseline's days before the move: from
    Prometheus' range queries, or from the kept evaluations without it."""
    start, end = watch.period(plan)
    config = current_app.config
    if config["PROMETHEUS_URL"]:
        return watch.from_prometheus(prometheus, start, end, config["PROGRESS_GUARD_SELECTOR"])
    return watch.from_evaluations(plan.flag, start, end)


def _watch_clock(plan: RolloutPlan, elapsed_s: float) -> WatchClock:
    """Where the watch at the last stage stands; no baseline when the legacy path had no
    traffic in its days (the comparisons then say so, and only a person ends the watch)."""
    baseline = watch.Baseline.from_json(plan.baseline) if plan.baseline else None
    label = None
    if baseline is not None and (baseline.completions or baseline.buckets.get(math.inf)):
        label = f"legacy's {watch.describe_days(baseline)} before the move"
    return WatchClock(
        elapsed_s=elapsed_s,
        length_s=watch.watch_length_s(plan),
        completed=plan.completed_at is not None,
        baseline=label,
    )


def _waiting_for_person(
    plan: RolloutPlan, percentage: int, on_plan: bool, has_next: bool
) -> str | None:
    """Why only a person moves this stage on, if only a person does."""
    if percentage == 0:
        return "at 0% the guard judges nothing; a person starts the first stage"
    if plan.paused:
        return "the plan is paused; nothing advances until a person resumes it"
    if not on_plan:
        return f"{percentage}% is not a stage of the plan"
    if not has_next and plan.completed_at is not None:
        return "the rollout is complete: nothing to advance to"
    return None


def _act(
    plan: RolloutPlan, verdict: Verdict, percentage: int, evaluation: GuardEvaluation
) -> GuardEvaluation:
    """Carry out the decision; the plan, the evaluation and the rollout change are committed
    together by set_rollout (embedded flags) or right after Unleash accepted the change.
    Returns the evaluation as kept."""
    decision = verdict.decision
    now = utcnow()
    if decision == "hold" or (decision == "ready" and plan.ready):
        return evaluation
    evaluation.acted = True
    plan.updated_at, plan.updated_by = now, "guard"
    if decision == "ready":
        plan.ready = True
        log.info("rollout guard: stage ready", extra={"percentage": percentage})
        return evaluation
    if decision == "complete":  # nothing moves: the watch ended clean
        plan.completed_at = now
        log.warning("rollout guard: the watch ended clean", extra={"percentage": percentage})
        return evaluation
    if decision == "advance":
        target = plan.stages[plan.stage_index + 1]
        plan.start_stage(plan.stage_index + 1, now)
    elif decision == "rollback":
        target = plan.stages[0]
        plan.start_stage(0, now)
        plan.paused = True
    else:  # pause: the same percentage, kept in the history with the reason
        target = percentage
        plan.ready, plan.paused = False, True
    reason = f"guard {decision} (evaluation #{evaluation.id}): {verdict.reason}"
    log.warning(
        "rollout guard acts",
        extra={"decision": decision, "from_percentage": percentage, "to_percentage": target},
    )
    # What to keep if the change fails: the rollback below discards the pending row.
    kept = {
        name: getattr(evaluation, name)
        for name in (
            "at",
            "flag",
            "stage",
            "percentage",
            "window_seconds",
            "checks",
            "instance",
            "eta",
        )
    }
    try:
        rollout.set_rollout(target, reason[:500], "guard")
    except Exception as exc:  # Unleash refused, say: record that nothing changed
        db.session.rollback()
        log.error("rollout guard could not act", extra={"decision": decision, "error": str(exc)})
        failed = GuardEvaluation(
            **kept,
            decision=decision,
            reason=f"{verdict.reason}; could not act: {exc}",
            acted=False,
        )
        db.session.add(failed)
        db.session.flush()
        return failed
    return evaluation
