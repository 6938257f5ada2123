"""Admin routes: rollout control for product, and the two paths' key figures."""

from __future__ import annotations

from flask import Blueprint, g
from spectree import Response as Resp

from .. import metrics, rollout
from ..auth import authenticate
from .schemas import (
    ErrorOut,
    PathFiguresOut,
    RolloutHistoryOut,
    RolloutIn,
    RolloutOut,
)
from .spec import api_spec

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")

AUTH = {"bearer": []}
ERRORS = {f"HTTP_{code}": ErrorOut for code in (401, 403, 502, 503)}


@bp.before_request
def require_admin() -> None:
    """Every admin route: a valid token with the admin role, before anything else."""
    g.identity = authenticate(admin=True)


def _state_json(state: rollout.RolloutState) -> dict:
    return {
        "flag": state.flag,
        "percentage": state.percentage,
        "backend": state.backend,
        "updatedAt": state.updated_at,
        "updatedBy": state.updated_by,
    }


@bp.get("/rollout")
@api_spec.validate(resp=Resp(HTTP_200=RolloutOut, **ERRORS), tags=["admin"], security=AUTH)
def get_rollout() -> dict:
    """The flag's current percentage and its last change."""
    return _state_json(rollout.rollout_state())


@bp.put("/rollout")
@api_spec.validate(
    json=RolloutIn, resp=Resp(HTTP_200=RolloutOut, **ERRORS), tags=["admin"], security=AUTH
)
def put_rollout(json: RolloutIn) -> dict:
    """Move the rollout (0, 10, 100 or any value); the change is kept with its reason."""
    state = rollout.set_rollout(json.percentage, json.reason, g.identity.email)
    return _state_json(state)


@bp.get("/rollout/history")
@api_spec.validate(resp=Resp(HTTP_200=RolloutHistoryOut, **ERRORS), tags=["admin"], security=AUTH)
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
@api_spec.validate(resp=Resp(HTTP_200=PathFiguresOut, **ERRORS), tags=["admin"], security=AUTH)
def get_path_figures() -> dict:
    """The two paths' key figures side by side."""
    return metrics.path_figures()
