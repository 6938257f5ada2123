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


def _faults(value: object) -> object:
    return faults.parse(value) if isinstance(value, str) else value


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
    # For the lab and fault tests only: `name=value,...` (progress/faults.py).
    PROGRESS_FAULTS: Annotated[InstanceOf[faults.Faults], NoDecode, BeforeValidator(_faults)] = (
        Field(default_factory=faults.Faults)
    )
    # Browser origins allowed to call /api/v1, comma-separated; none by default.
    PROGRESS_CORS_ORIGINS: Annotated[list[str], NoDecode, BeforeValidator(_origins)] = Field(
        default_factory=list
    )
    # The learner page's own client: a request taking longer counts as failed.
    PROGRESS_PAGE_TIMEOUT_MS: Count = Field(10_000, ge=100)
    PROGRESS_LOG_LEVEL: Annotated[str, AfterValidator(_log_level)] = "INFO"

    @model_validator(mode="after")
    def _per_environment(self) -> Self:
        if self.PROGRESS_ENV == "production":
            if not self.PROGRESS_JWT_SECRET:
                raise ValueError(
                    "PROGRESS_JWT_SECRET is required in production (the default PROGRESS_ENV): "
                    "set it, or set PROGRESS_ENV=development to use the built-in secret"
                )
            if len(self.PROGRESS_JWT_SECRET) < 32:
                raise ValueError("PROGRESS_JWT_SECRET must be at least 32 characters")
            if faults.Faults() != self.PROGRESS_FAULTS:
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
    if not config["PROGRESS_JWT_SECRET"]:
        config["PROGRESS_JWT_SECRET"] = _development_secret(instance_path)
    return config
