"""What the guard keeps besides its judgement: evaluations older than the retention are
pruned by the guard itself, and its decision counter reaches /metrics from any worker, since
it is kept in the database with the evaluations."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from harness.processes import free_port
from progress import guard
from progress.extensions import db
from progress.models import GuardEvaluation

from .support.guard import kept_evaluation


def old_evaluation(days: float) -> GuardEvaluation:
    return kept_evaluation(timedelta(days=days), reason=f"kept {days} days ago")


def decision_counts(app) -> dict[str, float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    prefix = 'progress_rollout_guard_decisions_total{decision="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


def test_the_guard_prunes_old_evaluations_and_counts_its_decision_for_every_worker(
    pg_app, make_pg_app
):
    # A Prometheus that does not answer: the guard holds, and still keeps its evaluation.
    judge = make_pg_app(
        PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",
        PROGRESS_GUARD_INTERVAL_S=0,
        PROGRESS_GUARD_RETENTION_DAYS=7,
    )
    other_worker = make_pg_app()  # never evaluates: it only reads the database
    assert decision_counts(other_worker) == dict.fromkeys(
        ("advance", "hold", "pause", "rollback", "ready", "complete"), 0.0
    )
    with judge.app_context():
        guard.update_plan({"enabled": True}, "tests")
        db.session.add_all([old_evaluation(40), old_evaluation(8), old_evaluation(6)])
        db.session.commit()
        run = guard.evaluate()
        assert (run.outcome, run.evaluation.decision) == ("evaluated", "hold")
        kept = db.session.scalars(sa.select(GuardEvaluation.reason)).all()
    assert sorted(kept) == sorted(["kept 6 days ago", run.evaluation.reason])
    assert decision_counts(other_worker)["hold"] == 1.0
    with judge.app_context():
        guard.evaluate()
    assert decision_counts(other_worker)["hold"] == 2.0


def test_retention_defaults_to_30_days(pg_app):
    assert pg_app.config["PROGRESS_GUARD_RETENTION_DAYS"] == 30
