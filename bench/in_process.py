"""The service in this process for the in-process measurements (bench.profile, bench.cold):
its own PostgreSQL database, migrated and seeded and dropped at the end, production settings,
and the JSON log line built and written nowhere, as the service pays for it."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness import databases
from harness.service import UNREACHED_RATE_LIMITS

PERCENT = {"legacy": "0", "verified": "100"}
_NOWHERE = open(os.devnull, "w")  # noqa: SIM115 - for the process's life


@dataclass
class InProcess:
    app: Any  # a progress ProgressApp (imported only once the environment is set)
    secret: str

    def serve(self, path: str) -> None:
        """Send every learner to `path` and have this process's flag client see it now."""
        from progress.flags import flag_gate  # progress is imported after the environment

        runner = self.app.test_cli_runner()
        runner.invoke(args=["rollout", "set", PERCENT[path], "--reason", "bench"])
        with self.app.app_context():
            flag_gate().reload_now()
        _log_nowhere()  # a command sends the log to stderr (its stdout is its answer)

    def token(self, email: str) -> dict[str, str]:
        """The headers of a new learner."""
        from progress.auth import issue_token

        return {"Authorization": f"Bearer {issue_token(uuid.uuid4(), email, secret=self.secret)}"}


@contextlib.contextmanager
def service_in_process(db_name: str, prefix: str, **config: Any) -> Iterator[InProcess]:
    """The service built in this process on database `db_name`; `config` adds settings."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    # prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, which is
    # why progress is imported below, inside this function, and never at the top.
    os.environ.update(
        PROGRESS_INSTANCE_PATH=tmp, PROMETHEUS_MULTIPROC_DIR=tmp, PROGRESS_LOG_LEVEL="INFO"
    )
    secret = secrets.token_urlsafe(36)
    database_url = databases.recreate(db_name)
    try:
        from flask_migrate import upgrade

        from progress import create_app
        from progress.extensions import db
        from progress.flags import flag_gate

        app = create_app(
            {
                "PROGRESS_ENV": "production",
                "PROGRESS_JWT_SECRET": secret,
                "DATABASE_URL": database_url,
                "PROGRESS_LOG_LEVEL": "INFO",
                **UNREACHED_RATE_LIMITS,  # one learner's completions, thousands of times
                **config,
            }
        )
        _log_nowhere()
        with app.app_context():
            upgrade()
        app.test_cli_runner().invoke(args=["seed"], catch_exceptions=False)
        _log_nowhere()
        yield InProcess(app, secret)
        with app.app_context():
            flag_gate().close()
            db.engine.dispose()
    finally:
        databases.drop(db_name)


def _log_nowhere() -> None:
    """The service's JSON handler swapped for one with the same formatter on /dev/null: each
    line is still built and formatted, as in production, and written nowhere."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is not _NOWHERE:
            nowhere = logging.StreamHandler(_NOWHERE)
            nowhere.setFormatter(handler.formatter)
            root.removeHandler(handler)
            root.addHandler(nowhere)
