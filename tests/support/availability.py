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


def require_nginx() -> None:
    if not os.access(NGINX, os.X_OK):
        unavailable(f"nginx not found at {NGINX} (Debian's nginx package)")
