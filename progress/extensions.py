"""Extensions, created unbound here and bound to the app in `create_app`, and the readiness
registry every part of the app adds its check to (/readyz reads it)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask_cors import CORS
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

READINESS_CHECKS_KEY = "progress.readiness"


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
