"""Tokens as an identity provider with asymmetric keys issues them: a real key server on
127.0.0.1 publishes a JWK set (ES256 and RS256 keys made here), the service fetches it with
PyJWT's client, and every attack on the check is answered 401. Also: admins and verified
emails read from the provider's claims, and lock receipts across a receipt key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask

from harness.identity import ISSUER, KeyServer, SigningKey, TokenMinter
from progress.api.fast_access import AccessFastPath
from progress.auth import TokenRules
from progress.config import ConfigError, load_settings

from .support.apps import SECRET, build_app, dispose, empty_learner_tables, migrate_and_seed
from .support.tokens import token_minter

ACCESS = "/api/v1/modules/basics/lessons/greetings/access"
LOCKED = "/api/v1/modules/basics/lessons/introductions/access"
REPORT = "/api/v1/events/lock-screen"
ROLLOUT = "/api/v1/admin/rollout"
PROGRESS = "/api/v1/progress"  # Flask's alone (the access check's fast path hands a 401 on)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated, seeded SQLite file the module's apps share (each with its own keys)."""
    tmp = tmp_path_factory.mktemp("jwks-db")
    url = f"sqlite:///{tmp / 'progress.db'}"
    app = build_app(url, tmp)
    migrate_and_seed(app)
    dispose(app)
    return url


@pytest.fixture
def make_app(database: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """An instance of the service on the module's database, with settings of its own."""
    built: list[Flask] = []

    def make(**settings: object) -> Flask:
        app = build_app(database, tmp_path, **settings)
        built.append(app)
        return app

    yield make
    if built:
        empty_learner_tables(built[0])
    for app in built:
        dispose(app)


@pytest.fixture
def keys() -> Iterator[KeyServer]:
    """A key server publishing one ES256 and one RS256 key."""
    with KeyServer([SigningKey.make("ES256"), SigningKey.make("RS256")]) as server:
        yield server


def jwks_settings(server: KeyServer, **more: object) -> dict[str, object]:
    return {"PROGRESS_JWT_JWKS_URL": server.url, "PROGRESS_JWT_ISSUER": ISSUER, **more}


def mint(key: SigningKey, **overrides: Any) -> str:
    """A learner's token signed by `key`, with claims changed or (None) removed."""
    claims = _claims(**overrides)
    return key.sign({k: v for k, v in claims.items() if v is not None})


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    user = uuid.uuid4()
    claims = {
        "sub": str(user),
        "email": f"{user.hex[:8]}@example.com",
        "email_verified": True,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    return {**claims, **overrides}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status(app: Flask, token: str, path: str = ACCESS) -> int:
    return app.test_client().get(path, headers=bearer(token)).status_code


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes) -> str:
    """A token HMAC-signed by hand (PyJWT itself refuses a public key as an HMAC secret)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def readiness(app: Flask) -> tuple[int, str]:
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json()["checks"]["identity_keys"]


def test_tokens_signed_with_each_published_key_are_accepted(make_app, keys):
    """An ES256 and an RS256 token from the provider's key set both open the lesson, and the
    learner is created from the token's claims."""
    app = make_app(**jwks_settings(keys))
    for key in keys.keys:
        answer = app.test_client().get(ACCESS, headers=bearer(mint(key)))
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["accessible"] is True
    assert keys.fetches == 1  # one key set fetched, then kept


def test_a_rotated_in_key_is_fetched_once_and_an_unknown_one_after_that_is_401(make_app, keys):
    """A token with a key id the cached set lacks makes one refetch that finds the new key;
    its next token needs none; a key id the provider still doesn't publish is 401."""
    app = make_app(**jwks_settings(keys, PROGRESS_JWT_JWKS_REFETCH_S=0))
    assert status(app, mint(keys.keys[0]), PROGRESS) == 200
    assert keys.fetches == 1
    rotated = SigningKey.make("ES256")
    keys.keys.append(rotated)
    assert status(app, mint(rotated), PROGRESS) == 200
    assert status(app, mint(rotated), PROGRESS) == 200
    assert keys.fetches == 2
    stranger = SigningKey.make("ES256")  # never published
    answer = app.test_client().get(PROGRESS, headers=bearer(mint(stranger)))
    assert answer.status_code == 401
    assert "key id" in answer.get_json()["error"]["message"]
    assert keys.fetches == 3


def test_made_up_key_ids_cost_one_fetch_per_refetch_period(make_app, keys):
    """Tokens naming key ids nobody publishes are all 401, and within the refetch period
    they make no fetch beyond the first key set's."""
    app = make_app(**jwks_settings(keys, PROGRESS_JWT_JWKS_REFETCH_S=60))
    assert status(app, mint(keys.keys[0])) == 200
    for _ in range(20):
        assert status(app, mint(SigningKey.make("ES256"))) == 401
    assert keys.fetches == 1


def test_a_key_server_that_goes_down_keeps_cached_keys_working(make_app, keys):
    """With the key server down after its set expired, new tokens signed with a known key
    are still accepted, /readyz says degraded (still ready), and it is ok again once the
    server is back."""
    app = make_app(**jwks_settings(keys, PROGRESS_JWT_JWKS_TTL_S=1, PROGRESS_JWT_JWKS_REFETCH_S=1))
    assert status(app, mint(keys.keys[0])) == 200
    assert readiness(app)[1].startswith("ok")
    keys.stop()
    deadline = time.monotonic() + 15
    while not readiness(app)[1].startswith("degraded"):  # once the set expired and a fetch failed
        assert status(app, mint(keys.keys[0])) == 200
        assert time.monotonic() < deadline, readiness(app)
        time.sleep(0.1)
    code, check = readiness(app)
    assert code == 200
    assert "ConnectionError" in check, check
    for key in keys.keys:
        assert status(app, mint(key)) == 200
    assert status(app, mint(SigningKey.make("ES256"))) == 401
    keys.start()
    while not readiness(app)[1].startswith("ok"):
        assert status(app, mint(keys.keys[1])) == 200
        assert time.monotonic() < deadline, readiness(app)
        time.sleep(0.1)


def test_a_key_server_that_never_answered_leaves_the_service_unready(make_app, keys):
    """A JWKS URL where nothing answers: /readyz is 503 naming the keys, tokens are 401."""
    url = keys.url
    keys.stop()
    app = make_app(PROGRESS_JWT_JWKS_URL=url, PROGRESS_JWT_ISSUER=ISSUER)
    code, check = readiness(app)
    assert code == 503
    assert check.startswith("unavailable"), check
    assert status(app, mint(keys.keys[0])) == 401


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("hs256_too", [False, True], ids=["jwks-only", "jwks-and-secret"])
def test_attacks_on_the_token_check_are_401(make_app, keys, hs256_too):
    """Algorithm confusion (HS256 signed with the public key, as PEM or as the JWK's JSON),
    alg none, a wrong issuer or audience, no issuer, no kid, a published kid on a token
    signed by another key, an RS256 token naming the ES256 key, and a key embedded in the
    header: each is 401, whether or not HS256 with the secret is also accepted."""
    more = {"PROGRESS_JWT_ALGORITHMS": "ES256,RS256,HS256"} if hs256_too else {}
    app = make_app(**jwks_settings(keys, **more))
    es, rs = keys.keys
    claims = _claims()
    attacker = SigningKey.make("ES256", kid=es.kid)
    embedded = SigningKey.make("ES256")
    attacks = {
        "HS256 with the ES public key as PEM": hand_signed(
            {"alg": "HS256", "typ": "JWT", "kid": es.kid}, claims, public_pem(es)
        ),
        "HS256 with the RS public key as PEM": hand_signed(
            {"alg": "HS256", "typ": "JWT", "kid": rs.kid}, claims, public_pem(rs)
        ),
        "HS256 with the JWK's JSON": hand_signed(
            {"alg": "HS256", "kid": es.kid}, claims, json.dumps(es.public_jwk()).encode()
        ),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": es.kid}),
        "wrong issuer": mint(es, iss="https://evil.example.com/auth/v1"),
        "no issuer": mint(es, iss=None),
        "wrong audience": mint(es, aud="someone-else"),
        "expired": mint(es, exp=int(time.time()) - 120),
        "no kid": jwt.encode(claims, es.private, algorithm="ES256"),
        "a published kid, another key": attacker.sign(claims),
        "RS256 naming the ES256 key": jwt.encode(
            claims, rs.private, algorithm="RS256", headers={"kid": es.kid}
        ),
        "its own key in the header": jwt.encode(
            claims,
            embedded.private,
            algorithm="ES256",
            headers={"kid": embedded.kid, "jwk": embedded.public_jwk()},
        ),
        "an anon role": mint(es, role="anon"),
    }
    for name, token in attacks.items():
        answer = app.test_client().get(ACCESS, headers=bearer(token))
        assert answer.status_code == 401, (name, answer.get_json())
        assert answer.get_json()["error"]["code"] in ("invalid_token", "token_expired"), name
    assert status(app, mint(es)) == 200  # the genuine article still gets in


def test_hs256_and_jwks_side_by_side(make_app, keys):
    """Moving a project to asymmetric keys: with HS256 allowed too, tokens signed with the
    legacy secret and with the published keys are both accepted; by default only the keys."""
    hs = TokenMinter(secret=SECRET, issuer=ISSUER)
    legacy = hs.mint(uuid.uuid4(), "legacy@example.com")
    legacy_with_iss = jwt.encode(
        {**jwt.decode(legacy, options={"verify_signature": False}), "iss": ISSUER}, SECRET
    )
    both = make_app(**jwks_settings(keys, PROGRESS_JWT_ALGORITHMS="ES256,RS256,HS256"))
    assert status(both, legacy_with_iss) == 200
    assert status(both, mint(keys.keys[0])) == 200
    keys_only = make_app(**jwks_settings(keys))
    assert status(keys_only, legacy_with_iss) == 401


def test_the_fast_path_checks_jwks_tokens_itself(make_app, keys):
    """The access check's fast path answers a JWKS token without Flask, and hands a bad
    one to Flask, which answers 401."""
    app = make_app(**jwks_settings(keys))
    fast = app.wsgi_app
    assert isinstance(fast, AccessFastPath)
    answered_by_flask: list[str] = []
    flask_wsgi = fast.flask_wsgi

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answered_by_flask.append(environ["PATH_INFO"])
        return flask_wsgi(environ, start_response)

    fast.flask_wsgi = counted  # type: ignore[method-assign]
    client = app.test_client()
    good = client.get(ACCESS, headers=bearer(mint(keys.keys[1])))
    assert good.status_code == 200
    assert good.get_json()["accessible"] is True
    assert answered_by_flask == []
    bad = client.get(ACCESS, headers=bearer(mint(keys.keys[1], iss="https://evil.example.com")))
    assert bad.status_code == 401
    assert answered_by_flask == [ACCESS]


def test_admins_and_verified_emails_come_from_the_configured_claims(make_app, keys):
    """With PROGRESS_ADMIN_CLAIM=app_metadata.roles and the email-verified rule at
    user_metadata.email_verified, those claims decide; a top-level `roles` no longer makes
    an admin, and a provider without a `role` claim is served when the learner rule is off."""
    settings = jwks_settings(
        keys,
        PROGRESS_ADMIN_CLAIM="app_metadata.roles",
        PROGRESS_ADMIN_CLAIM_VALUE="progress-admin",
        PROGRESS_EMAIL_VERIFIED_CLAIM="user_metadata.email_verified",
        PROGRESS_LEARNER_CLAIM="",
    )
    app = make_app(**settings)
    es = keys.keys[0]
    admin = mint(es, role=None, app_metadata={"roles": ["progress-admin"]})
    not_admin = mint(es, role=None, roles=["progress-admin", "admin"])
    assert status(app, admin, ROLLOUT) == 200
    assert status(app, not_admin, ROLLOUT) == 403
    complete = "/api/v1/modules/basics/lessons/greetings/complete"
    verified = mint(es, email_verified=None, user_metadata={"email_verified": True})
    unverified = mint(es, email_verified=True, user_metadata={"email_verified": False})
    assert app.test_client().post(complete, headers=bearer(verified)).status_code == 200
    assert app.test_client().post(complete, headers=bearer(unverified)).status_code == 403
    rules = TokenRules.from_config(app.config)  # the minter places claims where rules read
    minted = TokenMinter(key=es, rules=rules).mint(uuid.uuid4(), "m@example.com", admin=True)
    assert status(app, minted, ROLLOUT) == 200


def test_receipts_signed_before_a_receipt_key_rotation_are_accepted_until_removed(make_app):
    """A receipt signed with the old key is accepted after the new key is put first, and
    refused once the old key is dropped; new receipts are signed with the new key."""
    old, new = "old-receipt-key-" + "o" * 32, "new-receipt-key-" + "n" * 32
    before = make_app(PROGRESS_RECEIPT_KEYS=old)
    rotated = make_app(PROGRESS_RECEIPT_KEYS=f"{new},{old}")
    after = make_app(PROGRESS_RECEIPT_KEYS=new)
    token = token_minter(SECRET).mint(uuid.uuid4(), "r@example.com")  # the suite's mode
    intro = {"moduleId": "basics", "lessonId": "introductions"}

    def receipt(app: Flask) -> str:
        answer = app.test_client().get(LOCKED, headers=bearer(token)).get_json()
        assert answer["accessible"] is False
        return answer["lockReceipt"]

    def report(app: Flask, lock_receipt: str) -> int:
        body = {**intro, "lockReceipt": lock_receipt}
        return app.test_client().post(REPORT, headers=bearer(token), json=body).status_code

    old_receipt = receipt(before)
    assert report(rotated, old_receipt) == 202  # accepted
    new_receipt = receipt(rotated)
    assert report(after, new_receipt) == 202
    assert report(before, new_receipt) == 400  # signed with the new key, not the old
    answer = after.test_client().post(
        REPORT, headers=bearer(token), json={**intro, "lockReceipt": receipt(before)}
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "lockReceipt"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"PROGRESS_JWT_JWKS_URL": "https://idp.example.com/jwks.json"},
            "PROGRESS_JWT_ISSUER is required",
        ),
        ({"PROGRESS_JWT_JWKS_URL": "file:///etc/passwd", "PROGRESS_JWT_ISSUER": ISSUER}, "http"),
        (
            {"PROGRESS_JWT_SECRET": SECRET, "PROGRESS_JWT_ALGORITHMS": "none"},
            "'none' is not an algorithm",
        ),
        (
            {"PROGRESS_JWT_SECRET": SECRET, "PROGRESS_JWT_ALGORITHMS": "RS256"},
            "set PROGRESS_JWT_JWKS_URL",
        ),
        (
            {
                "PROGRESS_JWT_JWKS_URL": "https://idp.example.com/jwks.json",
                "PROGRESS_JWT_ISSUER": ISSUER,
            },
            "PROGRESS_RECEIPT_KEYS is required",
        ),
        ({"PROGRESS_JWT_SECRET": SECRET, "PROGRESS_RECEIPT_KEYS": "short"}, "at least 32"),
        ({"PROGRESS_JWT_SECRET": SECRET, "PROGRESS_ADMIN_CLAIM": "app_metadata..roles"}, "dotted"),
    ],
)
def test_token_settings_that_cant_work_stop_production_at_start(tmp_path, settings, message):
    """Each token setting that would accept the wrong tokens, or none, stops start-up."""
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, settings)


def test_production_with_a_jwks_needs_no_token_secret(tmp_path):
    """Supabase with asymmetric keys: a JWKS, its issuer and receipt keys are enough."""
    config = load_settings(
        tmp_path,
        {
            "PROGRESS_JWT_JWKS_URL": "https://ref.supabase.co/auth/v1/.well-known/jwks.json",
            "PROGRESS_JWT_ISSUER": "https://ref.supabase.co/auth/v1",
            "PROGRESS_RECEIPT_KEYS": "k" * 32,
        },
    )
    assert config["PROGRESS_JWT_ALGORITHMS"] == ["ES256", "RS256"]
    assert config["PROGRESS_RECEIPT_KEYS"] == ["k" * 32]
    assert not (tmp_path / "dev-jwt-secret").exists()


def test_a_key_server_that_hangs_costs_one_bounded_wait(make_app, keys):
    """A key server that takes the connection and never answers: the first token waits at
    most the fetch timeout and is 401 (no key in hand), and the next ones within the refetch
    period don't wait on it again."""
    with socket.create_server(("127.0.0.1", 0)) as hung:  # listens, never answers
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/jwks.json"
        app = make_app(
            PROGRESS_JWT_JWKS_URL=url,
            PROGRESS_JWT_ISSUER=ISSUER,
            PROGRESS_JWT_JWKS_TIMEOUT_MS=500,
            PROGRESS_JWT_JWKS_REFETCH_S=60,
        )
        started = time.monotonic()
        assert status(app, mint(keys.keys[0]), PROGRESS) == 401
        first_s = time.monotonic() - started
        started = time.monotonic()
        for _ in range(5):
            assert status(app, mint(keys.keys[0]), PROGRESS) == 401
        again_s = time.monotonic() - started
    # Bounds, not speed: 0.5 s timeout -> 1.5 s allowed (3x). No further wait: five checks
    # that each waited again would take 2.5 s; 1.25 s is allowed (half of that, and 10x and
    # more what five checks in process take).
    assert first_s < 1.5, first_s
    assert again_s < 1.25, again_s
