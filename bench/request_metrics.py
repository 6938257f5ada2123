"""What the request metrics cost a warm access check, in process:
`.venv/bin/python -m bench.request_metrics`.

The app on a throwaway SQLite file, prometheus-client in multiprocess mode (as under
gunicorn), one learner's warm access check through Flask's test client: interleaved rounds
with `metrics.observe_request` on and replaced by a no-op, then `observe_request` alone.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import timeit
import uuid

# Decided at import: multiprocess mode, as gunicorn.conf.py sets it.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
os.environ.update(
    PROGRESS_ENV="development",
    PROGRESS_INSTANCE_PATH=tempfile.mkdtemp(prefix="bench-instance-"),
    PROGRESS_LOG_LEVEL="WARNING",
)

from flask_migrate import upgrade

from progress import create_app, metrics
from progress.auth import issue_token

ROUTE = "/api/v1/modules/<moduleId>/lessons/<lessonId>/access"
URL = "/api/v1/modules/basics/lessons/greetings/access"


def main(rounds: int = 7, requests: int = 1000) -> None:
    app = create_app()
    with app.app_context():
        upgrade()
        app.test_cli_runner().invoke(args=["seed"])
    token = issue_token(uuid.uuid4(), "bench@example.com", secret=app.config["PROGRESS_JWT_SECRET"])
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(200):  # warm: the learner's progress is cached
        assert client.get(URL, headers=headers).status_code == 200

    def one_round() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            client.get(URL, headers=headers)
        return (time.perf_counter() - started) / requests * 1e6

    real = metrics.observe_request
    on, off = [], []
    for _ in range(rounds):
        metrics.observe_request = real
        on.append(one_round())
        metrics.observe_request = lambda *_args: None
        off.append(one_round())
    metrics.observe_request = real
    alone = min(timeit.repeat(lambda: real("GET", ROUTE, 200, 0.0003), number=20_000, repeat=5))
    print(
        f"warm access check, median of {rounds} interleaved rounds of {requests}: "
        f"request metrics on {statistics.median(on):.0f} us, off {statistics.median(off):.0f} us "
        f"(off/on {statistics.median(off) / statistics.median(on):.3f})\n"
        f"observe_request alone, multiprocess mode: {alone / 20_000 * 1e6:.1f} us a request"
    )


if __name__ == "__main__":
    main()
