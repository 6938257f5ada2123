"""Admin routes: rollout control for product, the rollout guard's plan and evaluations, and
the two paths' key figures."""

from __future__ import annotations

from flask import Blueprint, g, request

from .. import guard, metrics, rollout, rollout_charts
from ..auth import authenticate
from ..models import RolloutPlan
from .schemas import (
    AdvanceIn,
    BackIn,
    ErrorOut,
    GuardEvaluationOut,
    GuardEvaluationsOut,
    GuardEvaluationsQuery,
    NoteIn,
    PathFiguresOut,
    RolloutChangeOut,
    RolloutChartsOut,
    RolloutChartsQuery,
    RolloutHistoryOut,
    RolloutImpactOut,
    RolloutImpactQuery,
    RolloutIn,
    RolloutOut,
    RolloutPlanIn,
    RolloutPlanOut,
    TimeoutsOut,
    TimeoutsQuery,
)
from .spec import operation

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ERRORS = dict.fromkeys((401, 403, 502, 503), ErrorOut)
WRITE_ERRORS = {**ERRORS, 429: ErrorOut}  # every admin write is rate limited (rate_limits.py)


@bp.before_request
def require_admin() -> None:
    """Every admin route: a valid token with the admin role, before anything else; a change
    needs a verified email too, as a learner's writes do. A CORS preflight carries no token
    by design: it is answered without one."""
    if request.method == "OPTIONS":
        return
    g.identity = authenticate(admin=True, write=request.method not in SAFE_METHODS)


@bp.get("/rollout")
@operation("getRollout", "admin", {200: RolloutOut, **ERRORS})
def get_rollout() -> RolloutOut:
    """The flag's current percentage and its last change."""
    return RolloutOut.model_validate(rollout.rollout_state(), from_attributes=True)


@bp.put("/rollout")
@operation("setRollout", "admin", {200: RolloutOut, 409: ErrorOut, **WRITE_ERRORS}, json=RolloutIn)
def put_rollout(json: RolloutIn) -> RolloutOut:
    """Move the rollout (0, 10, 100 or any value) in one step; the change is kept with its
    reason. Rolling back is `{"percentage": 0}` from any stage: the plan follows to its
    first stage."""
    if json.note:  # with the decision this move answers, committed with the move
        guard.note_latest(rollout.rollout_state().flag, json.note, g.identity.email)
    state = rollout.set_rollout(json.percentage, json.reason, g.identity.email)
    return RolloutOut.model_validate(state, from_attributes=True)


@bp.get("/rollout/history")
@operation("getRolloutHistory", "admin", {200: RolloutHistoryOut, **ERRORS})
def get_rollout_history() -> RolloutHistoryOut:
    """Every change, newest first."""
    return RolloutHistoryOut(
        changes=[
            RolloutChangeOut.model_validate(change, from_attributes=True)
            for change in rollout.rollout_history()
        ]
    )


@bp.get("/paths")
@operation("getPathFigures", "admin", {200: PathFiguresOut, **ERRORS})
def get_path_figures() -> PathFiguresOut:
    """The two paths' key figures side by side."""
    return PathFiguresOut.model_validate(metrics.path_figures())


# -- the rollout guard -------------------------------------------------------------------------

GUARD_ERRORS = {**WRITE_ERRORS, 409: ErrorOut}  # a guard rule, or rollout_busy


@bp.get("/rollout/plan")
@operation("getRolloutPlan", "admin", {200: RolloutPlanOut, **ERRORS})
def get_rollout_plan() -> RolloutPlanOut:
    """The rollout guard's plan: stages, evidence needed, what a failure does, where it is."""
    return _plan_out(guard.current_plan())


@bp.put("/rollout/plan")
@operation("updateRolloutPlan", "admin", {200: RolloutPlanOut, **GUARD_ERRORS}, json=RolloutPlanIn)
def put_rollout_plan(json: RolloutPlanIn) -> RolloutPlanOut:
    """Change the plan: only the fields sent change; `paused: false` resumes it."""
    changes = json.model_dump(exclude_none=True, by_alias=False)  # the plan's own names
    plan = guard.update_plan(changes, g.identity.email)
    return _plan_out(plan)


def _plan_out(plan: RolloutPlan) -> RolloutPlanOut:
    """The plan with the guard's status and what each margin costs at today's traffic."""
    return RolloutPlanOut.model_validate(guard.PlanView(plan), from_attributes=True)


@bp.get("/rollout/evaluations")
@operation(
    "getRolloutEvaluations",
    "admin",
    {200: GuardEvaluationsOut, **ERRORS},
    query=GuardEvaluationsQuery,
)
def get_rollout_evaluations(query: GuardEvaluationsQuery) -> GuardEvaluationsOut:
    """The guard's evaluations, newest first: each check's figures, thresholds, decision."""
    return GuardEvaluationsOut(
        evaluations=[
            GuardEvaluationOut.model_validate(row, from_attributes=True)
            for row in guard.recent_evaluations(query.limit)
        ]
    )


@bp.post("/rollout/advance")
@operation("advanceRollout", "admin", {200: RolloutPlanOut, **GUARD_ERRORS}, json=AdvanceIn)
def post_rollout_advance(json: AdvanceIn) -> RolloutPlanOut:
    """Product's click: move to the next stage once the guard marked this one ready; the
    reason is kept in the history with the change."""
    plan = guard.advance_stage(g.identity.email, json.reason, json.note)
    return _plan_out(plan)


@bp.post("/rollout/back")
@operation("backRollout", "admin", {200: RolloutPlanOut, **GUARD_ERRORS}, json=BackIn)
def post_rollout_back(json: BackIn) -> RolloutPlanOut:
    """A person's decision after a pause (the watch at 100%, say): back to the plan's
    previous stage in one step; the reason is kept in the history, the note with the
    guard's latest evaluation. The plan stays paused until a person resumes it."""
    plan = guard.back_stage(g.identity.email, json.reason, json.note)
    return _plan_out(plan)


@bp.post("/rollout/complete")
@operation("completeRollout", "admin", {200: RolloutPlanOut, **GUARD_ERRORS}, json=NoteIn)
def post_rollout_complete(json: NoteIn) -> RolloutPlanOut:
    """The end of the watch by a person: once the watch's hours are over and nothing
    failed, mark the rollout complete when the guard cannot (a test still inconclusive,
    no baseline); the note says why and is kept with the guard's latest evaluation."""
    plan = guard.complete_watch(g.identity.email, json.note)
    return _plan_out(plan)


@bp.put("/rollout/evaluations/<int:evaluation_id>/note")
@operation(
    "noteRolloutEvaluation",
    "admin",
    {200: GuardEvaluationOut, 404: ErrorOut, **WRITE_ERRORS},
    json=NoteIn,
)
def put_evaluation_note(evaluation_id: int, json: NoteIn) -> GuardEvaluationOut:
    """Keep a person's note with one guard decision (the end of the watch, a pause):
    what happened and what was done; it replaces an earlier note."""
    flag = guard.current_plan().flag
    evaluation = guard.note_evaluation(flag, evaluation_id, json.note, g.identity.email)
    return GuardEvaluationOut.model_validate(evaluation, from_attributes=True)


@bp.get("/timeouts")
@operation("getTimeouts", "admin", {200: TimeoutsOut, **ERRORS}, query=TimeoutsQuery)
def get_timeouts(query: TimeoutsQuery) -> TimeoutsOut:
    """The timeout settings against the latency histograms of the last `days` (from
    Prometheus, or this instance's own counters): observed percentiles, the recommended
    value by the stated rule, the share of requests each candidate would have cut, and the
    line to deploy. Changes nothing: timeouts are deploy-time settings."""
    return TimeoutsOut.model_validate(guard.tune_timeouts(query.days), from_attributes=True)


# -- the page's pictures ------------------------------------------------------------------------


@bp.get("/rollout/charts")
@operation("getRolloutCharts", "admin", {200: RolloutChartsOut, **ERRORS}, query=RolloutChartsQuery)
def get_rollout_charts(query: RolloutChartsQuery) -> RolloutChartsOut:
    """The two paths over the current stage or the last day (from Prometheus when
    PROMETHEUS_URL is set, else from the guard's evaluations), with every rollout change and
    guard decision as a marker, and the stage timeline."""
    plan = guard.current_plan()
    return RolloutChartsOut.model_validate(
        rollout_charts.charts(query.range, plan.stage_started_at)
    )


@bp.get("/rollout/impact")
@operation("getRolloutImpact", "admin", {200: RolloutImpactOut, **ERRORS}, query=RolloutImpactQuery)
def get_rollout_impact(query: RolloutImpactQuery) -> RolloutImpactOut:
    """How many known learners would change path if the rollout moved to `percentage`."""
    current = rollout.rollout_state().percentage
    return RolloutImpactOut.model_validate(
        rollout_charts.learners_moving(current, query.percentage)
    )
