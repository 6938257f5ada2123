"""Bearer tokens shaped like Supabase's: every way to fail, and first-use creation."""

import time
import uuid

import jwt
import sqlalchemy as sa

from progress.extensions import db
from progress.models import User

from .support.apps import SECRET
from .support.tokens import MODE

ACCESS = "/api/v1/modules/basics/lessons/greetings/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**overrides):
    now = int(time.time())
    base = {
        "sub": str(uuid.uuid4()),
        "email": "someone@example.com",
        "email_verified": True,
        "aud": "authenticated",
        "role": "authenticated",
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_no_token_is_401_with_the_error_shape(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = client.get(ACCESS, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_signed_with_another_secret_is_401(client):
    token = jwt.encode(claims(), "not-the-secret-" + "y" * 40, algorithm="HS256")
    response = client.get(ACCESS, headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_an_expired_token_is_401(client, auth):
    # Expired beyond PROGRESS_JWT_LEEWAY_S (30 s): tests/test_auth_and_admin.py has the skew.
    response = client.get(ACCESS, headers=auth.learner(ttl_s=-60).headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_expired"


def test_unsigned_wrong_audience_and_malformed_claims_are_401(client):
    unsigned = jwt.encode(claims(), None, algorithm="none")
    cases = [
        unsigned,
        jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
        jwt.encode(claims(sub="not-a-uuid"), SECRET, algorithm="HS256"),
        jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        jwt.encode(claims(email_verified="yes"), SECRET, algorithm="HS256"),
        jwt.encode(claims(role="anon"), SECRET, algorithm="HS256"),
        "definitely.not.a.jwt",
    ]
    for token in cases:
        assert client.get(ACCESS, headers=bearer(token)).status_code == 401, token


def test_an_unverified_email_may_read_but_not_write(client, auth):
    learner = auth.learner(verified=False)
    assert client.get(ACCESS, headers=learner.headers).status_code == 200
    response = client.post(COMPLETE, headers=learner.headers)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "email_unverified"


def test_a_valid_token_for_an_unseen_learner_creates_them_on_first_use(app, client, auth):
    learner = auth.learner()
    with app.app_context():
        assert db.session.get(User, learner.id) is None
    assert client.get(ACCESS, headers=learner.headers).status_code == 200
    with app.app_context():
        user = db.session.get(User, learner.id)
        assert user.email == learner.email
        assert user.email_verified is True


def test_a_learner_never_sees_another_learners_progress(client, auth):
    alice, bob = auth.learner(), auth.learner()
    assert client.post(COMPLETE, headers=alice.headers).status_code == 200
    bob_progress = client.get("/api/v1/progress", headers=bob.headers).get_json()
    assert bob_progress["completed"] == []
    assert bob_progress["version"] == 0
    bob_access = client.get(
        "/api/v1/modules/basics/lessons/introductions/access", headers=bob.headers
    )
    assert bob_access.get_json()["accessible"] is False
    alice_progress = client.get("/api/v1/progress", headers=alice.headers).get_json()
    assert [c["lessonId"] for c in alice_progress["completed"]] == ["greetings"]


def test_cli_creates_users_and_issues_tokens_that_the_api_accepts(app, client):
    import json

    runner = app.test_cli_runner()
    if MODE == "jwks":  # the service holds no private key: it makes neither users nor tokens
        refused = runner.invoke(args=["users", "create", "--email", "cli@example.com"])
        assert refused.exit_code != 0
        assert "identity provider" in refused.output
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
        return
    created = runner.invoke(args=["users", "create", "--email", "cli@example.com"])
    assert created.exit_code == 0, created.output
    user = json.loads(created.output)
    assert set(user) == {"id", "email", "token"}
    assert user["email"] == "cli@example.com"
    assert client.get(ACCESS, headers=bearer(user["token"])).status_code == 200

    issued = runner.invoke(args=["token", "issue", user["id"], "--admin"])
    assert issued.exit_code == 0
    decoded = jwt.decode(
        issued.output.strip(), SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert decoded["sub"] == user["id"]
    assert decoded["roles"] == ["admin"]

    unverified = json.loads(
        runner.invoke(args=["users", "create", "--email", "u@example.com", "--unverified"]).output
    )
    assert client.post(COMPLETE, headers=bearer(unverified["token"])).status_code == 403

    missing = runner.invoke(args=["token", "issue", str(uuid.uuid4())])
    assert missing.exit_code != 0
    assert "no user" in missing.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 2
