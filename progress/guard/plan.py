"""The rollout plan: its stages, the evidence each stage needs, what a failure does, and
where the rollout stands. People change it (the API, the command line) under the guard's
lock, so a change never lands in the middle of an evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import fields
from datetime import timedelta
from typing import Any

from .. import rollout
from ..exceptions import ProgressError
from ..extensions import db
from ..flags import flag_gate
from ..models import PlanSettings, RolloutPlan, utcnow
from .lock import GuardBusy, guarded_transaction
from .notes import note_latest

# What a person may change: the plan's settings, and pausing or resuming it.
PLAN_FIELDS = frozenset({*(f.name for f in fields(PlanSettings)), "paused"})
# Seconds the API and CLI wait for an evaluation in progress before answering "busy".
PLAN_LOCK_WAIT_S = 10.0


class StageNotReady(ProgressError):
    """Advancing is refused: the stage is not ready, the plan is paused, or it is the last."""

    status = 409
    code = "stage_not_ready"


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
    """The stored plan, locked for this transaction; the defaults, stored, if none is."""
    plan = db.session.get(RolloutPlan, flag, with_for_update=True)
    if plan is None:
        plan = default_plan(flag)
        now = utcnow()
        plan.stage_started_at = plan.stage_started_at or now
        plan.updated_at, plan.updated_by = now, "default"
        db.session.add(plan)
    return plan


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
    for name in ("watch_hours", "baseline_days"):
        if name in changes and not 0 < changes[name] <= 90 * 24:
            raise ValueError(f"{name} is above 0 and at most {90 * 24}")
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        resumed = changes.get("paused") is False and plan.paused
        if resumed and plan.on_last_stage and plan.completed_at is None:
            # The watch starts again from the resume (the baseline is kept): what failed
            # before it was seen and answered by a person.
            plan.stage_started_at = utcnow()
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


def advance_stage(actor: str, reason: str, note: str | None = None) -> RolloutPlan:
    """Product's click: move to the next stage when the guard marked this one ready (or
    from 0%, where there is nothing to judge). StageNotReady says why not. A `note` is
    kept with the guard's latest evaluation (the one that marked the stage ready)."""
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        if not plan.follow_percentage(percentage, utcnow()):
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
        plan.start_stage(plan.stage_index + 1, now)
        plan.updated_at, plan.updated_by = now, actor
        if note:
            note_latest(plan.flag, note, actor)
        why = f"advance: stage {percentage}% → {target}%: {reason}"
        rollout.set_rollout(target, why[:500], actor)
    return plan


def back_stage(actor: str, reason: str, note: str | None = None) -> RolloutPlan:
    """A person's click after a pause (the watch's, say): back to the previous stage of
    the plan, whose clock starts again. The plan stays paused as it was, so the guard
    does not advance again before a person resumes it."""
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        if not plan.follow_percentage(percentage, utcnow()):
            raise StageNotReady(f"the rollout is at {percentage}%, not a stage of the plan")
        if plan.stage_index == 0:
            raise StageNotReady(f"{percentage}% is the plan's first stage")
        target = plan.stages[plan.stage_index - 1]
        if note:
            note_latest(plan.flag, note, actor)
        plan.updated_at, plan.updated_by = utcnow(), actor
        why = f"back: stage {percentage}% → {target}%: {reason}"
        rollout.set_rollout(target, why[:500], actor)  # the plan follows (rollout._change)
    return plan


def complete_watch(actor: str, note: str) -> RolloutPlan:
    """A person ends the watch at the last stage once its hours are over and nothing
    failed, when the guard cannot (a test still inconclusive on little traffic, or no
    baseline to compare with): the rollout is complete. The note says why, kept with the
    guard's latest evaluation. StageNotReady while the watch runs, is paused, or the
    rollout is not at the last stage."""
    with _plan_locked() as plan:
        percentage = rollout.rollout_state().percentage
        now = utcnow()
        if not plan.follow_percentage(percentage, now) or not plan.on_last_stage:
            raise StageNotReady(f"the rollout is at {percentage}%, not at the plan's last stage")
        if plan.completed_at is not None:
            raise StageNotReady("the rollout is already complete")
        if plan.paused:
            raise StageNotReady("the watch is paused: a check failed; resume it or go back")
        ends = plan.stage_started_at + timedelta(hours=plan.watch_hours)
        if now < ends:
            raise StageNotReady(f"the watch runs until {ends.isoformat(timespec='seconds')}")
        note_latest(plan.flag, f"the end of the watch, by hand: {note}", actor)
        plan.completed_at = now
        plan.updated_at, plan.updated_by = now, actor
    return plan
