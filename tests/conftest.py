"""Fixtures: a real PostgreSQL database (and the embedded SQLite file) with the migrations
applied, one app per engine, each test isolated by emptying the learner tables
(tests/support/apps.py), and the browser. Helpers live in tests/support/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from harness import databases
from progress import faults
from progress.flags import flag_gate

from .support import isolation
from .support.apps import (
    SECRET,
    build_app,
    dispose,
    empty_learner_tables,
    listening,
    migrate_and_seed,
    settle_background,
)
from .support.availability import require_postgres
from .support.browser import chromium
from .support.guard import emptied_guard_tables
from .support.learners import AuthActions


@pytest.fixture(scope="session", autouse=True)
def run_databases() -> Iterator[None]:
    """The databases of runs killed before their end go at the start; this run's own go at
    its end, whatever happened (tests/support/isolation.py names them)."""
    if not databases.reachable():
        yield
        return
    isolation.drop_stale_databases()
    yield
    isolation.drop_run_databases()


@pytest.fixture(scope="session")
def pg_database() -> str:
    require_postgres()
    return databases.recreate(isolation.PG_TEST_DB)


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


@pytest.fixture
def admin():
    """A signed-in admin (the rollout and guard routes need the role)."""
    return AuthActions(SECRET).learner(admin=True)


@pytest.fixture
def guarded(app: Flask) -> Iterator[Flask]:
    """The service on each engine, with no plan and no evaluation yet."""
    with emptied_guard_tables(app):
        yield app


@pytest.fixture
def pg_guarded(pg_app: Flask) -> Iterator[Flask]:
    """The service on PostgreSQL, with no plan and no evaluation yet."""
    with emptied_guard_tables(pg_app):
        yield pg_app


@pytest.fixture
def auth() -> AuthActions:
    return AuthActions()


@pytest.fixture
def make_pg_app(pg_app: Flask, pg_database: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
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


@pytest.fixture
def inject() -> Iterator[Callable[..., None]]:
    """Turn on faults for one test (PROGRESS_FAULTS' effects), off again afterwards."""
    yield lambda **kw: faults.configure(faults.Faults(**kw))
    faults.configure(faults.Faults())


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium for a module's browser tests (tests/support/browser.py)."""
    with chromium() as launched:
        yield launched
