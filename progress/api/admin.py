"""Admin routes: rollout control for product, the rollout guard's plan and evaluations, and
the two paths' key figures."""

from __future__ import annotations

from flask import Blueprint, g, request
from spectree import Response as Resp

from .. import guard, metrics, rollout, rollout_charts
from ..auth import authenticate
from .schemas import (
    ErrorOut,
    GuardEvaluationsOut,
    GuardEvaluationsQuery,
    PathFiguresOut,
    RolloutChartsOut,
    RolloutChartsQuery,
    RolloutHistoryOut,
    RolloutImpactOut,
    RolloutImpactQuery,
    RolloutIn,
    RolloutOut,
    RolloutPlanIn,
    RolloutPlanOut,
)
from .spec import api_spec

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")


AUTH = {"bearer": []}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ERRORS = {f"HTTP_{code}": ErrorOut for code in (401, 403, 502, 503)}


@bp.before_request
def require_admin() -> None:
    """Every admin route: a valid token with the admin role, before anything else; a change
    needs a verified email too, as a learner's writes do. A CORS preflight carries no token
    by design: it is answered without one."""
    if request.method == "OPTIONS":
        return
    g.identity = authenticate(admin=True, write=request.method not in SAFE_METHODS)


def _state_json(state: rollout.RolloutState) -> dict:
    return {
        "flag": state.flag,
        "percentage": state.percentage,
        "backend": state.backend,
        "updatedAt": state.updated_at,
        "updatedBy": state.updated_by,
    }


@bp.get("/rollout")
@api_spec.validate(
    resp=Resp(HTTP_200=RolloutOut, **ERRORS),
    operation_id="getRollout",
    tags=["admin"],
    security=AUTH,
)
def get_rollout() -> dict:
    """The flag's current percentage and its last change."""
    return _state_json(rollout.rollout_state())


@bp.put("/rollout")
@api_spec.validate(
    json=RolloutIn,
    resp=Resp(HTTP_200=RolloutOut, **ERRORS),
    operation_id="setRollout",
    tags=["admin"],
    security=AUTH,
)
def put_rollout(json: RolloutIn) -> dict:
    """Move the rollout (0, 10, 100 or any value); the change is kept with its reason."""
    state = rollout.set_rollout(json.percentage, json.reason, g.identity.email)
    return _state_json(state)


@bp.get("/rollout/history")
@api_spec.validate(
    resp=Resp(HTTP_200=RolloutHistoryOut, **ERRORS),
    operation_id="getRolloutHistory",
    tags=["admin"],
    security=AUTH,
)
def get_rollout_history() -> dict:
    """Every change, newest first."""
    return {
        "changes": [
            {
                "percentage": change.percentage,
                "previousPercentage": change.previous_percentage,
                "reason": change.reason,
                "changedBy": change.changed_by,
                "changedAt": change.changed_at,
                "backend": change.backend,
            }
            for change in rollout.rollout_history()
        ]
    }


@bp.get("/paths")
@api_spec.validate(
    resp=Resp(HTTP_200=PathFiguresOut, **ERRORS),
    operation_id="getPathFigures",
    tags=["admin"],
    security=AUTH,
)
def get_path_figures() -> dict:
    """The two paths' key figures side by side."""
    return metrics.path_figures()


# -- the rollout guard -------------------------------------------------------------------------

# The plan's JSON names and the model's columns.
PLAN_FIELDS = {
    "stages": "stages",
    "minStageSeconds": "min_stage_seconds",
    "minCompletions": "min_completions",
    "minAccessChecks": "min_access_checks",
    "autoAdvance": "auto_advance",
    "onFailure": "on_failure",
    "successRateMargin": "success_rate_margin",
    "p95BudgetSeconds": "p95_budget_seconds",
    "latencyMargin": "latency_margin",
    "falseRollbackRate": "false_rollback_rate",
    "enabled": "enabled",
    "paused": "paused",
}
GUARD_ERRORS = {**ERRORS, "HTTP_409": ErrorOut}


@bp.get("/rollout/plan")
@api_spec.validate(
    resp=Resp(HTTP_200=RolloutPlanOut, **ERRORS),
    operation_id="getRolloutPlan",
    tags=["admin"],
    security=AUTH,
)
def get_rollout_plan() -> dict:
    """The rollout guard's plan: stages, evidence needed, what a failure does, where it is."""
    return guard.plan_json(guard.current_plan())


@bp.put("/rollout/plan")
@api_spec.validate(
    json=RolloutPlanIn,
    resp=Resp(HTTP_200=RolloutPlanOut, **GUARD_ERRORS),
    operation_id="updateRolloutPlan",
    tags=["admin"],
    security=AUTH,
)
def put_rollout_plan(json: RolloutPlanIn) -> dict:
    """Change the plan: only the fields sent change; `paused: false` resumes it."""
    changes = {
        PLAN_FIELDS[name]: value for name, value in json.model_dump(exclude_none=True).items()
    }
    return guard.plan_json(guard.update_plan(changes, g.identity.email))


@bp.get("/rollout/evaluations")
@api_spec.validate(
    query=GuardEvaluationsQuery,
    resp=Resp(HTTP_200=GuardEvaluationsOut, **ERRORS),
    operation_id="getRolloutEvaluations",
    tags=["admin"],
    security=AUTH,
)
def get_rollout_evaluations(query: GuardEvaluationsQuery) -> dict:
    """The guard's evaluations, newest first: each check's figures, thresholds, decision."""
    return {
        "evaluations": [guard.evaluation_json(row) for row in guard.recent_evaluations(query.limit)]
    }


@bp.post("/rollout/advance")
@api_spec.validate(
    resp=Resp(HTTP_200=RolloutPlanOut, **GUARD_ERRORS),
    operation_id="advanceRollout",
    tags=["admin"],
    security=AUTH,
)
def post_rollout_advance() -> dict:
    """Product's click: move to the next stage once the guard marked this one ready."""
    return guard.plan_json(guard.advance_stage(g.identity.email))


# -- the page's pictures ------------------------------------------------------------------------


@bp.get("/rollout/charts")
@api_spec.validate(
    query=RolloutChartsQuery,
    resp=Resp(HTTP_200=RolloutChartsOut, **ERRORS),
    operation_id="getRolloutCharts",
    tags=["admin"],
    security=AUTH,
)
def get_rollout_charts(query: RolloutChartsQuery) -> dict:
    """The two paths over the current stage or the last day (from Prometheus when
    PROMETHEUS_URL is set, else from the guard's evaluations), with every rollout change and
    guard decision as a marker, and the stage timeline."""
    plan = guard.current_plan()
    return rollout_charts.charts(query.range, plan.stage_started_at)


@bp.get("/rollout/impact")
@api_spec.validate(
    query=RolloutImpactQuery,
    resp=Resp(HTTP_200=RolloutImpactOut, **ERRORS),
    operation_id="getRolloutImpact",
    tags=["admin"],
    security=AUTH,
)
def get_rollout_impact(query: RolloutImpactQuery) -> dict:
    """How many known learners would change path if the rollout moved to `percentage`."""
    current = rollout.rollout_state().percentage
    return rollout_charts.learners_moving(current, query.percentage)
