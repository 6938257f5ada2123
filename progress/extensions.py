"""Extensions, created unbound here and bound to the app in `create_app`; the readiness
registry every part of the app adds its check to (/readyz reads it); and the background work
each worker starts from its requests."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

READINESS_CHECKS_KEY = "progress.readiness"
BACKGROUND_KEY = "progress.background"
LIVENESS_ENDPOINT = "health.healthz"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
cors = CORS()


def register_readiness_check(app: Flask, name: str, check: Callable[[], str]) -> None:
    """`check` answers "ok ..." when ready, "degraded ..." when ready around a fault, and
    anything else when not."""
    app.extensions.setdefault(READINESS_CHECKS_KEY, {})[name] = check


def readiness_checks(app: Flask) -> dict[str, Callable[[], str]]:
    return app.extensions.get(READINESS_CHECKS_KEY, {})


def start_with_requests(app: Flask, start: Callable[[], object], *, liveness: bool = True) -> None:
    """Call `start` before each request (threads do not survive gunicorn's fork, so each
    worker starts its own from its first request); it must cost a check once started.
    `liveness=False`: not for the liveness probe, which never waits on the database."""
    app.extensions.setdefault(BACKGROUND_KEY, []).append((start, liveness))


def start_background_work(app: Flask, endpoint: str | None) -> None:
    """What `start_with_requests` registered, for a request to `endpoint`: the app's one
    hook calls it, and so does the access check's fast path."""
    for start, liveness in app.extensions.get(BACKGROUND_KEY, ()):
        if liveness or endpoint != LIVENESS_ENDPOINT:
            start()


def init_background_work(app: Flask) -> None:
    @app.before_request
    def start_background() -> None:
        start_background_work(app, request.endpoint)
