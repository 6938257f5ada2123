"""Auth and admin hardening: admin writes need a verified email, clock skew with the
identity provider is tolerated within PROGRESS_JWT_LEEWAY_S, concurrent rollout changes
keep a consistent history, and concurrent duplicate completions answer the real version."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from progress.extensions import db
from progress.models import RolloutChange, RolloutPlan

from .support.apps import SECRET, empty_learner_tables
from .support.tokens import token_minter

ROLLOUT = "/api/v1/admin/rollout"
ACCESS = "/api/v1/modules/basics/lessons/greetings/access"


def test_admin_writes_need_a_verified_email_and_reads_do_not(app, client, auth):
    admin = auth.learner(admin=True, verified=False)
    assert client.get(ROLLOUT, headers=admin.headers).status_code == 200
    assert client.get(ROLLOUT + "/plan", headers=admin.headers).status_code == 200
    writes = [
        client.put(ROLLOUT, headers=admin.headers, json={"percentage": 10, "reason": "x"}),
        client.put(ROLLOUT + "/plan", headers=admin.headers, json={"enabled": True}),
        client.post(ROLLOUT + "/advance", headers=admin.headers, json={"reason": "x"}),
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
    return token_minter(SECRET).sign(claims)


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
    time.sleep(3)  # the 2 s left of the leeway pass: the time is the behaviour, not a wait
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


def test_on_sqlite_a_duplicate_completion_racing_the_first_answers_the_real_version(
    sqlite_app_session, auth
):
    """Device A reads the learner's version, then (held here, between its two reads) device
    B completes the same lesson and commits. A then finds the lesson complete and must answer
    the version the database holds (1), not the one it read before B's commit (0). SQLite has
    no row lock to order the two; PostgreSQL's keeps B waiting."""
    app = sqlite_app_session
    learner = auth.learner()
    complete = "/api/v1/modules/basics/lessons/greetings/complete"
    app.test_client().get("/api/v1/progress", headers=learner.headers)  # the learner exists
    b_committed = threading.Event()
    held = threading.Event()

    def hold_a(_conn, _cursor, statement, *_args) -> None:
        reads_completions = statement.lstrip().startswith("SELECT lesson_progress.lesson_id")
        if threading.current_thread().name == "device-a" and reads_completions:
            held.set()
            b_committed.wait(10)

    answers: dict[str, tuple[int, int]] = {}

    def device(name: str) -> None:
        response = app.test_client().post(complete, headers=learner.headers)
        answers[name] = (response.status_code, response.get_json()["version"])

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", hold_a)
    try:
        a = threading.Thread(target=device, args=("a",), name="device-a")
        a.start()
        assert held.wait(10), "device A never reached its read of the completions"
        device("b")
        b_committed.set()
        a.join(10)
    finally:
        sa.event.remove(engine, "before_cursor_execute", hold_a)
        empty_learner_tables(app)
    assert answers == {"a": (200, 1), "b": (200, 1)}
