"""The guard's lock and evaluation in process: one evaluation at a time (PostgreSQL's
advisory lock, SQLite's process lock), scheduled wake-ups sharing one, a refused action kept
as such, the stage exported by every worker, and the migrations of the guard's tables."""

from __future__ import annotations

import logging

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from harness.processes import free_port
from progress import guard, rollout
from progress.extensions import db
from progress.guard import evaluation, lock
from progress.guard import plan as guard_plan
from progress.models import RolloutPlan

from .support.apps import SECRET, throwaway_app
from .support.availability import require_postgres
from .support.guard import (
    PLAN,
    check_named,
    emptied_guard_tables,
    figures,
    prometheus_at,
)
from .support.isolation import PG_TEST_DB
from .support.learners import AuthActions


def test_an_unreachable_prometheus_is_one_stored_hold_and_scheduled_wakeups_share_it(
    make_pg_app, pg_guarded, caplog
):
    """A scheduled wake-up right after an evaluation (any process's) is skipped, so every
    worker waking each interval makes one evaluation per interval between them."""
    app = make_pg_app(
        PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",
        PROGRESS_GUARD_INTERVAL_S=60,
    )
    with app.app_context():
        guard.update_plan({"enabled": True}, "tests")
        first = guard.evaluate(scheduled=True)
        second = guard.evaluate(scheduled=True)
        forced = guard.evaluate()
    assert first.outcome == "evaluated"
    assert first.evaluation.decision == "hold"
    assert "unreachable" in first.evaluation.reason
    assert second.outcome == "skipped"
    assert forced.outcome == "evaluated"  # `flask rollout guard --once` always evaluates
    assert any(
        r.levelno == logging.WARNING and "Prometheus unavailable" in r.getMessage()
        for r in caplog.records
    )


def test_a_held_advisory_lock_keeps_another_evaluation_out(make_pg_app, pg_guarded):
    """While another session holds the guard's PostgreSQL lock, an evaluation neither
    judges nor records anything; plan changes wait, then answer busy."""
    app = make_pg_app(PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}", PROGRESS_GUARD_INTERVAL_S=0)
    with app.app_context():
        guard.update_plan({"enabled": True}, "tests")
        key = lock.lock_key("verified-progress-path")
    with psycopg.connect(app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", "")) as other:
        assert other.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]
        with app.app_context():
            run = guard.evaluate()
            assert run.outcome == "lock_held"
            assert run.evaluation is None
            assert guard.recent_evaluations() == []
        original_wait, guard_plan.PLAN_LOCK_WAIT_S = guard_plan.PLAN_LOCK_WAIT_S, 0.3
        try:
            admin = AuthActions(SECRET).learner(admin=True)
            busy = app.test_client().put(PLAN, headers=admin.headers, json={"paused": True})
        finally:
            guard_plan.PLAN_LOCK_WAIT_S = original_wait
        assert busy.status_code == 409
        assert busy.get_json()["error"]["code"] == "guard_busy"
        other.rollback()
    with app.app_context():
        assert guard.evaluate().outcome == "evaluated"


def test_when_the_flag_backend_refuses_the_evaluation_says_nothing_changed(guarded, monkeypatch):
    """Unleash down at the moment of a rollback: the evaluation is kept, not acted on."""

    def refuse(*args, **kwargs):
        raise rollout.RolloutError("Unleash unreachable: ConnectionError")

    monkeypatch.setattr(evaluation, "read_figures", lambda *a, **k: figures(shown=1, window=60))
    with prometheus_at(guarded, "http://prometheus.invalid"), guarded.app_context():
        guard.update_plan({"enabled": True}, "tests")
        guard.advance_stage("tests", "tests: next stage")
        monkeypatch.setattr(rollout, "set_rollout", refuse)
        run = guard.evaluate()
        assert (run.evaluation.decision, run.evaluation.acted) == ("rollback", False)
        assert "could not act: Unleash unreachable" in run.evaluation.reason
        assert check_named(run.evaluation.checks, "false_lock_screens")["status"] == "fail"
        plan = guard.current_plan()
        assert (plan.stage_index, plan.paused) == (1, False)  # the plan did not move either
        assert rollout.rollout_state().percentage == 10


def test_on_sqlite_a_process_lock_keeps_a_second_evaluation_out(sqlite_app_session):
    app = sqlite_app_session
    with (
        emptied_guard_tables(app),
        prometheus_at(app, f"http://127.0.0.1:{free_port()}"),
        app.app_context(),
    ):
        guard.update_plan({"enabled": True}, "tests")
        with lock.local_lock("verified-progress-path"):
            assert guard.evaluate().outcome == "lock_held"
        assert guard.evaluate().outcome == "evaluated"


def test_every_worker_exports_the_plans_stage_from_the_database(make_pg_app, pg_guarded):
    """progress_rollout_stage is exported (dashboards draw it) even before any evaluation,
    by a worker that never evaluated: it is read from the plan at scrape time."""
    with pg_guarded.app_context():
        guard.advance_stage("tests", "tests: next stage")  # stage 1 (10%)
    worker = make_pg_app()  # a fresh worker: it has not served a request yet
    text = worker.test_client().get("/metrics").get_data(as_text=True)
    assert "\nprogress_rollout_stage 1.0\n" in text
    assert "\nprogress_rollout_stage_percentage 10.0\n" in text


def test_migration_0003_adds_the_guard_tables_and_takes_them_away(tmp_path):
    require_postgres()
    with throwaway_app(f"{PG_TEST_DB}_guard_migration", tmp_path) as app, app.app_context():
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {"rollout_plans", "guard_evaluations"} <= tables
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        downgrade(revision="0002")
        tables = set(sa.inspect(db.engine).get_table_names())
        assert not {"rollout_plans", "guard_evaluations"} & tables
        assert "rollout_changes" in tables


def test_migration_0005_gives_stored_plans_the_default_test_settings(tmp_path):
    """A plan stored before the sequential test gets the tolerated false-rollback rate and
    the latency margin from the defaults; downgrading takes the columns away again."""
    require_postgres()
    with throwaway_app(f"{PG_TEST_DB}_guard_statistics", tmp_path) as app, app.app_context():
        upgrade(revision="0004")
        db.session.execute(
            sa.text(
                "INSERT INTO rollout_plans VALUES ('f', '[0, 10, 100]', 600, 50, 200, false,"
                " 'rollback', 0.002, 0.25, true, 1, now(), false, false, now(), 'tests')"
            )
        )
        db.session.commit()
        upgrade()
        plan = db.session.get(RolloutPlan, "f")
        assert (plan.success_rate_margin, plan.stage_index) == (0.002, 1)  # kept
        assert (plan.false_rollback_rate, plan.latency_margin) == (0.01, 0.05)
        db.session.remove()
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        downgrade(revision="0004")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("rollout_plans")}
        assert not {"false_rollback_rate", "latency_margin"} & columns
