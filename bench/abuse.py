"""One learner looping on completions, then on lock screen reports, on several connections
for a while, against the service under gunicorn on a SQLite file of its own: how many got
through and how many were refused 429 (docs/operations.md#abuse-limits).

    .venv/bin/python -m bench.abuse                          # memory://, 1 worker x 8 threads
    .venv/bin/python -m bench.abuse --workers 2 --redis redis://127.0.0.1:6379/11
"""

from __future__ import annotations

import argparse
import collections
import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from harness.flask_cli import migrate_and_seed
from harness.service import running_service, service_environment
from progress.auth import issue_token

COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"
ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
REPORT = "/api/v1/events/lock-screen"


def hammer(
    url: str, send: str, headers: dict[str, str], body: object, args: argparse.Namespace
) -> dict[int, int]:
    """Answers by status, from `args.connections` threads sending for `args.seconds`."""
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    end = time.monotonic() + args.seconds

    def loop() -> None:
        with requests.Session() as session:
            while time.monotonic() < end:
                status = session.post(
                    url + send, headers=headers, json=body, timeout=10
                ).status_code
                with lock:
                    statuses[status] += 1

    threads = [threading.Thread(target=loop) for _ in range(args.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(sorted(statuses.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--redis", default="", help="PROGRESS_RATE_LIMIT_STORAGE_URI (redis://...)")
    args = parser.parse_args()
    secret = secrets.token_urlsafe(36)
    with tempfile.TemporaryDirectory(prefix="abuse-") as tmp:
        storage = {
            "PROGRESS_RATE_LIMIT_STORAGE_URI": args.redis,
            "PROGRESS_RATE_LIMIT_KEY_PREFIX": f"abuse-{uuid.uuid4().hex}",  # this run's own
        }
        env = service_environment(
            secret, f"sqlite:///{tmp}/progress.db", **(storage if args.redis else {})
        )
        migrate_and_seed(env)
        with running_service(env, Path(tmp), args.workers, args.threads, timeout=90) as service:
            token = issue_token(uuid.uuid4(), "abuse@example.com", secret=secret)
            headers = {"Authorization": f"Bearer {token}"}
            receipt = requests.get(service.url + ACCESS, headers=headers, timeout=10).json()
            report = {"moduleId": "basics", "lessonId": "introductions"}
            report["lockReceipt"] = receipt["lockReceipt"]
            for name, send, body in (("completions", COMPLETE, None), ("reports", REPORT, report)):
                answers = hammer(service.url, send, headers, body, args)
                print(
                    f"{name}: one learner, {args.connections} connections, {args.seconds:g} s, "
                    f"{args.workers} worker(s), {args.redis or 'memory://'}: {answers}"
                )


if __name__ == "__main__":
    main()
