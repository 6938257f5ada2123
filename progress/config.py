"""Settings from the environment, with the seed's values as defaults."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import faults

ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the service refuses to start."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


_LABEL_MATCHERS = re.compile(
    r"""^\s*(?:[a-zA-Z_]\w*\s*(?:=~|!~|!=|=)\s*(?:"[^"]*"|'[^']*')\s*(?:,\s*|$))*$"""
)


def _label_matchers(env: Mapping[str, str], name: str, default: str) -> str:
    """PromQL label matchers such as `job="lesson-progress",env="prod"`; loud if malformed
    (a shell that ate the quotes would otherwise make every guard query fail)."""
    raw = env.get(name)
    value = default if raw is None else raw.strip()
    if not _LABEL_MATCHERS.match(value):
        raise ConfigError(f'{name} must be PromQL label matchers like job="x", got {value!r}')
    return value.rstrip(", ")


def _origins(env: Mapping[str, str], name: str) -> list[str]:
    """Comma-separated origins (`https://app.example.com,http://localhost:5173`); empty: none.
    An origin is a scheme and a host (and port), no path: the browser's Origin header. No
    patterns: flask-cors would read `*` or `(` in one as a regular expression."""
    origins = [part.strip().rstrip("/") for part in env.get(name, "").split(",") if part.strip()]
    for origin in origins:
        if origin == "*":
            raise ConfigError(f"{name}: list the origins; '*' would grant every site")
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    return origins


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


def load_settings(instance_path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from the environment (see `.env.example`)."""
    env = os.environ if env is None else env
    environment = env.get("PROGRESS_ENV", "production")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"PROGRESS_ENV must be one of {ENVIRONMENTS}, got {environment!r}")

    secret = env.get("PROGRESS_JWT_SECRET", "")
    if not secret:
        if environment == "production":
            raise ConfigError("PROGRESS_JWT_SECRET is required outside development")
        secret = _development_secret(instance_path)
    if environment == "production" and len(secret) < 32:
        raise ConfigError("PROGRESS_JWT_SECRET must be at least 32 characters")

    fault_spec = env.get("PROGRESS_FAULTS", "")
    if fault_spec and environment == "production":
        raise ConfigError("PROGRESS_FAULTS is refused in production configuration")
    try:
        injected = faults.parse(fault_spec)
    except ValueError as exc:
        raise ConfigError(f"PROGRESS_FAULTS: {exc}") from None

    default_db = f"sqlite:///{instance_path / 'progress.db'}"
    replica = env.get("DATABASE_REPLICA_URL", "")
    return {
        "PROGRESS_ENV": environment,
        "SQLALCHEMY_DATABASE_URI": database_url(env.get("DATABASE_URL") or default_db),
        "SQLALCHEMY_BINDS": {"replica": database_url(replica)} if replica else {},
        "PROGRESS_JWT_SECRET": secret,
        "PROGRESS_TOKEN_TTL_S": _int(env, "PROGRESS_TOKEN_TTL_S", 7 * 24 * 3600, minimum=60),
        "UNLEASH_URL": env.get("UNLEASH_URL", ""),
        "UNLEASH_API_TOKEN": env.get("UNLEASH_API_TOKEN", ""),
        "UNLEASH_ADMIN_TOKEN": env.get("UNLEASH_ADMIN_TOKEN", ""),
        "UNLEASH_PROJECT": env.get("UNLEASH_PROJECT", "default"),
        "UNLEASH_ENVIRONMENT": env.get("UNLEASH_ENVIRONMENT", "development"),
        "PROGRESS_FLAG_NAME": env.get("PROGRESS_FLAG_NAME", "verified-progress-path"),
        "PROGRESS_FLAG_REFRESH_S": _int(env, "PROGRESS_FLAG_REFRESH_S", 5, minimum=1),
        "PROMETHEUS_MULTIPROC_DIR": env.get("PROMETHEUS_MULTIPROC_DIR", ""),
        "PROMETHEUS_URL": env.get("PROMETHEUS_URL", ""),
        # The rollout guard (progress/guard.py). Interval 0: no in-process schedule (run
        # `flask rollout guard --loop` as a sidecar instead).
        "PROGRESS_GUARD_INTERVAL_S": _int(env, "PROGRESS_GUARD_INTERVAL_S", 60),
        # The shortest window the guard judges; a few scrape intervals at the least.
        "PROGRESS_GUARD_MIN_WINDOW_S": _int(env, "PROGRESS_GUARD_MIN_WINDOW_S", 60, minimum=1),
        "PROGRESS_GUARD_QUERY_TIMEOUT_S": _int(env, "PROGRESS_GUARD_QUERY_TIMEOUT_S", 5, minimum=1),
        # Evaluations older than this are pruned by the guard itself.
        "PROGRESS_GUARD_RETENTION_DAYS": _int(env, "PROGRESS_GUARD_RETENTION_DAYS", 30, minimum=1),
        # Label matchers added to every guard query: which scrape job is this service.
        "PROGRESS_GUARD_SELECTOR": _label_matchers(
            env, "PROGRESS_GUARD_SELECTOR", 'job="lesson-progress"'
        ),
        # The seed's numbers (design.md "The two paths").
        "PROGRESS_STALE_AFTER_MS": _int(env, "PROGRESS_STALE_AFTER_MS", 5000),
        # Seed: 2000. Any window lets an older copy in another worker answer a false
        # "locked" inside it (tests/test_verified_path.py), so every cached "locked" is
        # confirmed; it costs one primary read per locked answer (README, "Measurements").
        "PROGRESS_DOUBLE_CHECK_AFTER_MS": _int(env, "PROGRESS_DOUBLE_CHECK_AFTER_MS", 0),
        "PROGRESS_CACHE_UPDATE_TIMEOUT_MS": _int(
            env, "PROGRESS_CACHE_UPDATE_TIMEOUT_MS", 2000, minimum=1
        ),
        "PROGRESS_BREAKER_THRESHOLD": _int(env, "PROGRESS_BREAKER_THRESHOLD", 3, minimum=1),
        "PROGRESS_BREAKER_COOLDOWN_MS": _int(env, "PROGRESS_BREAKER_COOLDOWN_MS", 5000),
        "PROGRESS_RETRY_MAX_MS": _int(env, "PROGRESS_RETRY_MAX_MS", 3000),
        "PROGRESS_RETRY_BASE_MS": _int(env, "PROGRESS_RETRY_BASE_MS", 50, minimum=1),
        "PROGRESS_CACHE_TTL_S": _int(env, "PROGRESS_CACHE_TTL_S", 300, minimum=1),
        "PROGRESS_CACHE_MAXSIZE": _int(env, "PROGRESS_CACHE_MAXSIZE", 100_000, minimum=1),
        # Guard rails (docs/hardening.md): every database wait, request bodies, clock skew.
        "PROGRESS_DB_TIMEOUT_MS": _int(env, "PROGRESS_DB_TIMEOUT_MS", 3000),
        "PROGRESS_MAX_BODY_BYTES": _int(env, "PROGRESS_MAX_BODY_BYTES", 65536, minimum=1),
        "PROGRESS_JWT_LEEWAY_S": _int(env, "PROGRESS_JWT_LEEWAY_S", 30),
        # A failed read replica is set aside this long (and its warning logged once).
        "PROGRESS_REPLICA_RECHECK_S": _int(env, "PROGRESS_REPLICA_RECHECK_S", 10, minimum=1),
        # How long a lock receipt can be reported (the access answer's `lockReceipt`).
        "PROGRESS_LOCK_RECEIPT_TTL_S": _int(env, "PROGRESS_LOCK_RECEIPT_TTL_S", 600, minimum=1),
        "PROGRESS_FAULTS": injected,
        # Browser origins allowed to call /api/v1 (docs/frontend.md); none by default.
        "PROGRESS_CORS_ORIGINS": _origins(env, "PROGRESS_CORS_ORIGINS"),
        # The learner page's own client: a request taking longer counts as failed.
        "PROGRESS_PAGE_TIMEOUT_MS": _int(env, "PROGRESS_PAGE_TIMEOUT_MS", 10_000, minimum=100),
        "PROGRESS_LOG_LEVEL": env.get("PROGRESS_LOG_LEVEL", "INFO").upper(),
    }
