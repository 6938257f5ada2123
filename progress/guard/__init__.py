"""The rollout guard: judges the verified path against the legacy path on Prometheus'
figures, and advances, holds, pauses or rolls back the rollout by itself (design.md, "The
rollout guard").

One evaluation, read top to bottom:
1. take the guard's lock (PostgreSQL: an advisory lock held by this transaction; SQLite,
   the embedded single process: a lock in this process), so one process judges at a time;
2. read the plan (`rollout_plans`) and the flag's percentage; if a person moved the rollout
   to another stage of the plan, the plan follows and that stage's clock starts;
3. query Prometheus over the stage's window (time since the stage began, at least
   PROGRESS_GUARD_MIN_WINDOW_S): `read_figures`;
4. judge each check pass / fail / inconclusive / no_data (`judge`) and decide (`decide`),
   both pure (`analysis`);
5. act through `rollout.set_rollout(..., actor="guard")`, so the history shows the move
   with its reason and figures, and keep the evaluation (`guard_evaluations`) in the same
   commit.

What a failure does:
- false lock screens shown on the verified path: any at all is evidence by itself, whatever
  the sample size, so it acts as the plan says (`on_failure`: roll back to 0%, or pause);
- a worse completion success rate: learners' completions fail on the verified path, which
  is as bad for them as a false lock, so it also acts as the plan says, once a sequential
  test (`sequential`: an mSPRT confidence sequence, right however often it is looked at)
  is confident, at 1 - the plan's false_rollback_rate, that verified is worse by more than
  the margin;
- slower verified cache updates (the same test on the share of updates over the latency
  budget) or a circuit breaker that stayed open: the verified path stays right while slow
  (its update is bounded and the breaker sends reads to the DB), so rolling back would only
  move learners back to the path that shows false lock screens. These pause (no further
  stage) for a person to look.
A test not yet confident either way holds ("inconclusive, holding"); too little data or
none holds; only a stage whose tests show the verified path within the margins, on the
minimum sample, after the stage's time, advances. Prometheus unreachable holds, logs a
warning, and changes nothing. How often this is wrong is measured by `simulation`
(`make guard-sim`, docs/guard.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from flask import Flask, current_app, request

from .. import rollout
from ..exceptions import ProgressError
from ..extensions import db
from ..flags import flag_gate
from ..models import PLAN_DEFAULTS, PLAN_STAGES, GuardEvaluation, RolloutPlan, utcnow
from . import keeping
from .analysis import (  # noqa: F401 - the guard's public names, in one place
    PATHS,
    Check,
    CheckStatus,
    Decision,
    Figures,
    OnFailure,
    Prometheus,
    PrometheusUnavailable,
    Situation,
    Thresholds,
    Verdict,
    decide,
    judge,
    read_figures,
    unmeasured,
)
from .keeping import exposition  # noqa: F401 - /metrics reads it from here

log = logging.getLogger(__name__)


class GuardBusy(ProgressError):
    """Another process holds the guard's lock (an evaluation is under way)."""

    status, code = 409, "guard_busy"


class StageNotReady(ProgressError):
    """Advancing is refused: the stage is not ready, the plan is paused, or it is the last."""

    status, code = 409, "stage_not_ready"


SCHEDULE_KEY = "progress.guard"
# Seconds the API and CLI wait for an evaluation in progress before answering "busy".
PLAN_LOCK_WAIT_S = 10.0


# -- the lock ---------------------------------------------------------------------------------


_local_locks: dict[str, threading.Lock] = {}
_local_locks_lock = threading.Lock()


def _lock_key(flag: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock, one per flag."""
    digest = hashlib.blake2b(f"progress.rollout-guard:{flag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _local_lock(flag: str) -> threading.Lock:
    key = f"{db.engine.url.render_as_string(hide_password=True)}#{flag}"
    with _local_locks_lock:
        return _local_locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def guarded_transaction(flag: str, wait_s: float = 0.0) -> Iterator[bool]:
    """A transaction that holds the guard's lock for `flag`: yields whether it was taken.
    Committed on the way out (which, on PostgreSQL, releases the lock), rolled back on an
    error or when the lock was not taken.

    PostgreSQL: `pg_try_advisory_xact_lock`, so every instance and worker shares it and a
    crashed holder releases it with its connection. SQLite (the embedded default, one
    process): a lock in this process.
    """
    local = None
    deadline = time.monotonic() + wait_s
    if db.engine.dialect.name == "postgresql":
        key = _lock_key(flag)
        while True:
            held = bool(db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))))
            if held or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    else:
        local = _local_lock(flag)
        held = local.acquire(timeout=wait_s) if wait_s else local.acquire(blocking=False)
    try:
        if not held:
            db.session.rollback()
            yield False
            return
        try:
            yield True
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    finally:
        if local is not None and held:
            local.release()


# -- the plan ----------------------------------------------------------------------------------


def validate_stages(stages: Sequence[int]) -> list[int]:
    """Stages are distinct whole percentages, kept in rising order, and 0 is always the
    first (where a rollback goes): [10, 100] is [0, 10, 100]."""
    values = list(stages)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError("stages are whole percentages")
    if any(not 0 <= v <= 100 for v in values):
        raise ValueError("stages are within 0..100")
    if len(set(values)) != len(values):
        raise ValueError("a stage appears twice")
    values = sorted({0, *values})
    if len(values) < 2:
        raise ValueError("a plan needs a stage above 0")
    if len(values) > 21:
        raise ValueError("a plan has at most 20 stages above 0")
    return values


def default_plan(flag: str) -> RolloutPlan:
    """The defaults, as the page and the API show them before anybody stored a plan: no
    times (nothing has started), and the stage the rollout is really at."""
    plan = RolloutPlan(
        flag=flag,
        stages=list(PLAN_STAGES),
        **PLAN_DEFAULTS,
        stage_index=0,
        stage_started_at=None,
        paused=False,
        ready=False,
        updated_at=None,
        updated_by=None,
    )
    try:
        state = rollout.rollout_state()
    except rollout.RolloutError:  # the flag is unreadable: show the plan from its start
        return plan
    if state.percentage in plan.stages:
        plan.stage_index = plan.stages.index(state.percentage)
        # The stage began with the change that moved the rollout there (never, at 0%).
        plan.stage_started_at = state.updated_at
    return plan


def current_plan() -> RolloutPlan:
    """The flag's plan; the defaults (not stored) when nobody has made one."""
    flag = flag_gate().flag
    return db.session.get(RolloutPlan, flag) or default_plan(flag)


def _plan_for_update(flag: str) -> RolloutPlan:
    plan = db.session.get(RolloutPlan, flag, with_for_update=True)
    if plan is None:
        plan = default_plan(flag)
        now = utcnow()
        plan.stage_started_at = plan.stage_started_at or now
        plan.updated_at, plan.updated_by = now, "default"
        db.session.add(plan)
    return plan


def _sync_stage(plan: RolloutPlan, percentage: int) -> bool:
    """Follow a person's move to another stage of the plan (its clock starts now); False
    when the percentage is not a stage of the plan at all."""
    return plan.follow_percentage(percentage, utcnow())


PLAN_FIELDS = {
    "stages",
    "min_stage_seconds",
    "min_completions",
    "min_access_checks",
    "auto_advance",
    "on_failure",
    "success_rate_margin",
    "p95_budget_seconds",
    "latency_margin",
    "false_rollback_rate",
    "enabled",
    "paused",
}


@contextlib.contextmanager
def _plan_locked() -> Iterator[RolloutPlan]:
    """The plan, changed under the guard's lock; GuardBusy while an evaluation holds it."""
    flag = flag_gate().flag
    with guarded_transaction(flag, PLAN_LOCK_WAIT_S) as held:
        if not held:
            raise GuardBusy("the guard is evaluating; try again in a moment")
        yield _plan_for_update(flag)


def update_plan(changes: dict[str, Any], actor: str) -> RolloutPlan:
    """Change the plan (any of PLAN_FIELDS); GuardBusy if an evaluation holds the lock."""
    unknown = set(changes) - PLAN_FIELDS
    if unknown:
        raise ValueError(f"unknown plan fields: {', '.join(sorted(unknown))}")
    if "stages" in changes:
        changes["stages"] = validate_stages(changes["stages"])
    if changes.get("on_failure", "rollback") not in ("rollback", "pause"):
        raise ValueError("on_failure is rollback or pause")
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        for name, value in changes.items():
            setattr(plan, name, value)
        if "stages" in changes:  # the same percentage at its new index; the clock runs on
            if percentage in plan.stages:
                plan.stage_index = plan.stages.index(percentage)
            else:
                plan.stage_index = min(plan.stage_index, len(plan.stages) - 1)
                plan.ready = False
        if changes.get("paused") is True:
            plan.ready = False
        plan.updated_at, plan.updated_by = utcnow(), actor
    return plan


def advance_stage(actor: str) -> RolloutPlan:
    """Product's click: move to the next stage when the guard marked this one ready (or
    from 0%, where there is nothing to judge). StageNotReady says why not."""
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        if not _sync_stage(plan, percentage):
            raise StageNotReady(f"the rollout is at {percentage}%, not a stage of the plan")
        if plan.paused:
            raise StageNotReady("the plan is paused: resume it (paused: false) first")
        if plan.stage_index + 1 >= len(plan.stages):
            raise StageNotReady(f"{percentage}% is the plan's last stage")
        if not plan.ready and percentage != 0:
            raise StageNotReady(
                f"the stage at {percentage}% is not ready: the guard has not yet seen "
                "every check pass for the stage's time"
            )
        target = plan.stages[plan.stage_index + 1]
        now = utcnow()
        plan.stage_index += 1
        plan.stage_started_at, plan.ready = now, False
        plan.updated_at, plan.updated_by = now, actor
        rollout.set_rollout(target, f"advance: stage {percentage}% → {target}%", actor)
    return plan


def plan_json(plan: RolloutPlan) -> dict[str, Any]:
    stages = list(plan.stages)
    return {
        "flag": plan.flag,
        "stages": stages,
        "stage": plan.stage_index,
        "stagePercentage": stages[plan.stage_index] if plan.stage_index < len(stages) else None,
        "stageStartedAt": plan.stage_started_at,
        "minStageSeconds": plan.min_stage_seconds,
        "minCompletions": plan.min_completions,
        "minAccessChecks": plan.min_access_checks,
        "autoAdvance": plan.auto_advance,
        "onFailure": plan.on_failure,
        "successRateMargin": plan.success_rate_margin,
        "p95BudgetSeconds": plan.p95_budget_seconds,
        "latencyMargin": plan.latency_margin,
        "falseRollbackRate": plan.false_rollback_rate,
        "enabled": plan.enabled,
        "paused": plan.paused,
        "ready": plan.ready,
        "updatedAt": plan.updated_at,
        "updatedBy": plan.updated_by,
    }


# -- evaluations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardRun:
    """What one call to `evaluate` did."""

    outcome: Literal["evaluated", "lock_held", "skipped", "disabled", "flag_unavailable"]
    message: str
    evaluation: dict[str, Any] | None = None


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def evaluation_json(row: GuardEvaluation) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "flag": row.flag,
        "stage": row.stage,
        "percentage": row.percentage,
        "windowSeconds": row.window_seconds,
        "checks": row.checks,
        "decision": row.decision,
        "reason": row.reason,
        "acted": row.acted,
        "instance": row.instance,
    }


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
    if not config["PROMETHEUS_URL"]:
        return GuardRun("disabled", "PROMETHEUS_URL is not set: the guard has no figures")
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
        result = evaluation_json(evaluation)
    return GuardRun("evaluated", result["reason"], result)


def _evaluate_locked(
    plan: RolloutPlan, state: rollout.RolloutState
) -> tuple[GuardEvaluation, Decision]:
    config = current_app.config
    now = utcnow()
    on_plan = plan.follow_percentage(state.percentage, now)
    elapsed = (now - plan.stage_started_at).total_seconds()
    window = max(int(elapsed), config["PROGRESS_GUARD_MIN_WINDOW_S"])
    prometheus = Prometheus(config["PROMETHEUS_URL"], config["PROGRESS_GUARD_QUERY_TIMEOUT_S"])
    try:
        figures = read_figures(
            prometheus, window, now.timestamp(), config["PROGRESS_GUARD_SELECTOR"]
        )
    except PrometheusUnavailable as exc:
        log.warning(
            "rollout guard: Prometheus unavailable; holding, nothing changed",
            extra={"prometheus_url": prometheus.url, "error": str(exc)},
        )
        checks = unmeasured(f"Prometheus {exc}")
        verdict = Verdict("hold", f"Prometheus {exc}: holding, nothing changed")
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
            ),
        )
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
        instance=instance_id(),
    )
    db.session.add(evaluation)
    db.session.flush()  # its id goes into the history's reason
    return _act(plan, verdict, state.percentage, evaluation), verdict.decision


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
    if decision == "advance":
        target = plan.stages[plan.stage_index + 1]
        plan.stage_index += 1
        plan.stage_started_at, plan.ready = now, False
    elif decision == "rollback":
        target = plan.stages[0]
        plan.stage_index = 0
        plan.stage_started_at, plan.ready, plan.paused = now, False, True
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
        for name in ("at", "flag", "stage", "percentage", "window_seconds", "checks", "instance")
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


# -- the schedule ---------------------------------------------------------------------------------


class GuardWorker:
    """What the guard does in each worker process, from its first request (threads do not
    survive gunicorn's fork): with PROMETHEUS_URL and an interval, a daemon thread that
    evaluates every PROGRESS_GUARD_INTERVAL_S. Every worker of every instance runs one; the
    lock and the "evaluated moments ago" rule make it one evaluation per interval."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self.interval_s: float = app.config["PROGRESS_GUARD_INTERVAL_S"]
        self.scheduled = bool(app.config["PROMETHEUS_URL"]) and self.interval_s > 0
        self._pid = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self.scheduled:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, name="rollout-guard", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout)

    def _run(self) -> None:
        # Workers start together; a random first wait spreads their wake-ups.
        wait = self.interval_s * random.uniform(0.2, 1.0)  # noqa: S311 - jitter, not secrets
        while not self._stop.wait(wait):
            wait = self.interval_s
            try:
                with self._app.app_context():
                    run = evaluate(scheduled=True)
                if run.outcome == "evaluated":
                    log.info("rollout guard evaluated", extra={"guard_reason": run.message})
            except Exception:
                log.exception("rollout guard evaluation failed")


def init_app(app: Flask) -> None:
    worker = GuardWorker(app)
    app.extensions[SCHEDULE_KEY] = worker

    @app.before_request
    def start_guard() -> None:
        if request.endpoint != "health.healthz":  # liveness never waits on the database
            worker.ensure_started()  # a pid check once started
