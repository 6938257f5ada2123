"""Auth and admin hardening: admin writes need a verified email, clock skew with the
identity provider is tolerated within PROGRESS_JWT_LEEWAY_S, concurrent rollout changes
keep a consistent history, and concurrent duplicate completions answer the real version."""

from __future__ import annotations

import threading
import time
import uuid

import jwt
import pytest
import sqlalchemy as sa

from progress.extensions import db
from progress.models import ProgressVersion, RolloutChange, RolloutPlan

from .conftest import SECRET

ROLLOUT = "/api/v1/admin/rollout"
ROUNDS = 10
ACCESS = "/api/v1/modules/basics/lessons/greetings/access"


def test_admin_writes_need_a_verified_email_and_reads_do_not(app, client, auth):
    admin = auth.learner(admin=True, verified=False)
    assert client.get(ROLLOUT, headers=admin.headers).status_code == 200
    assert client.get(ROLLOUT + "/plan", headers=admin.headers).status_code == 200
    writes = [
        client.put(ROLLOUT, headers=admin.headers, json={"percentage": 10, "reason": "x"}),
        client.put(ROLLOUT + "/plan", headers=admin.headers, json={"enabled": True}),
        client.post(ROLLOUT + "/advance", headers=admin.headers),
    ]
    for response in writes:
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "email_unverified"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RolloutChange)) == 0
        plan = db.session.scalar(sa.select(RolloutPlan))
        assert plan is None or plan.enabled is False
        db.session.rollback()
    assert client.get(ROLLOUT, headers=admin.headers).get_json()["percentage"] == 0


def token(**shift_s: int) -> str:
    """A learner's token whose iat, nbf and exp are moved by the given seconds from now."""
    now = int(time.time())
    user_id = uuid.uuid4()
    claims = {
        "sub": str(user_id),
        "email": f"{user_id.hex[:8]}@example.com",
        "email_verified": True,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now + shift_s.get("iat", 0),
        "nbf": now + shift_s.get("nbf", 0),
        "exp": now + shift_s.get("exp", 600),
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("shift", "status"),
    [
        ({"iat": 20}, 200),  # the identity provider's clock is 20 s ahead
        ({"nbf": 20}, 200),
        ({"exp": -20}, 200),  # ours is 20 s ahead of it
        ({"iat": 45, "nbf": 45}, 401),  # beyond the 30 s leeway
        ({"exp": -45}, 401),
    ],
)
def test_clock_skew_within_the_leeway_is_tolerated(client, shift, status):
    response = client.get(ACCESS, headers={"Authorization": f"Bearer {token(**shift)}"})
    assert response.status_code == status, response.get_json()


def test_a_cached_token_expires_after_its_leeway(client):
    bearer = {"Authorization": f"Bearer {token(exp=-28)}"}
    assert client.get(ACCESS, headers=bearer).status_code == 200  # decoded, then cached
    time.sleep(3)
    expired = client.get(ACCESS, headers=bearer)
    assert expired.status_code == 401
    assert expired.get_json()["error"]["code"] == "token_expired"


def change_concurrently(apps, admin, percentages) -> list[int]:
    """Each percentage from its own thread, spread over `apps`, all released at once."""
    start = threading.Barrier(len(percentages))
    statuses: list[int] = []

    def change(app, percentage) -> None:
        client = app.test_client()
        start.wait(30)
        body = {"percentage": percentage, "reason": f"to {percentage}"}
        statuses.append(client.put(ROLLOUT, headers=admin.headers, json=body).status_code)

    threads = [
        threading.Thread(target=change, args=(apps[i % len(apps)], p))
        for i, p in enumerate(percentages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def assert_history_is_a_chain(app, changes: int) -> None:
    with app.app_context():
        rows = db.session.execute(
            sa.select(RolloutChange.previous_percentage, RolloutChange.percentage).order_by(
                RolloutChange.id
            )
        ).all()
        db.session.rollback()
    assert len(rows) == changes
    previous = 0
    for row in rows:
        assert row.previous_percentage == previous, (rows, previous)
        previous = row.percentage


def test_concurrent_rollout_changes_keep_a_consistent_history(request, app, auth):
    """30 changes at once (on PostgreSQL through three instances, as workers would): every
    history row's previous percentage is the percentage of the row before it."""
    admin = auth.learner(admin=True)
    apps = [app]
    if request.node.callspec.params["app"] == "postgresql":
        make = request.getfixturevalue("make_pg_app")
        apps += [make(), make()]
    percentages = [(n * 37) % 101 for n in range(1, 31)]
    assert change_concurrently(apps, admin, percentages) == [200] * 30
    assert_history_is_a_chain(app, 30)


def test_concurrent_duplicate_completions_answer_the_real_version(app, auth):
    """Eight devices complete the same lesson at once, ten times over: every answer is
    200 with the version the database holds (one bump, whoever wins)."""
    # SQLite has no row lock: the version read at the start could predate the winner's.
    complete = "/api/v1/modules/basics/lessons/greetings/complete"
    for _ in range(ROUNDS):
        learner = auth.learner()
        start = threading.Barrier(8)
        versions: list[tuple[int, int]] = []

        def device(learner=learner, start=start, versions=versions) -> None:
            client = app.test_client()
            start.wait(30)
            response = client.post(complete, headers=learner.headers)
            versions.append((response.status_code, response.get_json().get("version")))

        threads = [threading.Thread(target=device) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with app.app_context():
            stored = db.session.scalar(
                sa.select(ProgressVersion.version).where(ProgressVersion.user_id == learner.id)
            )
            db.session.rollback()
        assert stored == 1
        assert versions == [(200, 1)] * 8
