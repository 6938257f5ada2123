"""The environment of the service under gunicorn in a test (harness/service.py runs it)."""

from __future__ import annotations

from pathlib import Path

from .apps import SECRET


def service_env(database_url: str, metrics_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PROGRESS_ENV": "test",
        "DATABASE_URL": database_url,
        "PROGRESS_JWT_SECRET": SECRET,
        "PROGRESS_LOG_LEVEL": "WARNING",
        "PROGRESS_FLAG_REFRESH_S": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **extra,
    }
