"""The lesson progress service: `create_app` builds it in named steps."""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import RequestRedirect

from . import (
    auth,
    body_limit,
    browser_policy,
    cli,
    db_deadline,
    faults,
    flags,
    guard,
    identity_keys,
    logs,
    metrics,
    rate_limits,
    replica,
    web,
    worker,
)
from .api import admin, docs, fast_access, health, learner, spec
from .config import load_settings
from .errors import register_errorhandlers
from .extensions import cors, db, init_background_work, migrate, register_readiness_check
from .paths import legacy, verified

ROOT = Path(__file__).resolve().parent.parent


class JSONProvider(DefaultJSONProvider):
    """ISO 8601 timestamps (Flask's default is the HTTP date format); JSON nested too deep
    for the decoder is malformed JSON like any other (a ValueError), never a 500."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


class ProgressApp(Flask):
    """Flask, remembering which hooks and views are plain functions: Flask asks `inspect`
    again for every hook and the view on every request (seven times per access check), and
    the answer never changes for a function."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: weakref.WeakKeyDictionary[Callable, Callable] = weakref.WeakKeyDictionary()

    def ensure_sync(self, func: Callable) -> Callable:
        try:
            return self._sync[func]
        except (KeyError, TypeError):  # TypeError: not weakly referenceable
            pass
        wrapped = super().ensure_sync(func)
        if wrapped is func:  # only plain functions: a wrapper would keep `func` alive
            with contextlib.suppress(TypeError):
                self._sync[func] = func
        return wrapped

    def raise_routing_exception(self, request: Request) -> Any:
        """A redirect werkzeug's routing makes (`/apidoc/swagger` to `.../`) names no host:
        it would take the one the client sent in `Host`."""
        redirect = request.routing_exception
        if isinstance(redirect, RequestRedirect):
            parts = urlsplit(redirect.new_url)
            raise RequestRedirect(urlunsplit(("", "", parts.path, parts.query, parts.fragment)))
        return super().raise_routing_exception(request)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; `overrides` are environment variables (by name) for tests and tools."""
    instance_path = Path(os.environ.get("PROGRESS_INSTANCE_PATH", ROOT / "instance"))
    app = ProgressApp(__name__, instance_path=str(instance_path))
    app.json = JSONProvider(app)
    configure(app, overrides or {})
    body_limit.init_app(app)
    register_extensions(app)
    register_paths(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    metrics.create_route_series_at_zero(app)
    fast_access.init_app(app)  # last: it stands in for the hooks above on its route
    return app


def configure(app: Flask, overrides: Mapping[str, Any]) -> None:
    env = {name: str(value) for name, value in overrides.items()}  # over the process's own
    app.config.update(load_settings(Path(app.instance_path), env))
    # Flask refuses (400) a request whose Host is not one of these; None: any host.
    app.config["TRUSTED_HOSTS"] = app.config["PROGRESS_TRUSTED_HOSTS"] or None
    timeout_ms = app.config["PROGRESS_DB_TIMEOUT_MS"]
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
        app.config["SQLALCHEMY_DATABASE_URI"], timeout_ms
    )
    # Flask-SQLAlchemy gives binds none of SQLALCHEMY_ENGINE_OPTIONS: the replica's own.
    app.config["SQLALCHEMY_BINDS"] = {
        key: {"url": url, **engine_options(url, timeout_ms)}
        for key, url in app.config["SQLALCHEMY_BINDS"].items()
    }
    logs.configure_logging(app.config["PROGRESS_LOG_LEVEL"])
    faults.configure(app.config["PROGRESS_FAULTS"])


def engine_options(url: str, timeout_ms: int) -> dict[str, Any]:
    """Every wait on PostgreSQL bounded by PROGRESS_DB_TIMEOUT_MS (0: unbounded): connecting
    (libpq counts whole seconds, at least 2), a checkout from an exhausted pool, and a
    statement or lock wait on a running server. A server that stops answering on an open
    connection is the deadline watchdog's (progress/db_deadline.py)."""
    if url.startswith("sqlite"):
        # Wait for a writer instead of failing at once; the embedded default is one process.
        return {"connect_args": {"timeout": 15}}
    options: dict[str, Any] = {"pool_size": 10, "max_overflow": 10}
    if not timeout_ms:
        return {**options, "pool_pre_ping": True}
    return {
        **options,
        "pool_timeout": timeout_ms / 1000,
        "connect_args": {
            "connect_timeout": db_deadline.connect_timeout_s(timeout_ms),
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        },
    }


def register_extensions(app: Flask) -> None:
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", _sqlite_pragmas)
        elif app.config["PROGRESS_DB_TIMEOUT_MS"]:
            for engine in db.engines.values():  # the primary and the replica
                db_deadline.install(engine, app.config["PROGRESS_DB_TIMEOUT_MS"] / 1000)
    register_cors(app)
    init_background_work(app)  # before the request's tags: as the listener's start was
    worker.init_app(app)
    replica_health = replica.init_app(app)
    metrics.create_series_at_zero()
    state = app.extensions[worker.STATE_KEY]
    if app.config["SQLALCHEMY_BINDS"]:
        register_readiness_check(app, "replica", replica_health.describe)
    register_readiness_check(app, "circuit_breaker", state.breaker.describe)
    register_readiness_check(app, "invalidation", state.listener.describe)
    identity_keys.init_app(app)  # the provider's keys, and their readiness check
    auth.init_app(app)
    logs.init_app(app)


def register_cors(app: Flask) -> None:
    """Browsers on the configured origins may call /api/v1 with a bearer token (no
    cookies, so no credentials mode); preflights are answered before any auth. A request
    without an Origin header (not a browser's cross-origin call) gets no CORS headers, but
    says (Vary: Origin) that its headers depend on it."""
    origins = app.config["PROGRESS_CORS_ORIGINS"]
    cors.init_app(
        app,
        resources={f"{browser_policy.CROSS_ORIGIN_PREFIX}*": {"origins": origins}},
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=["X-Progress-Path", "X-Request-ID"],
        methods=["GET", "POST", "PUT", "OPTIONS"],
        max_age=600,
        supports_credentials=False,
        vary_header=False,  # ours, on every answer: flask-cors's only on some
        always_send=False,  # no grant to a request that names no origin (not a browser's)
    )
    if origins:
        app.after_request(browser_policy.vary_on_origin)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers don't wait for the writer
    cursor.close()


def register_paths(app: Flask) -> None:
    """Each path is a blueprint that installs its implementation."""
    app.register_blueprint(legacy.bp)
    app.register_blueprint(verified.bp)
    flags.init_app(app)
    guard.init_app(app)  # judges the rollout the flag serves; one schedule per worker


def register_blueprints(app: Flask) -> None:
    browser_policy.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(learner.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(web.bp)
    app.register_blueprint(docs.bp)
    rate_limits.init_app(app)  # after the routes it limits
    spec.init_app(app)  # last: the OpenAPI document lists the routes above


def register_commands(app: Flask) -> None:
    cli.init_app(app)
