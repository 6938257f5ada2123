"""Slow clients against bare gunicorn and behind the front door (docs/operations.md).

`.venv/bin/python -m bench.slow_clients [--sockets 256] [--seconds 4]` serves the embedded
default (SQLite in a temporary directory, migrated and seeded; gunicorn 1 worker x 8
threads, as `make run` does) twice: bare on a loopback port, then behind nginx as
`make serve` does. Each time it opens `--sockets` connections that send one byte and then
nothing, and meanwhile times /healthz and a learner's access check in turn for `--seconds`
(each request given 2 s); then it prints the figures of both.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.flask_cli import migrate_and_seed
from harness.front_door import running_front_door
from harness.service import running_service, service_environment
from harness.slow_clients import Timings, sample, slow_sockets
from progress.auth import issue_token

SECRET = "bench-slow-clients-" + "s" * 32
ACCESS = "/api/v1/modules/basics/lessons/greetings/access"
WORKERS, THREADS = 1, 8  # `make run`'s


@contextmanager
def served(kind: str, env: dict[str, str], tmp: Path) -> Iterator[tuple[str, int]]:
    """(url, port) of the service, bare or behind the front door."""
    if kind == "bare gunicorn":
        with running_service(env, tmp, WORKERS, THREADS) as service:
            yield service.url, service.port
    else:
        with running_front_door(env, tmp, WORKERS, THREADS) as front:
            yield front.url, front.port


def measure(kind: str, env: dict[str, str], tmp: Path, sockets: int, seconds: float) -> dict:
    token = issue_token(uuid.uuid4(), "slow@example.com", secret=SECRET, ttl_s=600)
    with served(kind, env, tmp) as (url, port):
        urls = {
            "/healthz": (url + "/healthz", {}),
            "access check": (url + ACCESS, {"Authorization": f"Bearer {token}"}),
        }
        before = sample(urls, 1.0)
        with slow_sockets(port, sockets):
            during = sample(urls, seconds)
    return {"idle": before, f"{sockets} one-byte sockets open": during}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0)  # under nginx's header timeout
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as name:
        tmp = Path(name)
        env = service_environment(
            SECRET,
            f"sqlite:///{tmp / 'progress.db'}",
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
        )
        (tmp / "metrics").mkdir()
        migrate_and_seed(env)
        for kind in ("bare gunicorn", "front door"):
            figures: dict[str, dict[str, Timings]] = measure(
                kind, env, tmp, args.sockets, args.seconds
            )
            print(f"{kind} ({WORKERS} worker x {THREADS} threads):")
            for phase, timings in figures.items():
                for url, timing in timings.items():
                    print(f"  {phase:>24}  {url:<13} {timing.describe()}")


if __name__ == "__main__":
    main()
