"""What a test needs from the machine: skipped when it is missing, except under CI=true,
where no test may skip for want of a service or a program."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from harness import databases
from harness.front_door import NGINX

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def require_postgres() -> None:
    if not databases.reachable():
        unavailable(f"PostgreSQL not reachable at {databases.ADMIN_URL}")


# A database number of the suite's own on the machine's Redis; each run adds a key prefix of
# its own, so concurrent runs never share counts. Nothing here ever flushes it.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def require_redis() -> str:
    """The test Redis's URL, if it answers."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def require_nginx() -> None:
    if not os.access(NGINX, os.X_OK):
        unavailable(f"nginx not found at {NGINX} (Debian's nginx package)")
