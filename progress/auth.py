"""Bearer JWTs shaped like Supabase access tokens (HS256, aud=authenticated)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from flask import current_app, request

from . import logs, store
from .errors import ApiError
from .worker import WorkerState, worker_state

AUDIENCE = "authenticated"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: uuid.UUID
    email: str
    email_verified: bool
    is_admin: bool


def issue_token(
    user_id: uuid.UUID,
    email: str,
    *,
    secret: str,
    email_verified: bool = True,
    admin: bool = False,
    ttl_s: int = 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "email": email,
        "email_verified": email_verified,
        "aud": AUDIENCE,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_s,
    }
    if admin:
        claims["roles"] = ["admin"]
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(token: str, secret: str, leeway_s: int = 0) -> Identity:
    """Check signature, expiry, audience and claim types; 401 on anything wrong."""
    return _decode(token, secret, leeway_s)[0]


def _decode(token: str, secret: str, leeway_s: int) -> tuple[Identity, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
            leeway=leeway_s,  # clock skew with the identity provider: iat, nbf and exp
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "The access token has expired.") from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "invalid_token", f"The access token is invalid: {exc}.") from None
    try:
        user_id = uuid.UUID(claims["sub"])
    except (ValueError, TypeError, AttributeError):
        raise ApiError(401, "invalid_token", "The token's sub is not a UUID.") from None
    email, verified = claims.get("email"), claims.get("email_verified", False)
    roles = claims.get("roles", [])
    if claims.get("role") != "authenticated" or not isinstance(email, str):
        raise ApiError(401, "invalid_token", "The token lacks role or email.")
    if not isinstance(verified, bool) or not isinstance(roles, list):
        raise ApiError(401, "invalid_token", "The token's claims have the wrong types.")
    if len(email) > 320 or not email.isprintable():
        raise ApiError(401, "invalid_token", "The token's email is not an address.")
    return Identity(user_id, email, verified, "admin" in roles), int(claims["exp"])


def _verified_identity(token: str, state: WorkerState) -> Identity:
    """Decode once per token and process: a signature checked once stays checked, and
    the expiry is still enforced on every use."""
    leeway_s = current_app.config["PROGRESS_JWT_LEEWAY_S"]
    known = state.verified_tokens.get(token)
    if known is None:
        known = _decode(token, current_app.config["PROGRESS_JWT_SECRET"], leeway_s)
        state.verified_tokens.put(token, known)
    identity, expires = known
    if expires + leeway_s <= time.time():
        raise ApiError(401, "token_expired", "The access token has expired.")
    return identity


def authenticate(*, write: bool = False, admin: bool = False) -> Identity:
    """The request's identity; creates the learner on first sight.

    401 without a valid token; 403 for writes by an unverified email and for non-admins
    on admin routes.
    """
    state = worker_state()  # one context look-up for the whole check
    identity = identify(request.headers.get("Authorization", ""), state, write=write, admin=admin)
    ensure_learner(identity, state)
    return identity


def identify(
    authorization: str, state: WorkerState, *, write: bool = False, admin: bool = False
) -> Identity:
    """Who an Authorization header speaks for, and whether they may do this; reads nothing
    but the token (401 and 403 as `authenticate`)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "An Authorization: Bearer token is required.")
    identity = _verified_identity(token.strip(), state)
    logs.bind_learner(str(identity.user_id))
    if admin and not identity.is_admin:
        raise ApiError(403, "forbidden", "This route is for admins.")
    if write and not identity.email_verified:
        raise ApiError(403, "email_unverified", "Verify your email address before saving progress.")
    return identity


def ensure_learner(identity: Identity, state: WorkerState) -> None:
    """The learner's row, created on first sight (once per identity and process)."""
    known = state.known_identities
    key = (identity.user_id, identity.email, identity.email_verified)
    if known.get(key) is None:
        store.ensure_user(identity.user_id, identity.email, identity.email_verified)
        known.put(key, True)
