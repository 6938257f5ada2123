"""Bearer JWTs as the identity provider issues them: signed with its published keys (a
JWKS: ES256, RS256, ...) or with a shared secret (HS256, Supabase's legacy secret and
development), checked for algorithm, issuer, audience and expiry; who the token speaks for
is read from claims whose place the settings name (`PROGRESS_*_CLAIM`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from flask import Flask, current_app, request

from . import logs, store
from .config import SYMMETRIC_ALGORITHMS
from .errors import ApiError
from .identity_keys import UnknownKey, provider_keys
from .worker import WorkerState, worker_state

AUDIENCE = "authenticated"
RULES_KEY = "progress.token_rules"
_SCALARS = (str, bool, int, float)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: uuid.UUID
    email: str
    email_verified: bool
    is_admin: bool


@dataclass(frozen=True, slots=True)
class ClaimRule:
    """A claim at a dotted path that grants something when it is (or, as a list, holds) the
    value; `unset` is the answer when no path is configured."""

    path: tuple[str, ...]
    value: str
    unset: bool

    @classmethod
    def of(cls, path: str, value: str, *, unset: bool) -> ClaimRule:
        return cls(tuple(path.split(".")) if path else (), value, unset)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        if not self.path:
            return self.unset
        found = _claim(claims, self.path)
        items = found if isinstance(found, list) else [found]
        if not all(item is None or isinstance(item, _SCALARS) for item in items):
            raise ApiError(401, "invalid_token", "The token's claims have the wrong types.")
        texts = [_text(item) for item in items if item is not None]
        if self.value in ("true", "false") and any(t not in ("true", "false") for t in texts):
            raise ApiError(401, "invalid_token", "The token's claims have the wrong types.")
        return self.value in texts

    def grant(self, claims: dict[str, Any], *, as_list: bool = False) -> None:
        """Put the granting value where this rule reads it (tokens this service issues)."""
        if not self.path:
            return
        value: Any = self.value == "true" if self.value in ("true", "false") else self.value
        _put(claims, self.path, [value] if as_list else value)


def _claim(claims: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    found: Any = claims
    for part in path:
        if not isinstance(found, Mapping):
            return None
        found = found.get(part)
    return found


def _put(claims: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        claims = claims.setdefault(part, {})
    claims[path[-1]] = value


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must be to be accepted, from the settings (made once per app)."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret: str = ""
    issuer: str = ""
    audience: str = AUDIENCE
    email: tuple[str, ...] = ("email",)
    learner: ClaimRule = ClaimRule(("role",), "authenticated", unset=True)
    email_verified: ClaimRule = ClaimRule(("email_verified",), "true", unset=True)
    admin: ClaimRule = ClaimRule(("roles",), "admin", unset=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TokenRules:
        return cls(
            algorithms=tuple(config["PROGRESS_JWT_ALGORITHMS"]),
            secret=config["PROGRESS_JWT_SECRET"],
            issuer=config["PROGRESS_JWT_ISSUER"],
            audience=config["PROGRESS_JWT_AUDIENCE"],
            email=tuple(config["PROGRESS_EMAIL_CLAIM"].split(".")),
            learner=ClaimRule.of(
                config["PROGRESS_LEARNER_CLAIM"], config["PROGRESS_LEARNER_CLAIM_VALUE"], unset=True
            ),
            email_verified=ClaimRule.of(
                config["PROGRESS_EMAIL_VERIFIED_CLAIM"],
                config["PROGRESS_EMAIL_VERIFIED_CLAIM_VALUE"],
                unset=True,
            ),
            admin=ClaimRule.of(
                config["PROGRESS_ADMIN_CLAIM"], config["PROGRESS_ADMIN_CLAIM_VALUE"], unset=False
            ),
        )

    @property
    def issues_locally(self) -> bool:
        """Whether this service can sign tokens it accepts (HS256 with its secret)."""
        return "HS256" in self.algorithms and bool(self.secret)


def token_claims(
    user_id: uuid.UUID,
    email: str,
    *,
    rules: TokenRules = TokenRules(),
    email_verified: bool = True,
    admin: bool = False,
    ttl_s: int = 3600,
) -> dict[str, Any]:
    """The claims of a learner's token, placed where `rules` read them."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "aud": rules.audience, "iat": now}
    claims["exp"] = now + ttl_s
    if rules.issuer:
        claims["iss"] = rules.issuer
    _put(claims, rules.email, email)
    rules.learner.grant(claims)
    if email_verified:
        rules.email_verified.grant(claims)
    elif rules.email_verified.path:
        _put(claims, rules.email_verified.path, False)
    if admin:
        rules.admin.grant(claims, as_list=True)
    return claims


def issue_token(
    user_id: uuid.UUID,
    email: str,
    *,
    secret: str,
    email_verified: bool = True,
    admin: bool = False,
    ttl_s: int = 3600,
    rules: TokenRules = TokenRules(),
) -> str:
    """An HS256 token signed with `secret` (development, tests, the command line)."""
    claims = token_claims(
        user_id, email, rules=rules, email_verified=email_verified, admin=admin, ttl_s=ttl_s
    )
    return jwt.encode(claims, secret, algorithm="HS256")


def issue_local_token(
    user_id: uuid.UUID, email: str, *, email_verified: bool = True, admin: bool = False
) -> str:
    """A token this app accepts, signed with its own secret; 409 when its tokens come from
    the identity provider's keys only (the service holds no private key)."""
    rules = token_rules()
    if not rules.issues_locally:
        raise ApiError(
            409,
            "tokens_from_provider",
            "This service accepts only the identity provider's tokens; sign in there.",
        )
    return issue_token(
        user_id,
        email,
        secret=rules.secret,
        email_verified=email_verified,
        admin=admin,
        ttl_s=current_app.config["PROGRESS_TOKEN_TTL_S"],
        rules=rules,
    )


def decode_token(token: str, secret: str, leeway_s: int = 0) -> Identity:
    """Check an HS256 token with today's default claims; 401 on anything wrong."""
    return _decode(token, TokenRules(secret=secret), leeway_s)[0]


def _invalid(reason: str) -> ApiError:
    return ApiError(401, "invalid_token", f"The access token is invalid: {reason}.")


def _verification_key(token: str, rules: TokenRules) -> tuple[str, Any]:
    """The algorithm the token names, if allowed, and the key that must have signed it: the
    secret for HS*, the provider's published key with the token's kid otherwise (never a
    public key as an HMAC secret)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise _invalid(str(exc)) from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in rules.algorithms:
        raise _invalid("its algorithm is not one this service accepts")
    if alg in SYMMETRIC_ALGORITHMS:
        return alg, rules.secret
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("it names no key id (kid)")
    try:
        return alg, provider_keys().signing_key(kid)
    except UnknownKey:
        raise _invalid("its key id is not one the identity provider publishes") from None


def _decode(token: str, rules: TokenRules, leeway_s: int) -> tuple[Identity, int]:
    alg, key = _verification_key(token, rules)
    required = ["exp", "sub", "aud"] + (["iss"] if rules.issuer else [])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=rules.audience,
            issuer=rules.issuer or None,
            options={"require": required},
            leeway=leeway_s,  # clock skew with the identity provider: iat, nbf and exp
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "token_expired", "The access token has expired.") from None
    except jwt.InvalidTokenError as exc:
        raise _invalid(str(exc)) from None
    try:
        user_id = uuid.UUID(claims["sub"])
    except (ValueError, TypeError, AttributeError):
        raise ApiError(401, "invalid_token", "The token's sub is not a UUID.") from None
    email = _claim(claims, rules.email)
    if not rules.learner.holds(claims) or not isinstance(email, str):
        raise ApiError(401, "invalid_token", "The token lacks role or email.")
    if len(email) > 320 or not email.isprintable():
        raise ApiError(401, "invalid_token", "The token's email is not an address.")
    verified, admin = rules.email_verified.holds(claims), rules.admin.holds(claims)
    return Identity(user_id, email, verified, admin), int(claims["exp"])


def token_rules() -> TokenRules:
    return current_app.extensions[RULES_KEY]


def init_app(app: Flask) -> None:
    app.extensions[RULES_KEY] = TokenRules.from_config(app.config)


def _verified_identity(token: str, state: WorkerState) -> Identity:
    """Decode once per token and process: a signature checked once stays checked, and
    the expiry is still enforced on every use."""
    leeway_s = current_app.config["PROGRESS_JWT_LEEWAY_S"]
    known = state.verified_tokens.get(token)
    if known is None:
        known = _decode(token, token_rules(), leeway_s)
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
