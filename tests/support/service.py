"""The environment of the service under gunicorn in a test (harness/service.py runs it)."""

from __future__ import annotations

from pathlib import Path

from harness.service import service_environment

from .apps import SECRET
from .tokens import token_minter


def service_env(database_url: str, metrics_dir: Path, **extra: str) -> dict[str, str]:
    defaults = {
        "PROGRESS_FLAG_REFRESH_S": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **token_minter(SECRET).settings(),  # TEST_TOKEN_MODE's
    }
    return service_environment(SECRET, database_url, **{**defaults, **extra})
