"""Liveness, readiness and metrics: what load balancers, orchestrators and Prometheus ask."""

from __future__ import annotations

import contextlib
import logging

import sqlalchemy as sa
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import guard, metrics
from ..extensions import db, readiness_checks
from ..flags import flag_gate
from .schemas import HealthOut, ReadyOut
from .spec import operation

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@operation("getHealth", "health", {200: HealthOut}, secured=False)
def healthz() -> HealthOut:
    """The process is alive."""
    return HealthOut(status="ok")


@bp.get("/readyz")
@operation("getReadiness", "health", {200: ReadyOut, 503: ReadyOut}, secured=False)
def readyz() -> tuple[ReadyOut, int]:
    """Ready when the database answers and every registered check passes."""
    checks: dict[str, str] = {}
    try:
        db.session.execute(sa.text("SELECT 1"))
        db.session.rollback()
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports; it never raises
        db.session.rollback()
        checks["database"] = f"unavailable: {type(exc).__name__}"
    for name, check in readiness_checks(current_app).items():
        checks[name] = check()
    # "degraded": working around a fault (a replica set aside), still ready to serve.
    ready = all(value.startswith(("ok", "degraded")) for value in checks.values())
    return ReadyOut(status="ready" if ready else "unready", checks=checks), 200 if ready else 503


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format, summed over this instance's workers."""
    with contextlib.suppress(Exception):  # the answering worker reports its flag too
        flag_gate().client()
    body = generate_latest(metrics.registry())
    try:
        body += guard.exposition(guard.current_plan())
    except Exception:  # the service's own metrics still answer while the database doesn't
        db.session.rollback()
        log.warning("the rollout guard's metrics are unreadable", exc_info=True)
    # As given: `mimetype` would add a second charset, which Prometheus 3 refuses to parse.
    return Response(body, content_type=CONTENT_TYPE_LATEST)
