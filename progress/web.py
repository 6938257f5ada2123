"""Server-rendered pages (templates/): the learner's lesson map and the admin rollout page.
Both are built on the public API; the pages hold no progress logic."""

from __future__ import annotations

import uuid
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, jsonify, render_template

from . import guard
from .auth import issue_local_token
from .extensions import db
from .models import PLAN_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
bp = Blueprint(
    "web",
    __name__,
    template_folder=str(ROOT / "templates"),
    static_folder="static",
    static_url_path="/static",
)


@bp.get("/")
def lesson_map() -> str:
    return render_template(
        "lesson_map.html",
        embedded=current_app.config["PROGRESS_ENV"] == "development",
        timeout_ms=current_app.config["PROGRESS_PAGE_TIMEOUT_MS"],
    )


@bp.post("/dev/learner-token")
def demo_learner_token() -> Response:
    """The embedded demo's "Start as a new learner" button: a token for a brand-new learner.
    Development only (PROGRESS_ENV=development); 404 everywhere else."""
    if current_app.config["PROGRESS_ENV"] != "development":
        abort(404)
    user_id = uuid.uuid4()
    email = f"learner-{user_id.hex[:12]}@example.com"
    token = issue_local_token(user_id, email)
    return jsonify(id=str(user_id), email=email, token=token)


@bp.get("/admin/rollout")
def admin_rollout() -> str:
    """For product: the rollout at a glance, the two paths over time, the controls."""
    try:
        stages = guard.current_plan().stages  # the plan's stages, not the seed's
    except Exception:  # the page still renders; the script reads the plan again
        db.session.rollback()
        stages = list(PLAN_DEFAULTS.stages)
    return render_template(
        "admin_rollout.html",
        flag=current_app.config["PROGRESS_FLAG_NAME"],
        backend="unleash" if current_app.config["UNLEASH_URL"] else "embedded",
        stages=stages,
        prometheus=bool(current_app.config["PROMETHEUS_URL"]),
    )
