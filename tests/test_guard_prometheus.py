"""The guard against a real Prometheus, on demand: no traffic and an unreachable Prometheus
hold, two instances never both act on one evaluation, and with a real Unleash server the
guard moves the flag there."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.prometheus import running_prometheus
from harness.service import running_service
from progress import guard, rollout
from progress.api.schemas import RolloutPlanOut
from progress.guard import evaluation
from progress.guard.figures import Prometheus

from .support.apps import SECRET
from .support.guard import (
    ADVANCE,
    GO,
    PLAN,
    check_named,
    drive_healthy_traffic,
    evaluations_oldest_first,
    figures,
    guard_app,
    guard_changes,
    learners_on_each_path,
    print_timeline,
    require_prometheus,
    wait_for_samples,
)
from .support.learners import AuthActions
from .support.service import service_env
from .support.unleash_server import create_rollout_flag, running_unleash


def decision_count(app, decision: str) -> float:
    """The guard's decision counter as the app's /metrics exports it."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    line = f'progress_rollout_guard_decisions_total{{decision="{decision}"}} '
    return float(next(row for row in text.splitlines() if row.startswith(line)).split()[-1])


@pytest.mark.slow
def test_no_traffic_holds_with_no_data(pg_guarded, pg_database, make_pg_app, tmp_path):
    """At 10%, with the stage's time over but nobody learning, the guard holds: no data."""
    require_prometheus()
    app = pg_guarded
    with app.app_context():
        guard.update_plan({"min_stage_seconds": 0, "auto_advance": True, "enabled": True}, "t")
        guard.advance_stage("product@example.com", "tests: start the stage")
    env = service_env(pg_database, tmp_path / "metrics-0")
    with (
        running_service(env, tmp_path, workers=1) as svc,
        running_prometheus([f"127.0.0.1:{svc.port}"], tmp_path) as prometheus,
    ):
        wait_for_samples(prometheus, 1)
        checker = guard_app(make_pg_app, prometheus.url)
        holds = decision_count(app, "hold")
        result = checker.test_cli_runner().invoke(args=["rollout", "guard", "--once"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert (evaluation["decision"], evaluation["acted"]) == ("hold", False)
    assert "no data" in evaluation["reason"]
    # Nobody learning: the guard cannot tell when it will decide, and says why.
    assert evaluation["etaSeconds"] is None
    assert "no traffic" in evaluation["eta"]["reason"], evaluation["eta"]
    assert check_named(evaluation["checks"], "sample_size")["figures"]["verifiedCompletions"] == 0
    assert (
        check_named(evaluation["checks"], "false_lock_screens")["status"] == "pass"
    )  # zero, not missing
    assert decision_count(app, "hold") == holds + 1  # counted where any worker exports it
    with app.app_context():
        assert rollout.rollout_state().percentage == 10
    assert guard_changes(app) == []
    listed = checker.test_cli_runner().invoke(args=["rollout", "evaluations", "--limit", "1"])
    assert json.loads(listed.output)["id"] == evaluation["id"]


def plan_answer() -> dict:
    """The plan as the API answers it (in an app context)."""
    return RolloutPlanOut.model_validate(
        guard.PlanView(guard.current_plan()), from_attributes=True
    ).model_dump()


@pytest.mark.slow
def test_prometheus_down_holds_logs_it_and_changes_nothing(
    pg_guarded, make_pg_app, tmp_path, caplog
):
    require_prometheus()
    app = pg_guarded
    with app.app_context():
        guard.update_plan({"min_stage_seconds": 0, "auto_advance": True, "enabled": True}, "t")
        guard.advance_stage("product@example.com", "tests: start the stage")
        before = plan_answer()
    with running_prometheus([], tmp_path) as prometheus:
        url = prometheus.url
    checker = guard_app(make_pg_app, url)  # Prometheus has stopped: nothing listens there
    result = checker.test_cli_runner().invoke(args=["rollout", "guard", "--once"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert (evaluation["decision"], evaluation["acted"]) == ("hold", False)
    assert "unreachable" in evaluation["reason"]
    assert "nothing changed" in evaluation["reason"]
    assert {c["status"] for c in evaluation["checks"]} == {"no_data"}
    assert evaluation["etaSeconds"] is None  # no figures: it cannot tell, and says why
    assert evaluation["eta"]["reason"].startswith("no figures: Prometheus unreachable")
    warnings = [r for r in caplog.records if r.name == "progress.guard.evaluation"]
    assert any(r.levelno == logging.WARNING and url in r.prometheus_url for r in warnings)
    with app.app_context():
        assert plan_answer() == before
        assert rollout.rollout_state().percentage == 10
    assert guard_changes(app) == []


@pytest.mark.slow
def test_two_instances_never_both_act_on_one_evaluation(
    pg_guarded, pg_database, make_pg_app, tmp_path, monkeypatch
):
    """Two app instances evaluate at the same moment (Prometheus slowed so they overlap):
    one takes the lock, judges and advances; the other reports the lock held and does
    nothing. Repeated until the data is in: every round has exactly one evaluation."""
    require_prometheus()
    app = pg_guarded
    with app.app_context():
        guard.update_plan(
            {"min_stage_seconds": 0, "min_completions": 5, "min_access_checks": 10,
             "success_rate_margin": 0.6, "latency_margin": 0.6,
             "auto_advance": True, "enabled": True},
            "tests",
        )  # fmt: skip
        guard.advance_stage("product@example.com", "tests: start the stage")
    learners = learners_on_each_path(app, 2)
    env = service_env(pg_database, tmp_path / "metrics-0")
    with (
        running_service(env, tmp_path, workers=1) as svc,
        running_prometheus([f"127.0.0.1:{svc.port}"], tmp_path) as prometheus,
    ):
        wait_for_samples(prometheus, 1)
        drive_healthy_traffic(svc.url, learners)
        instances = [guard_app(make_pg_app, prometheus.url) for _ in range(2)]
        slow_query = Prometheus.query

        def slowed(self, expr, at):
            time.sleep(0.2)
            return slow_query(self, expr, at)

        monkeypatch.setattr(Prometheus, "query", slowed)
        rounds = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            start = threading.Barrier(2)

            def evaluate(instance, start=start):
                with instance.app_context():
                    start.wait(10)
                    return guard.evaluate()

            with ThreadPoolExecutor(2) as pool:
                runs = list(pool.map(evaluate, instances))
            rounds.append(runs)
            assert sorted(r.outcome for r in runs) == ["evaluated", "lock_held"], runs
            (judged,) = [r for r in runs if r.outcome == "evaluated"]
            if judged.evaluation.acted:
                break
            time.sleep(1)
    print_timeline(app)
    assert judged.evaluation.decision == "advance", [r[0].message for r in rounds]
    (change,) = guard_changes(app)
    assert (change.previous_percentage, change.percentage) == (10, 100)
    evaluations = evaluations_oldest_first(app)
    assert len(evaluations) == len(rounds)  # one kept per round, never two
    assert [e["decision"] for e in evaluations if e["acted"]] == ["advance"]


@pytest.mark.slow
def test_with_a_real_unleash_server_the_guard_moves_the_flag_in_unleash(
    make_pg_app, pg_guarded, monkeypatch
):
    """The guard only uses rollout_state and set_rollout: with Unleash as the backend,
    its rollback changes the flexibleRollout in Unleash and the history says why."""
    with running_unleash() as server:
        create_rollout_flag(server, "verified-progress-path", percentage=0)
        app = make_pg_app(
            **server.service_settings,
            PROMETHEUS_URL="http://prometheus.invalid",
            PROGRESS_GUARD_INTERVAL_S=0,
        )
        admin = AuthActions(SECRET).learner(admin=True)
        client = app.test_client()
        client.put(PLAN, headers=admin.headers, json={"enabled": True, "minStageSeconds": 0})
        assert client.post(ADVANCE, headers=admin.headers, json=GO).status_code == 200
        state = client.get("/api/v1/admin/rollout", headers=admin.headers).get_json()
        assert (state["percentage"], state["backend"]) == (10, "unleash")
        # Figures as Prometheus would give them: one shown false lock on the verified path.
        monkeypatch.setattr(evaluation, "read_figures", lambda *a, **k: figures(shown=1, window=60))
        with app.app_context():
            run = guard.evaluate()
            assert run.evaluation.decision == "rollback"
            assert run.evaluation.acted
            assert rollout.rollout_state().percentage == 0  # read back from Unleash
            (change,) = [c for c in rollout.rollout_history() if c.changed_by == "guard"]
            assert (change.percentage, change.backend) == (0, "unleash")
            assert "false lock screens shown" in change.reason
