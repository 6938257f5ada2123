"""The service in process for tests: built on a database, migrated and seeded, emptied
between tests, and closed.

Isolation is by truncation rather than a rolled-back outer transaction: the paths update
the cache from background threads with their own sessions, which an outer transaction on
one connection can't serve.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from harness import databases
from progress import create_app, rollout
from progress.extensions import db
from progress.flags import flag_gate
from progress.path_names import PATHS
from progress.worker import worker_state

from .tokens import token_minter

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


def build_app(database_url: str, tmp: Path, **overrides: object) -> Flask:
    os.environ["PROGRESS_INSTANCE_PATH"] = str(tmp)
    return create_app(
        {
            "PROGRESS_ENV": "test",
            "DATABASE_URL": database_url,
            "PROGRESS_JWT_SECRET": SECRET,
            **token_minter(SECRET).settings(),  # TEST_TOKEN_MODE's
            "PROGRESS_LOG_LEVEL": "WARNING",
            # No schedule: a test evaluates when it means to (the guard runs without
            # Prometheus too, on the instance's own counters).
            "PROGRESS_GUARD_INTERVAL_S": 0,
            **overrides,
        }
    )


def migrate_and_seed(app: Flask) -> None:
    with app.app_context():
        upgrade()
        app.test_cli_runner().invoke(args=["seed"], catch_exceptions=False)


def settle_background(app: Flask) -> None:
    """Wait for the cache updates already handed to this process's background pools."""
    with app.app_context():
        pools = [worker_state().background(path) for path in PATHS]
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


def dispose(app: Flask) -> None:
    """Close pooled connections and background threads the app opened."""
    with app.app_context():
        flag_gate().close()
        worker_state().shutdown()
        for engine in db.engines.values():
            engine.dispose()


@contextlib.contextmanager
def throwaway_app(name: str, tmp: Path) -> Iterator[Flask]:
    """The service on a fresh PostgreSQL database of its own (no migrations applied), its
    connections closed and the database dropped on the way out."""
    with databases.throwaway(name) as url:
        app = build_app(url, tmp)
        try:
            yield app
        finally:
            with app.app_context():
                for engine in db.engines.values():
                    engine.dispose()


def listening(app: Flask) -> None:
    """Start the worker's LISTEN thread now and wait until it listens (it clears the cache
    when it connects, which would otherwise race with a test's first requests)."""
    with app.app_context():
        handle = worker_state().listener
        handle.ensure_started()
        if handle.listener is not None:
            assert handle.listener.connected.wait(10), "the listener never connected"


def set_rollout(app: Flask, percentage: int) -> None:
    with app.app_context():
        rollout.set_rollout(percentage, "test", "tests")
