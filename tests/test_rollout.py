"""The percentage flag and rollout control: embedded flags in our database, and a real
Unleash server started by the test."""

import logging
import time
import uuid

import pytest

from progress.flags import flag_gate
from progress.paths import path_for_learner

from .support.apps import set_rollout
from .support.unleash_server import create_rollout_flag, running_unleash
from .test_auth_and_admin import assert_history_is_a_chain, change_concurrently

SYNTHETIC = [uuid.uuid5(uuid.NAMESPACE_URL, f"learner-{n}") for n in range(5000)]
ROLLOUT = "/api/v1/admin/rollout"


def verified_share(app) -> tuple[float, list[str]]:
    with app.app_context():
        paths = [path_for_learner(learner) for learner in SYNTHETIC]
    return paths.count("verified") / len(paths), paths


def wait_for_percentage(app, percentage: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with app.app_context():
        flag_gate().client()  # made on first use in each worker
        while flag_gate().percentage() != percentage:
            assert time.monotonic() < deadline, f"flag never reached {percentage}%"
            time.sleep(0.1)


def put_rollout(client, admin, percentage, reason="test"):
    return client.put(
        ROLLOUT, headers=admin.headers, json={"percentage": percentage, "reason": reason}
    )


def test_embedded_percentages_split_learners_and_two_instances_agree(pg_app, make_pg_app, admin):
    """10% sends 10% ± 2 of 5,000 learners to the verified path, identically in a second
    instance that only learns of the change by its refresh; 0% none; 100% all."""
    other = make_pg_app(PROGRESS_FLAG_REFRESH_S=1)
    client = pg_app.test_client()
    for percentage, low, high in ((10, 0.08, 0.12), (100, 1.0, 1.0), (0, 0.0, 0.0)):
        response = put_rollout(client, admin, percentage, f"stage {percentage}")
        assert response.status_code == 200
        assert response.get_json()["percentage"] == percentage
        share, paths = verified_share(pg_app)  # the worker that made the change: at once
        assert low <= share <= high, share
        wait_for_percentage(other, percentage, timeout=5)
        assert verified_share(other)[1] == paths


def test_a_learner_is_served_by_the_path_the_flag_picks(pg_app, auth):
    learner = auth.learner()
    client = pg_app.test_client()
    url = "/api/v1/modules/basics/lessons/greetings/access"
    assert client.get(url, headers=learner.headers).headers["X-Progress-Path"] == "legacy"
    set_rollout(pg_app, 100)
    answer = client.get(url, headers=learner.headers)
    assert answer.headers["X-Progress-Path"] == "verified"
    assert answer.get_json()["path"] == "verified"


def test_rollout_routes_keep_every_change_and_refuse_bad_input(pg_app, admin, auth):
    client = pg_app.test_client()
    initial = client.get(ROLLOUT, headers=admin.headers).get_json()
    assert initial == {
        "flag": "verified-progress-path",
        "percentage": 0,
        "backend": "embedded",
        "updatedAt": None,
        "updatedBy": None,
    }
    put_rollout(client, admin, 10, "stage 1: 10%")
    changed = put_rollout(client, admin, 100, "all in").get_json()
    assert changed["percentage"] == 100
    assert changed["updatedBy"] == admin.email
    assert changed["updatedAt"].endswith("+00:00")

    for bad in (-1, 101, "50", True, None, 12.5):
        response = put_rollout(client, admin, bad)
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["field"] == "percentage"
    missing_reason = client.put(ROLLOUT, headers=admin.headers, json={"percentage": 5})
    assert missing_reason.get_json()["error"]["field"] == "reason"
    assert client.get(ROLLOUT, headers=admin.headers).get_json()["percentage"] == 100

    history = client.get(ROLLOUT + "/history", headers=admin.headers).get_json()["changes"]
    assert [(c["previousPercentage"], c["percentage"], c["reason"]) for c in history] == [
        (10, 100, "all in"),
        (0, 10, "stage 1: 10%"),
    ]

    learner = auth.learner()
    assert client.get(ROLLOUT, headers=learner.headers).status_code == 403
    assert put_rollout(client, learner, 0).status_code == 403
    assert client.get(ROLLOUT).status_code == 401
    assert client.get(ROLLOUT, headers=admin.headers).get_json()["percentage"] == 100


def test_rollout_cli_status_set_and_history(pg_app):
    import json

    runner = pg_app.test_cli_runner()
    assert json.loads(runner.invoke(args=["rollout", "status"]).output)["percentage"] == 0
    result = runner.invoke(args=["rollout", "set", "10", "--reason", "first stage"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["percentage"] == 10
    refused = runner.invoke(args=["rollout", "set", "150"])
    assert refused.exit_code != 0
    history = [
        json.loads(line) for line in runner.invoke(args=["rollout", "history"]).output.splitlines()
    ]
    assert [(h["percentage"], h["reason"]) for h in history] == [(10, "first stage")]
    assert history[0]["changedBy"].startswith("cli:")


def test_the_admin_page_offers_the_stages(pg_app):
    page = pg_app.test_client().get("/admin/rollout")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for stage in (0, 10, 100):
        assert f'data-stage="{stage}"' in html
    assert "admin-rollout.js" in html


def test_an_unreachable_flag_backend_serves_legacy_and_says_why(make_pg_app, auth, caplog):
    app = make_pg_app(UNLEASH_URL="http://127.0.0.1:9/api", UNLEASH_API_TOKEN="x")
    learner = auth.learner()
    with caplog.at_level(logging.WARNING, logger="progress.flags"):
        answer = app.test_client().get(
            "/api/v1/modules/basics/lessons/greetings/access", headers=learner.headers
        )
    assert answer.status_code == 200
    assert answer.headers["X-Progress-Path"] == "legacy"
    assert any("serving the legacy path" in r.getMessage() for r in caplog.records)
    assert app.test_client().get("/readyz").get_json()["checks"]["flags"].startswith("unavailable")


@pytest.mark.slow
def test_a_real_unleash_server_splits_learners_by_the_admin_route(make_pg_app, admin):
    with running_unleash() as server:
        create_rollout_flag(server, "verified-progress-path", percentage=0)
        app = make_pg_app(
            **server.service_settings,
            PROGRESS_FLAG_REFRESH_S=1,
        )
        client = app.test_client()
        assert client.get(ROLLOUT, headers=admin.headers).get_json()["backend"] == "unleash"
        for percentage, low, high in ((10, 0.08, 0.12), (100, 1.0, 1.0), (0, 0.0, 0.0)):
            response = put_rollout(client, admin, percentage, f"unleash {percentage}")
            assert response.status_code == 200, response.get_json()
            assert response.get_json()["percentage"] == percentage  # read back from Unleash
            wait_for_percentage(app, percentage)
            share, _ = verified_share(app)
            assert low <= share <= high, share
        history = client.get(ROLLOUT + "/history", headers=admin.headers).get_json()["changes"]
        assert [c["percentage"] for c in history] == [0, 100, 10]
        assert {c["backend"] for c in history} == {"unleash"}
        # Changes at once through two instances: Unleash's history chains as ours does.
        other = make_pg_app(
            **server.service_settings,
        )
        percentages = [(n * 37) % 101 for n in range(1, 13)]
        assert change_concurrently([app, other], admin, percentages) == [200] * 12
        assert_history_is_a_chain(app, 3 + 12)
