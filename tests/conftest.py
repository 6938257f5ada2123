"""Fixtures: a real PostgreSQL database (and the embedded SQLite file) with the migrations
applied, one app per engine, and each test isolated by emptying the learner tables.

Isolation is by truncation rather than a rolled-back outer transaction: the paths update
the cache from background threads with their own sessions, which an outer transaction on
one connection can't serve.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade

from progress import create_app, faults
from progress.auth import issue_token
from progress.extensions import db
from progress.flags import flag_gate
from progress.worker import worker_state

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DB = os.environ.get("TEST_POSTGRES_DB", "progress_test")
SECRET = "test-secret-" + "x" * 40
LEARNER_TABLES = (
    "lesson_progress",
    "progress_versions",
    "users",
    "feature_flags",
    "rollout_changes",
    "lock_screen_reports",
    "rollout_plans",
    "guard_evaluations",
    "guard_decision_counts",
)


def pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def postgres_available() -> bool:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def recreate_pg_database(name: str) -> str:
    """Drop and create `name` on the machine's server; returns its URL."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def require_postgres() -> None:
    if not postgres_available():
        if IN_CI:
            pytest.fail(
                f"PostgreSQL is required under CI=true and is not reachable at {PG_ADMIN_URL}"
            )
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


def build_app(database_url: str, tmp: Path, **overrides: object) -> Flask:
    os.environ["PROGRESS_INSTANCE_PATH"] = str(tmp)
    return create_app(
        {
            "PROGRESS_ENV": "test",
            "DATABASE_URL": database_url,
            "PROGRESS_JWT_SECRET": SECRET,
            "PROGRESS_LOG_LEVEL": "WARNING",
            **overrides,
        }
    )


def service_env(database_url: str, metrics_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the service under gunicorn in a test (tests/support/service.py)."""
    return {
        "PROGRESS_ENV": "test",
        "DATABASE_URL": database_url,
        "PROGRESS_JWT_SECRET": SECRET,
        "PROGRESS_LOG_LEVEL": "WARNING",
        "PROGRESS_FLAG_REFRESH_S": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **extra,
    }


def migrate_and_seed(app: Flask) -> None:
    with app.app_context():
        upgrade()
        app.test_cli_runner().invoke(args=["seed"], catch_exceptions=False)


def settle_background(app: Flask) -> None:
    """Wait for the cache updates already handed to this process's background pools."""
    with app.app_context():
        pools = [worker_state().background(path) for path in ("legacy", "verified")]
    for pool in pools:
        # Occupy every pool thread at once: then every task queued before has finished.
        size = pool._max_workers
        barrier = threading.Barrier(size)
        for future in [pool.submit(barrier.wait, 10) for _ in range(size)]:
            future.result(timeout=10)


def empty_learner_tables(app: Flask) -> None:
    settle_background(app)  # let fire-and-forget updates land before we wipe
    with app.app_context():
        state = worker_state()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text(f"TRUNCATE {', '.join(LEARNER_TABLES)} CASCADE"))
        else:
            for table in LEARNER_TABLES:
                db.session.execute(sa.text(f"DELETE FROM {table}"))
        db.session.commit()
        state.reset()
        flag_gate().reload_now()  # back to 0%: every learner on the legacy path


@pytest.fixture(scope="session")
def pg_database() -> str:
    require_postgres()
    return recreate_pg_database(PG_TEST_DB)


def dispose(app: Flask) -> None:
    """Close pooled connections and background threads the app opened."""
    with app.app_context():
        flag_gate().close()
        worker_state().shutdown()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(scope="session")
def pg_app_session(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = build_app(pg_database, tmp_path_factory.mktemp("pg-instance"))
    migrate_and_seed(app)
    listening(app)
    yield app
    dispose(app)


@pytest.fixture(scope="session")
def sqlite_app_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    tmp = tmp_path_factory.mktemp("sqlite-instance")
    app = build_app(f"sqlite:///{tmp / 'progress.db'}", tmp)
    migrate_and_seed(app)
    yield app
    dispose(app)


@pytest.fixture(params=["postgresql", "sqlite"])
def app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """The service on each engine, with an empty set of learners."""
    session_app = request.getfixturevalue(
        "pg_app_session" if request.param == "postgresql" else "sqlite_app_session"
    )
    yield session_app
    empty_learner_tables(session_app)


@pytest.fixture
def pg_app(pg_app_session: Flask) -> Iterator[Flask]:
    """The service on PostgreSQL only, for behaviour SQLite can't show."""
    yield pg_app_session
    empty_learner_tables(pg_app_session)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Learner:
    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class AuthActions:
    """Make learners as the identity provider would: a signed token, nothing stored yet."""

    def __init__(self, secret: str):
        self.secret = secret

    def learner(self, *, verified: bool = True, admin: bool = False, ttl_s: int = 600) -> Learner:
        user_id = uuid.uuid4()
        email = f"{user_id.hex[:8]}@example.com"
        token = issue_token(
            user_id, email, secret=self.secret, email_verified=verified, admin=admin, ttl_s=ttl_s
        )
        return Learner(user_id, email, token)


@pytest.fixture
def auth() -> AuthActions:
    return AuthActions(SECRET)


@pytest.fixture
def make_pg_app(pg_app: Flask, pg_database: str, tmp_path: Path) -> Iterator:
    """Build more instances of the service on the same PostgreSQL database: each has its
    own cache, breaker and flag client, as another worker or instance would."""
    built: list[Flask] = []

    def make(**overrides: object) -> Flask:
        app = build_app(pg_database, tmp_path, **overrides)
        built.append(app)
        listening(app)
        return app

    yield make
    for app in built:
        settle_background(app)
        with app.app_context():
            flag_gate().close()
        dispose(app)
    faults.configure(faults.Faults())


def listening(app: Flask) -> None:
    """Start the worker's LISTEN thread now and wait until it listens (it clears the cache
    when it connects, which would otherwise race with a test's first requests)."""
    with app.app_context():
        handle = worker_state().listener
        handle.ensure_started()
        if handle.listener is not None:
            assert handle.listener.connected.wait(10), "the listener never connected"


@pytest.fixture
def inject() -> Iterator:
    """Turn on faults for one test (PROGRESS_FAULTS' effects), off again afterwards."""
    yield lambda **kw: faults.configure(faults.Faults(**kw))
    faults.configure(faults.Faults())


def set_rollout(app: Flask, percentage: int) -> None:
    from progress import rollout

    with app.app_context():
        rollout.set_rollout(percentage, "test", "tests")
