"""The service as production runs it: `gunicorn -c gunicorn.conf.py app:app` with N
workers on a free port, in a process group of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .processes import REPO, free_port, on_tree, stop_group, tail, wait_until_ready

# A bound on a start, not a figure: a few seconds on a quiet machine, over 30 s seen on a
# 2-core machine busy with other suites.
READY_TIMEOUT_S = 90


@dataclass
class RunningService:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]
    ready_path: str = "/readyz"

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def worker_pids(self) -> list[int]:
        """The gunicorn master's children: its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the ready path answers 200; RuntimeError (with the log's tail) otherwise."""
        wait_until_ready(
            self.url + self.ready_path, self.process, timeout, self.log_path, "gunicorn"
        )

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        stop_group(self.process)


# For load generators and fuzzers, which send one token hundreds of writes a minute as no
# learner does: abuse limits they never reach, so the limiter's cost stays in what they
# measure and its 429s don't stand in for the routes' answers.
UNREACHED_RATE_LIMITS = {
    "PROGRESS_RATE_LIMIT_COMPLETIONS": "1000000/minute",
    "PROGRESS_RATE_LIMIT_REPORTS": "1000000/minute",
    "PROGRESS_RATE_LIMIT_ADMIN": "1000000/minute",
}


def service_environment(secret: str, database_url: str, **extra: str) -> dict[str, str]:
    """The settings every harnessed instance and its flask commands share (test
    environment, quiet logs); `extra` adds to them or overrides them."""
    return {
        "PROGRESS_ENV": "test",
        "PROGRESS_JWT_SECRET": secret,
        "DATABASE_URL": database_url,
        "PROGRESS_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_service(
    env: Mapping[str, str],
    tmp: Path,
    workers: int = 2,
    threads: int = 4,
    base_env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    target: str = "app:app",
    ready_path: str = "/readyz",
    root: Path = REPO,
    keep_stdout: bool = True,
) -> RunningService:
    """Start gunicorn and return at once; call `wait_ready()` before use, `stop()` after.

    `base_env` is what the server inherits (default: this process's environment); `env`
    is laid over it last. `root` is the source tree it serves; `target` the WSGI app in
    it. Without `keep_stdout` the app's JSON request lines are not kept (stderr is).
    """
    port = port or free_port()
    log_path = tmp / f"gunicorn-{port}.log"
    full_env = on_tree(
        {
            **(os.environ if base_env is None else base_env),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "PROGRESS_INSTANCE_PATH": str(tmp / f"instance-{port}"),
            **env,
        },
        root,
    )
    with open(log_path, "w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter's gunicorn, fixed arguments
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", target],
            cwd=root,
            env=full_env,
            stdout=log if keep_stdout else subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    return RunningService(url, port, process, log_path, full_env, ready_path)


@contextlib.contextmanager
def running_service(
    env: Mapping[str, str],
    tmp: Path,
    workers: int = 2,
    threads: int = 4,
    timeout: float = READY_TIMEOUT_S,
    base_env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
) -> Iterator[RunningService]:
    """gunicorn -c gunicorn.conf.py app:app, ready, stopped on the way out."""
    service = start_service(env, tmp, workers, threads, base_env, port=port)
    try:
        service.wait_ready(timeout)
        yield service
    finally:
        service.stop()
