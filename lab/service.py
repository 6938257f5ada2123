"""Run the service for real: gunicorn (`gunicorn -c gunicorn.conf.py app:app`, as production
runs it) with N workers on a free port, in a process group of its own.

Used by the consistency lab and, through tests/support/service.py, by the tests that need
real processes (Prometheus scraping, a browser, several workers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command() -> list[str]:
    if GUNICORN.exists():
        return [str(GUNICORN), "-c", "gunicorn.conf.py", "app:app"]
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]


@dataclass
class RunningService:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def worker_pids(self) -> list[int]:
        """The gunicorn master's children: its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /readyz answers 200; RuntimeError (with the log's tail) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def start_service(
    env: Mapping[str, str],
    tmp: Path,
    workers: int = 2,
    threads: int = 4,
    base_env: Mapping[str, str] | None = None,
) -> RunningService:
    """Start gunicorn and return at once; call `wait_ready()` before use, `stop()` after.

    `base_env` is what the server inherits (default: this process's environment); `env`
    is laid over it last.
    """
    port = free_port()
    log_path = tmp / f"gunicorn-{port}.log"
    full_env = {
        **(os.environ if base_env is None else base_env),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "PROGRESS_INSTANCE_PATH": str(tmp / f"instance-{port}"),
        **env,
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter's gunicorn, fixed arguments
            gunicorn_command(),
            cwd=REPO,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningService(f"http://127.0.0.1:{port}", port, process, log_path, full_env)


@contextlib.contextmanager
def running_service(
    env: dict[str, str],
    tmp: Path,
    workers: int = 2,
    threads: int = 4,
    timeout: float = 30,
    base_env: Mapping[str, str] | None = None,
) -> Iterator[RunningService]:
    """gunicorn -c gunicorn.conf.py app:app, ready, stopped on the way out."""
    service = start_service(env, tmp, workers, threads, base_env)
    try:
        service.wait_ready(timeout)
        yield service
    finally:
        service.stop()
