"""The lock-report race, played as a learner would: pollers ask for the next lesson while the
lesson before it is completed, then every lock receipt they got is reported.

`.venv/bin/python -m bench.lock_race [--races 76] [--pollers 3] [--instances 1]` builds the
service in this process on a throwaway PostgreSQL database (`progress_race_<random>`, or
$RACE_POSTGRES_DB) and on a SQLite file, sends every learner to the verified path, plays
`--races` races on each (a new learner each: the pollers and the completion start together;
a poller stops at its first "accessible"), and prints how many reports were judged
`falseLock: true`. With `--instances 2` the pollers alternate between two instances on the
same database, as a load balancer would send them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from harness import databases

ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"
REPORT = "/api/v1/events/lock-screen"
INTRO = {"moduleId": "basics", "lessonId": "introductions"}
POLL_DEADLINE_S = 5.0  # a poller gives up on a race after this (none should need it)


def build(url: str, tmp: Path, secret: str) -> Any:
    from flask_migrate import upgrade

    from progress import create_app

    os.environ["PROGRESS_INSTANCE_PATH"] = str(tmp)
    app = create_app(
        {
            "PROGRESS_ENV": "test",
            "DATABASE_URL": url,
            "PROGRESS_JWT_SECRET": secret,
            "PROGRESS_LOG_LEVEL": "ERROR",
        }
    )
    with app.app_context():
        upgrade()
    app.test_cli_runner().invoke(args=["seed"], catch_exceptions=False)
    return app


def serve_verified(app: Any) -> None:
    from progress import rollout
    from progress.flags import flag_gate

    with app.app_context():
        rollout.set_rollout(100, "lock race", "bench")
        flag_gate().reload_now()


def race(apps: list[Any], headers: dict[str, str], pollers: int) -> list[str]:
    """One race: the receipts of every "locked" the pollers were answered."""
    receipts: list[str] = []
    start = threading.Barrier(pollers + 1)

    def poll(index: int) -> None:
        client = apps[index % len(apps)].test_client()
        start.wait(10)
        deadline = time.monotonic() + POLL_DEADLINE_S
        while time.monotonic() < deadline:
            answer = client.get(ACCESS, headers=headers).get_json()
            if answer["accessible"]:
                return
            receipts.append(answer["lockReceipt"])

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(pollers)]
    for thread in threads:
        thread.start()
    completer = apps[0].test_client()
    start.wait(10)
    assert completer.post(COMPLETE, headers=headers).status_code == 200
    for thread in threads:
        thread.join(POLL_DEADLINE_S + 5)
    return receipts


def play(apps: list[Any], secret: str, races: int, pollers: int) -> tuple[int, int]:
    """(reports judged falseLock, reports) over `races` races."""
    from progress.auth import issue_token

    judged_false = reported = 0
    for _ in range(races):
        token = issue_token(uuid.uuid4(), "racer@example.com", secret=secret)
        headers = {"Authorization": f"Bearer {token}"}
        for receipt in race(apps, headers, pollers):
            answer = (
                apps[0]
                .test_client()
                .post(REPORT, headers=headers, json={**INTRO, "lockReceipt": receipt})
            )
            assert answer.status_code == 202, answer.get_json()
            reported += 1
            judged_false += answer.get_json()["falseLock"]
    return judged_false, reported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--races", type=int, default=76)
    parser.add_argument("--pollers", type=int, default=3)
    parser.add_argument("--instances", type=int, default=1)
    args = parser.parse_args()
    secret = "race-secret-" + "x" * 40
    name = databases.run_name("progress_race", "RACE_POSTGRES_DB")
    with tempfile.TemporaryDirectory(prefix="lock-race-") as tmp, databases.throwaway(name) as pg:
        root = Path(tmp)
        sqlite = f"sqlite:///{root / 'progress.db'}"
        for backend, url in (("PostgreSQL", pg), ("SQLite", sqlite)):
            count = args.instances if backend == "PostgreSQL" else 1
            apps = [build(url, root / f"{backend}-{i}", secret) for i in range(count)]
            for app in apps:
                serve_verified(app)
            judged_false, reported = play(apps, secret, args.races, args.pollers)
            print(
                f"{judged_false} of {reported} reports judged falseLock on {backend} "
                f"({args.races} races, {args.pollers} pollers, {count} instance(s))",
                flush=True,
            )
            from progress.extensions import db

            for app in apps:
                with app.app_context():
                    for engine in db.engines.values():
                        engine.dispose()


if __name__ == "__main__":
    main()
