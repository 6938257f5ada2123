"""Server-rendered pages (templates/): the learner's lesson map and the admin rollout page.
Both are built on the public API; the pages hold no progress logic."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, render_template

from .rollout import STAGES

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
        "lesson_map.html", embedded=current_app.config["PROGRESS_ENV"] == "development"
    )


@bp.get("/admin/rollout")
def admin_rollout() -> str:
    return render_template(
        "admin_rollout.html",
        flag=current_app.config["PROGRESS_FLAG_NAME"],
        backend="unleash" if current_app.config["UNLEASH_URL"] else "embedded",
        stages=STAGES,
    )
