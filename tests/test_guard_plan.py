"""The plan in process: its defaults and changes through the API and the command line, bad
plans refused, advancing a stage, the admin page's section, and what an evaluation says."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from harness.processes import free_port
from progress import guard
from progress.extensions import db
from progress.guard import evaluation
from progress.models import RolloutPlan

from .support.guard import (
    ADVANCE,
    EVALUATIONS,
    GO,
    PLAN,
    check_named,
    figures,
    prometheus_at,
)


def test_the_plan_starts_at_the_seeds_defaults_and_changes_field_by_field(guarded, admin):
    client = guarded.test_client()
    plan = client.get(PLAN, headers=admin.headers).get_json()
    assert plan["stages"] == [0, 10, 100]
    assert (plan["minStageSeconds"], plan["minCompletions"], plan["minAccessChecks"]) == (
        600,
        50,
        200,
    )
    assert plan["autoAdvance"] is False
    assert plan["onFailure"] == "rollback"
    assert (plan["successRateMargin"], plan["p95BudgetSeconds"]) == (0.001, 0.25)
    assert (plan["latencyMargin"], plan["falseRollbackRate"]) == (0.05, 0.01)
    assert plan["enabled"] is False
    assert plan["paused"] is False
    assert plan["ready"] is False
    changed = client.put(
        PLAN,
        headers=admin.headers,
        json={
            "stages": [100, 5, 25],
            "minStageSeconds": 30,
            "autoAdvance": True,
            "falseRollbackRate": 0.05,
            "latencyMargin": 0.02,
            "enabled": True,
        },
    )
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert body["stages"] == [0, 5, 25, 100]
    assert body["minStageSeconds"] == 30
    assert body["autoAdvance"] is True
    assert (body["falseRollbackRate"], body["latencyMargin"]) == (0.05, 0.02)
    assert body["minCompletions"] == 50  # untouched
    assert body["updatedBy"] == admin.email
    assert client.get(PLAN, headers=admin.headers).get_json() == body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stages": [0, 10, 10]}, "stages"),
        ({"stages": [0, 150]}, "stages.1"),
        ({"onFailure": "panic"}, "onFailure"),
        ({"minCompletions": -1}, "minCompletions"),
        ({"successRateMargin": 2}, "successRateMargin"),
        ({"falseRollbackRate": 0}, "falseRollbackRate"),
        ({"falseRollbackRate": 0.5}, "falseRollbackRate"),
        ({"falseRollbackRate": "1%"}, "falseRollbackRate"),
        ({"latencyMargin": -0.01}, "latencyMargin"),
        ({"enabled": "yes"}, "enabled"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_plan_is_refused_with_the_field_named(guarded, admin, body, field):
    client = guarded.test_client()

    def plan():  # a plan not yet stored is stamped at each request: compare the rest
        answer = client.get(PLAN, headers=admin.headers).get_json()
        return {k: v for k, v in answer.items() if k not in ("stageStartedAt", "updatedAt")}

    before = plan()
    answer = client.put(PLAN, headers=admin.headers, json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == field
    assert plan() == before  # nothing changed


def test_guard_routes_are_for_admins_only(guarded, auth):
    learner = auth.learner()
    client = guarded.test_client()
    assert client.get(PLAN).status_code == 401
    assert client.get(PLAN, headers=learner.headers).status_code == 403
    assert client.post(ADVANCE, headers=learner.headers, json=GO).status_code == 403
    assert client.get(EVALUATIONS, headers=learner.headers).status_code == 403


def test_advance_starts_from_zero_and_then_waits_for_a_ready_stage(guarded, admin):
    """From 0% product may start; from 10% only once the guard marked the stage ready."""
    client = guarded.test_client()
    started = client.post(ADVANCE, headers=admin.headers, json=GO)
    assert started.status_code == 200, started.get_json()
    assert started.get_json()["stagePercentage"] == 10
    assert client.get("/api/v1/admin/rollout", headers=admin.headers).get_json()["percentage"] == 10
    refused = client.post(ADVANCE, headers=admin.headers, json=GO)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "stage_not_ready"
    with guarded.app_context():  # what the guard does when every check passed
        db.session.get(RolloutPlan, "verified-progress-path").ready = True
        db.session.commit()
    moved = client.post(ADVANCE, headers=admin.headers, json=GO)
    assert moved.status_code == 200
    assert moved.get_json()["stagePercentage"] == 100
    assert moved.get_json()["ready"] is False
    last = client.post(ADVANCE, headers=admin.headers, json=GO)
    assert last.status_code == 409
    assert "last stage" in last.get_json()["error"]["message"]
    history = client.get("/api/v1/admin/rollout/history", headers=admin.headers).get_json()
    assert [(c["percentage"], c["changedBy"]) for c in history["changes"]] == [
        (100, admin.email),
        (10, admin.email),
    ]


def test_a_paused_plan_does_not_advance_until_resumed(guarded, admin):
    client = guarded.test_client()
    client.put(PLAN, headers=admin.headers, json={"paused": True})
    refused = client.post(ADVANCE, headers=admin.headers, json=GO)
    assert refused.status_code == 409
    assert "paused" in refused.get_json()["error"]["message"]
    client.put(PLAN, headers=admin.headers, json={"paused": False})
    assert client.post(ADVANCE, headers=admin.headers, json=GO).status_code == 200


def test_a_person_moving_the_rollout_moves_the_plans_stage(guarded, admin):
    """The guard follows product to another stage of the plan; that stage's clock starts
    with the move (the move updates a stored plan), never after the guard's evaluation."""
    client = guarded.test_client()
    client.put(PLAN, headers=admin.headers, json={"enabled": True})
    before_move = datetime.now(UTC).replace(microsecond=0)
    client.put(
        "/api/v1/admin/rollout", headers=admin.headers, json={"percentage": 10, "reason": "by hand"}
    )
    with prometheus_at(guarded, f"http://127.0.0.1:{free_port()}"), guarded.app_context():
        run = guard.evaluate()
    assert (run.evaluation.stage, run.evaluation.percentage) == (1, 10)
    plan = client.get(PLAN, headers=admin.headers).get_json()
    assert (plan["stage"], plan["stagePercentage"], plan["ready"]) == (1, 10, False)
    started = datetime.fromisoformat(plan["stageStartedAt"])
    assert before_move <= started <= run.evaluation.at


def test_the_command_line_prints_and_changes_the_plan(guarded):
    runner = guarded.test_cli_runner()
    shown = runner.invoke(args=["rollout", "plan"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["stages"] == [0, 10, 100]
    changed = runner.invoke(
        args=[
            "rollout",
            "plan",
            "--stages",
            "0,20,100",
            "--min-stage-seconds",
            "5",
            "--min-completions",
            "3",
            "--min-access-checks",
            "7",
            "--auto-advance",
            "--on-failure",
            "pause",
            "--false-rollback-rate",
            "0.05",
            "--latency-margin",
            "0.1",
            "--enable",
        ]
    )
    assert changed.exit_code == 0, changed.output
    plan = json.loads(changed.output)
    assert plan["stages"] == [0, 20, 100]
    assert plan["minStageSeconds"] == 5
    assert (plan["minCompletions"], plan["minAccessChecks"]) == (3, 7)
    assert plan["autoAdvance"] is True
    assert plan["onFailure"] == "pause"
    assert (plan["falseRollbackRate"], plan["latencyMargin"]) == (0.05, 0.1)
    assert plan["enabled"]
    assert plan["updatedBy"].startswith("cli:")
    bad = runner.invoke(args=["rollout", "plan", "--stages", "0,x"])
    assert bad.exit_code != 0
    assert "--stages" in bad.output
    for option, value in (("--false-rollback-rate", "0"), ("--latency-margin", "2")):
        refused = runner.invoke(args=["rollout", "plan", option, value])
        assert refused.exit_code != 0
        assert option in refused.output
    assert json.loads(runner.invoke(args=["rollout", "plan"]).output) == plan
    no_prometheus = runner.invoke(args=["rollout", "guard", "--once"])
    assert no_prometheus.exit_code != 0
    assert "PROMETHEUS_URL" in no_prometheus.output
    assert runner.invoke(args=["rollout", "evaluations"]).output == ""


def test_the_admin_page_has_the_guard_section_and_script(guarded):
    page = guarded.test_client().get("/admin/rollout").get_data(as_text=True)
    assert 'id="guard"' in page
    assert 'aria-labelledby="guard-h"' in page
    assert "guard.js" in page
    assert '<label for="guard-stages">' in page
    assert '<label for="guard-latency-margin">' in page
    assert '<label for="guard-false-rollback">' in page
    with guarded.test_client().get("/static/guard.js") as script:
        assert script.status_code == 200


def test_the_api_and_the_command_line_say_what_the_test_found(guarded, admin, monkeypatch):
    """An evaluation keeps each test's statistic, bound and evidence: the API returns them
    (a chart draws the bound over time from them), and the command line prints the
    explanation in words."""
    monkeypatch.setattr(
        evaluation, "read_figures", lambda *a, **k: figures(verified=(19_000, 1_000, 80_000))
    )
    with prometheus_at(guarded, "http://prometheus.invalid"), guarded.app_context():
        guard.update_plan({"enabled": True}, "tests")
        guard.advance_stage("tests", "tests: next stage")
        run = guard.evaluate()
    assert run.evaluation.decision == "rollback"
    client = guarded.test_client()
    (kept,) = client.get(EVALUATIONS, headers=admin.headers).get_json()["evaluations"]
    rate = check_named(kept["checks"], "completion_success_rate")
    said = (
        "verified success rate 95% vs 100%: worse by more than 0.1 point with 99% confidence "
        "after 220,000 completions"
    )
    assert rate["status"] == "fail"
    assert rate["detail"] == said
    assert said in kept["reason"]
    assert rate["test"]["verdict"] == "worse"
    assert rate["test"]["statistic"] == pytest.approx(0.05)
    assert 0.001 < rate["test"]["lower"] < 0.05 < rate["test"]["upper"]
    assert (rate["test"]["margin"], rate["test"]["confidence"]) == (0.001, 0.99)
    assert rate["test"]["evidence"] == 220_000
    text = guarded.test_cli_runner().invoke(args=["rollout", "evaluations", "--format", "text"])
    assert said in text.output
    assert "mSPRT: difference +5.0000%" in text.output
