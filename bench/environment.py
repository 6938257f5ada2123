"""The environment every server the bench starts runs with: production settings, INFO logs,
and nothing inherited that would change what is measured."""

from __future__ import annotations

import os

from harness.service import UNREACHED_RATE_LIMITS

# Inherited settings that would change what is measured; the harness sets its own.
SCRUBBED_ENV = (
    "PROGRESS_FAULTS",
    "DATABASE_REPLICA_URL",
    "UNLEASH_URL",
    "UNLEASH_API_TOKEN",
    "UNLEASH_ADMIN_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR",
    "prometheus_multiproc_dir",
    "PROGRESS_CACHE_MAXSIZE",
    "PROGRESS_CACHE_TTL_S",
    "PROGRESS_METRICS",
    "BIND",
    "HOST",
    "PORT",
)


def service_env(secret: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        PROGRESS_ENV="production",
        PROGRESS_JWT_SECRET=secret,
        DATABASE_URL=database_url,
        PROGRESS_LOG_LEVEL="INFO",  # production's level: the access line is paid for
        GUNICORN_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
        **UNREACHED_RATE_LIMITS,  # wrk sends each token hundreds of completions a minute
    )
    env.update(extra)
    return env
