"""Settings from the environment, with the seed's values as defaults. One pydantic-settings
model reads, parses and checks them all; a missing secret or a malformed value stops startup
with one line naming the variable."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from limits import parse_many
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    InstanceOf,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticUseDefault
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import faults


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the service refuses to start."""


def _blank_is_unset(value: object) -> object:
    """`NAME=` (a copied `.env.example`) means the default, as if the variable were unset."""
    if value == "":
        raise PydanticUseDefault
    return value


# A whole number of milliseconds, seconds, bytes or entries; each field sets its minimum.
Count = Annotated[int, BeforeValidator(_blank_is_unset)]

_LABEL_MATCHERS = re.compile(
    r"""^\s*(?:[a-zA-Z_]\w*\s*(?:=~|!~|!=|=)\s*(?:"[^"]*"|'[^']*')\s*(?:,\s*|$))*$"""
)


def _label_matchers(value: str) -> str:
    """PromQL label matchers such as `job="lesson-progress",env="prod"`; loud if malformed
    (a shell that ate the quotes would otherwise make every guard query fail)."""
    value = value.strip()
    if not _LABEL_MATCHERS.match(value):
        raise ValueError(f'{value!r} is not PromQL label matchers like job="x"')
    return value.rstrip(", ")


def _origins(value: object) -> object:
    """Comma-separated origins (`https://app.example.com,http://localhost:5173`); empty: none.
    An origin is a scheme and a host (and port), no path: the browser's Origin header. No
    patterns: flask-cors would read `*` or `(` in one as a regular expression."""
    if not isinstance(value, str):
        return value
    origins = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    for origin in origins:
        if origin == "*":
            raise ValueError("list the origins; '*' would grant every site")
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?", origin):
            raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    return origins


def _comma_list(value: object) -> object:
    """`a,b,c` as a list (blanks dropped); empty: none."""
    if not isinstance(value, str):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


# What `PROGRESS_JWT_ALGORITHMS` may name: HMAC with the shared secret, or a public key from
# the JWKS. `none` is never accepted.
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Supabase signs with ES256 (or RS256); most OIDC providers with RS256.
DEFAULT_JWKS_ALGORITHMS = ("ES256", "RS256")


def _algorithms(value: object) -> object:
    names = _comma_list(value)
    if isinstance(names, list):
        unknown = [
            name for name in names if name not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
        ]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an algorithm like ES256, RS256 or HS256")
    return names


def _claim_path(value: str) -> str:
    """A dotted path into the token's claims (`app_metadata.roles`); empty: no claim."""
    value = value.strip()
    if value and not all(re.fullmatch(r"[^.\s]+", part) for part in value.split(".")):
        raise ValueError(f"{value!r} is not a dotted claim path like app_metadata.roles")
    return value


ClaimPath = Annotated[str, AfterValidator(_claim_path)]


def _hosts(value: object) -> object:
    """Comma-separated host names, as Flask's TRUSTED_HOSTS takes them: `example.com` or
    `.example.com` (it and its subdomains); a request's port is not compared. Empty: none."""
    hosts = _comma_list(value)
    for host in hosts if isinstance(hosts, list) else ():
        if not re.fullmatch(r"\.?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*", host):
            raise ValueError(f"{host!r} is not a host name like app.example.com")
    return hosts


def _faults(value: object) -> object:
    return faults.parse(value) if isinstance(value, str) else value


def _rate_limit(value: str) -> str:
    """Flask-Limiter's notation, e.g. `60/minute` or `10/second;100/hour`: loud if malformed."""
    value = value.strip()
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a limit like 60/minute") from None
    return value


def _storage_uri(value: str) -> str:
    if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise ValueError(f"{value!r} is not memory:// or a redis:// URL")
    return value


RateLimit = Annotated[str, BeforeValidator(_blank_is_unset), AfterValidator(_rate_limit)]


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"{value!r} is not a level like INFO or WARNING")
    return level


class Settings(BaseSettings):
    """Every setting, named as its environment variable (`.env.example` lists them)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # development | test | production (the default): production needs a real secret and
    # refuses fault injection; development makes a secret and the development-only routes.
    PROGRESS_ENV: Literal["development", "test", "production"] = "production"
    # Empty outside production: a secret kept in instance/ (see load_settings).
    PROGRESS_JWT_SECRET: str = Field("", repr=False)
    PROGRESS_TOKEN_TTL_S: Count = Field(7 * 24 * 3600, ge=60)
    # Tokens signed by the identity provider's published keys (a JWKS), checked against
    # its issuer; the allow-list defaults to ES256,RS256 with a JWKS and HS256 without.
    PROGRESS_JWT_JWKS_URL: str = ""
    PROGRESS_JWT_ISSUER: str = ""
    PROGRESS_JWT_AUDIENCE: str = "authenticated"
    PROGRESS_JWT_ALGORITHMS: Annotated[list[str], NoDecode, BeforeValidator(_algorithms)] = Field(
        default_factory=list
    )
    PROGRESS_JWT_JWKS_TTL_S: Count = Field(300, ge=1)
    # The least time between two fetches for a key id the set lacks (and between two tries
    # of a key server that failed): a stream of made-up key ids costs one fetch per period.
    PROGRESS_JWT_JWKS_REFETCH_S: Count = Field(10, ge=0)
    PROGRESS_JWT_JWKS_TIMEOUT_MS: Count = Field(2000, ge=100)
    # Where the provider puts who a token speaks for; each rule is a dotted claim path and
    # the value that grants it (a list claim grants it if it holds the value).
    PROGRESS_EMAIL_CLAIM: ClaimPath = "email"
    PROGRESS_LEARNER_CLAIM: ClaimPath = "role"
    PROGRESS_LEARNER_CLAIM_VALUE: str = "authenticated"
    PROGRESS_EMAIL_VERIFIED_CLAIM: ClaimPath = "email_verified"
    PROGRESS_EMAIL_VERIFIED_CLAIM_VALUE: str = "true"
    PROGRESS_ADMIN_CLAIM: ClaimPath = "roles"
    PROGRESS_ADMIN_CLAIM_VALUE: str = "admin"
    # Lock receipts' signing keys, the current one first; unset: the JWT secret.
    PROGRESS_RECEIPT_KEYS: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(
        default_factory=list, repr=False
    )
    # Empty: SQLite under instance/.
    DATABASE_URL: str = ""
    DATABASE_REPLICA_URL: str = ""
    UNLEASH_URL: str = ""
    UNLEASH_API_TOKEN: str = Field("", repr=False)
    UNLEASH_ADMIN_TOKEN: str = Field("", repr=False)
    UNLEASH_PROJECT: str = "default"
    UNLEASH_ENVIRONMENT: str = "development"
    PROGRESS_FLAG_NAME: str = "verified-progress-path"
    PROGRESS_FLAG_REFRESH_S: Count = Field(5, ge=1)
    PROMETHEUS_URL: str = ""
    # The rollout guard. Interval 0: no in-process schedule (run `flask rollout guard
    # --loop` as a sidecar instead).
    PROGRESS_GUARD_INTERVAL_S: Count = Field(60, ge=0)
    # The shortest window the guard judges; a few scrape intervals at the least.
    PROGRESS_GUARD_MIN_WINDOW_S: Count = Field(60, ge=1)
    PROGRESS_GUARD_QUERY_TIMEOUT_S: Count = Field(5, ge=1)
    # Evaluations older than this are pruned by the guard itself.
    PROGRESS_GUARD_RETENTION_DAYS: Count = Field(30, ge=1)
    # Label matchers added to every guard query: which scrape job is this service.
    PROGRESS_GUARD_SELECTOR: Annotated[str, AfterValidator(_label_matchers)] = (
        'job="lesson-progress"'
    )
    # The verified path's knobs, the seed's numbers.
    PROGRESS_STALE_AFTER_MS: Count = Field(5000, ge=0)
    # Seed: 2000. Any window lets an older copy in another worker answer a false "locked"
    # inside it (tests/test_verified_path.py), so every cached "locked" is confirmed; it
    # costs one primary read per locked answer.
    PROGRESS_DOUBLE_CHECK_AFTER_MS: Count = Field(0, ge=0)
    PROGRESS_CACHE_UPDATE_TIMEOUT_MS: Count = Field(2000, ge=1)
    PROGRESS_BREAKER_THRESHOLD: Count = Field(3, ge=1)
    PROGRESS_BREAKER_COOLDOWN_MS: Count = Field(5000, ge=0)
    PROGRESS_RETRY_MAX_MS: Count = Field(3000, ge=0)
    PROGRESS_RETRY_BASE_MS: Count = Field(50, ge=1)
    PROGRESS_CACHE_TTL_S: Count = Field(300, ge=1)
    PROGRESS_CACHE_MAXSIZE: Count = Field(100_000, ge=1)
    # Guard rails: every database wait (0: unbounded), request bodies, clock skew.
    PROGRESS_DB_TIMEOUT_MS: Count = Field(3000, ge=0)
    PROGRESS_MAX_BODY_BYTES: Count = Field(65536, ge=1)
    PROGRESS_JWT_LEEWAY_S: Count = Field(30, ge=0)
    # A failed read replica is set aside this long (and its warning logged once).
    PROGRESS_REPLICA_RECHECK_S: Count = Field(10, ge=1)
    # How long a lock receipt can be reported (the access answer's `lockReceipt`).
    PROGRESS_LOCK_RECEIPT_TTL_S: Count = Field(600, ge=1)
    # How far the clocks of two instances may disagree: a reported lock counts as false by
    # time only if its read began this much after the completion was acknowledged.
    PROGRESS_CLOCK_SKEW_MS: Count = Field(50, ge=0)
    # Abuse limits per learner (the token's subject), in Flask-Limiter's notation; far above
    # what a learner or an admin does by hand (docs/operations.md#abuse-limits says why).
    PROGRESS_RATE_LIMIT_COMPLETIONS: RateLimit = "60/minute"
    PROGRESS_RATE_LIMIT_REPORTS: RateLimit = "60/minute"
    PROGRESS_RATE_LIMIT_ADMIN: RateLimit = "60/minute"
    # Where the counts live: memory:// counts per process; redis:// shares them.
    PROGRESS_RATE_LIMIT_STORAGE_URI: Annotated[
        str, BeforeValidator(_blank_is_unset), AfterValidator(_storage_uri)
    ] = "memory://"
    # Keeps two deployments (or test runs) on one Redis apart.
    PROGRESS_RATE_LIMIT_KEY_PREFIX: Annotated[str, BeforeValidator(_blank_is_unset)] = (
        "lesson-progress"
    )
    # A failed storage is set aside this long: requests pass unlimited (fail open) meanwhile.
    PROGRESS_RATE_LIMIT_RECHECK_S: Count = Field(10, ge=1)
    # Lock screen reports older than this are pruned as new ones are kept.
    PROGRESS_REPORT_RETENTION_DAYS: Count = Field(30, ge=1)
    # For the lab and fault tests only: `name=value,...` (progress/faults.py).
    PROGRESS_FAULTS: Annotated[InstanceOf[faults.Faults], NoDecode, BeforeValidator(_faults)] = (
        Field(default_factory=faults.Faults)
    )
    # Browser origins allowed to call /api/v1, comma-separated; none by default.
    PROGRESS_CORS_ORIGINS: Annotated[list[str], NoDecode, BeforeValidator(_origins)] = Field(
        default_factory=list
    )
    # Host names the service answers, comma-separated; empty: any host (redirects are
    # relative either way). A request naming another Host gets 400.
    PROGRESS_TRUSTED_HOSTS: Annotated[list[str], NoDecode, BeforeValidator(_hosts)] = Field(
        default_factory=list
    )
    # The learner page's own client: a request taking longer counts as failed.
    PROGRESS_PAGE_TIMEOUT_MS: Count = Field(10_000, ge=100)
    PROGRESS_LOG_LEVEL: Annotated[str, AfterValidator(_log_level)] = "INFO"

    @model_validator(mode="after")
    def _token_rules(self) -> Self:
        jwks = self.PROGRESS_JWT_JWKS_URL
        if jwks and not re.match(r"https?://", jwks):
            raise ValueError("PROGRESS_JWT_JWKS_URL must be an http(s) URL")
        if jwks and not self.PROGRESS_JWT_ISSUER:
            # A key set can sign for many tenants (projects, apps): the issuer says which one.
            raise ValueError("PROGRESS_JWT_ISSUER is required with PROGRESS_JWT_JWKS_URL")
        chosen = set(self.PROGRESS_JWT_ALGORITHMS)
        if chosen & ASYMMETRIC_ALGORITHMS and not jwks:
            raise ValueError(
                "PROGRESS_JWT_ALGORITHMS names public-key algorithms: set PROGRESS_JWT_JWKS_URL"
            )
        if chosen & SYMMETRIC_ALGORITHMS and jwks and not self.PROGRESS_JWT_SECRET:
            raise ValueError("PROGRESS_JWT_ALGORITHMS names HS256: set PROGRESS_JWT_SECRET")
        if self.PROGRESS_ENV == "production":
            self._production_keys(chosen)
        return self

    def _production_keys(self, chosen: set[str]) -> None:
        hmac = not self.PROGRESS_JWT_JWKS_URL or bool(chosen & SYMMETRIC_ALGORITHMS)
        if hmac and not self.PROGRESS_JWT_SECRET:
            raise ValueError(
                "PROGRESS_JWT_SECRET is required in production (the default PROGRESS_ENV), or "
                "PROGRESS_JWT_JWKS_URL: set one, or set PROGRESS_ENV=development to use the "
                "built-in secret"
            )
        if self.PROGRESS_JWT_SECRET and len(self.PROGRESS_JWT_SECRET) < 32:
            raise ValueError("PROGRESS_JWT_SECRET must be at least 32 characters")
        if not self.PROGRESS_RECEIPT_KEYS and not self.PROGRESS_JWT_SECRET:
            raise ValueError("PROGRESS_RECEIPT_KEYS is required when tokens are checked by a JWKS")
        if any(len(key) < 32 for key in self.PROGRESS_RECEIPT_KEYS):
            raise ValueError("each of PROGRESS_RECEIPT_KEYS must be at least 32 characters")

    @model_validator(mode="after")
    def _per_environment(self) -> Self:
        if self.PROGRESS_ENV == "production" and faults.Faults() != self.PROGRESS_FAULTS:
            raise ValueError("PROGRESS_FAULTS is refused in production configuration")
        return self


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as a sentence that starts with the variable's name."""
    if not error["loc"]:  # a rule across settings: its message names them
        return str(error["ctx"]["error"])
    name, given, context = error["loc"][0], error["input"], error.get("ctx", {})
    match error["type"]:
        case "int_parsing" | "int_from_float" | "int_type":
            return f"{name} must be an integer, got {given!r}"
        case "greater_than_equal":
            return f"{name} must be at least {context['ge']}, got {given}"
        case "literal_error":
            return f"{name} must be one of {context['expected']}, got {given!r}"
        case "value_error":
            return f"{name}: {context['error']}"
    return f"{name}: {error['msg']}"


def database_url(raw: str) -> str:
    """Accept `postgresql://` and `postgres://` and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def _development_secret(instance_path: Path) -> str:
    # One secret per checkout, kept in instance/, so tokens printed by `make run`
    # or `flask token issue` stay valid across processes and restarts.
    path = instance_path / "dev-jwt-secret"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def load_settings(
    instance_path: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Flask's config from the environment, `overrides` (variables by name) taking precedence."""
    try:
        settings = Settings(**(overrides or {}))
    except ValidationError as exc:
        # `from None`: pydantic's own report would print the offending values (secrets too).
        raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None
    config = dict(settings)  # the values as they are (model_dump would turn Faults into a dict)
    primary = config.pop("DATABASE_URL") or f"sqlite:///{instance_path / 'progress.db'}"
    replica = config.pop("DATABASE_REPLICA_URL")
    config["SQLALCHEMY_DATABASE_URI"] = database_url(primary)
    config["SQLALCHEMY_BINDS"] = {"replica": database_url(replica)} if replica else {}
    if not config["PROGRESS_JWT_SECRET"] and not config["PROGRESS_JWT_JWKS_URL"]:
        config["PROGRESS_JWT_SECRET"] = _development_secret(instance_path)
    if not config["PROGRESS_JWT_ALGORITHMS"]:
        jwks = config["PROGRESS_JWT_JWKS_URL"]
        config["PROGRESS_JWT_ALGORITHMS"] = list(DEFAULT_JWKS_ALGORITHMS if jwks else ["HS256"])
    if not config["PROGRESS_RECEIPT_KEYS"]:
        # As before the keys had a setting of their own, so receipts survive the upgrade.
        secret = config["PROGRESS_JWT_SECRET"] or _development_secret(instance_path)
        config["PROGRESS_RECEIPT_KEYS"] = [secret]
    return config
