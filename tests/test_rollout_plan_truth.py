"""The rollout plan as the admin page and the API show it tells where the rollout really is:
a plan nobody stored has no start time, and a person's move to another stage moves the plan."""

from __future__ import annotations

PLAN = "/api/v1/admin/rollout/plan"
ROLLOUT = "/api/v1/admin/rollout"


def test_a_plan_not_yet_stored_has_no_start_time(client, auth):
    admin = auth.learner(admin=True)
    first = client.get(PLAN, headers=admin.headers).get_json()
    second = client.get(PLAN, headers=admin.headers).get_json()
    assert first == second  # nothing in it is the time of the request
    assert (first["stage"], first["stagePercentage"]) == (0, 0)
    assert first["stageStartedAt"] is None
    assert (first["updatedAt"], first["updatedBy"]) == (None, None)


def test_setting_100_percent_by_hand_shows_the_last_stage_without_a_stored_plan(client, auth):
    admin = auth.learner(admin=True)
    moved = client.put(
        ROLLOUT, json={"percentage": 100, "reason": "all in"}, headers=admin.headers
    ).get_json()
    plan = client.get(PLAN, headers=admin.headers).get_json()
    assert (plan["stage"], plan["stagePercentage"]) == (2, 100)
    assert plan["stageStartedAt"] == moved["updatedAt"]  # the stage began with that change


def test_a_stored_plan_follows_a_person_moving_the_rollout(client, auth):
    admin = auth.learner(admin=True)
    stored = client.put(PLAN, json={"minStageSeconds": 60}, headers=admin.headers).get_json()
    assert (stored["stage"], stored["stagePercentage"]) == (0, 0)
    client.put(ROLLOUT, json={"percentage": 10, "reason": "start"}, headers=admin.headers)
    plan = client.get(PLAN, headers=admin.headers).get_json()
    assert (plan["stage"], plan["stagePercentage"], plan["ready"]) == (1, 10, False)
    assert plan["stageStartedAt"] > stored["stageStartedAt"]
    client.put(ROLLOUT, json={"percentage": 55, "reason": "off plan"}, headers=admin.headers)
    off = client.get(PLAN, headers=admin.headers).get_json()
    assert off["stagePercentage"] == 10  # 55 is no stage: the plan stays where it was
