"""Free ports, readiness and stopping: what every process the harness starts shares."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def on_tree(env: Mapping[str, str], root: Path) -> dict[str, str]:
    """`env` for a process that imports the service (`progress`, `app`) from `root`: first
    on its import path, ahead of the installed checkout."""
    return {**env, "PYTHONPATH": str(root)}


def run_to_end(
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    error: type[Exception] = RuntimeError,
) -> str:
    """Run one command to its end: its output, or `error` naming the command with the tail
    of what it printed. Every call is bounded by `timeout`."""
    result = subprocess.run(  # noqa: S603 - our own interpreter or PostgreSQL's tools
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise error(
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<no log: {exc}>"


def wait_until_ready(
    url: str, process: subprocess.Popen, timeout: float, log_path: Path, what: str
) -> None:
    """Until `url` answers 200; RuntimeError with the log's tail if the process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start:\n{tail(log_path)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in {timeout:g}s:\n{tail(log_path)}")
        time.sleep(0.2)


def stop_group(process: subprocess.Popen, term_s: float = 15, kill_s: float = 5) -> None:
    """SIGTERM to the process's group (it leads one: start_new_session), SIGKILL if it
    lingers past `term_s`; every wait bounded."""
    _signal_group(process, signal.SIGTERM, when=lambda: process.poll() is None)
    try:
        process.wait(timeout=term_s)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=kill_s)
    # Children orphaned by a leader that died first still carry its group id.
    _signal_group(process, signal.SIGKILL)


def _signal_group(
    process: subprocess.Popen, sig: signal.Signals, when: Callable[[], bool] = lambda: True
) -> None:
    if when():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
