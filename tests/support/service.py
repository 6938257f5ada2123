"""Run the service for real: gunicorn with N workers on a free port, for tests that need
real processes (Prometheus scraping, a browser, several workers).

The code lives in lab/service.py, shared with the consistency lab (`python -m lab`).
"""

from __future__ import annotations

from lab.service import (
    GUNICORN,
    REPO,
    RunningService,
    free_port,
    running_service,
    start_service,
)

__all__ = ["GUNICORN", "REPO", "RunningService", "free_port", "running_service", "start_service"]
