"""The read replica's health, per worker: a replica that fails (down, or hung past the
database deadline) is set aside for PROGRESS_REPLICA_RECHECK_S, reads go to the primary
meanwhile (on both paths), the warning is logged once per interval, and /readyz shows it."""

from __future__ import annotations

import logging

from flask import Flask, current_app

from .set_aside import SetAside

log = logging.getLogger(__name__)
HEALTH_KEY = "progress.replica"


def init_app(app: Flask) -> SetAside:
    health = SetAside(
        app.config["PROGRESS_REPLICA_RECHECK_S"],
        log,
        unavailable="read replica unavailable; reading from the primary",
        recovered="read replica answers again",
        meanwhile="reads go to the primary",
    )
    app.extensions[HEALTH_KEY] = health
    return health


def replica_health() -> SetAside:
    return current_app.extensions[HEALTH_KEY]
