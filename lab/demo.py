"""`make demo`: the embedded service (SQLite, one gunicorn worker) with about fifty
simulated learners at 10% for about ten minutes, the guard on its own counters, and a slow
cache update (PROGRESS_FAULTS) under which the legacy path shows false lock screens. It
prints the URLs to open, a line of figures every half minute, and stops by itself.

Its data lives in instance/demo (made afresh each run), apart from `make run`'s."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import requests

from harness.flask_cli import flask, migrate_and_seed
from harness.identity import TokenMinter
from harness.processes import REPO
from harness.service import start_service
from progress.auth import issue_token

from .learners import Learner, LessonStep, Timeline, think_time
from .run import curriculum_steps

DEMO_NAMESPACE = uuid.UUID("6f1d4a4e-3f7b-4c8e-9a59-1b2f0c6d8e21")  # as `flask users demo`
PLAN_PATH = "/api/v1/admin/rollout"


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    parser.add_argument("--learners", type=int, default=50, help="learners at a time")
    parser.add_argument("--minutes", type=float, default=10, help="then it stops by itself")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--guard-interval", type=int, default=15, help="seconds between looks")
    parser.add_argument(
        "--faults",
        default="cache_update_delay_ms=400",
        help="PROGRESS_FAULTS: a slow cache update, which the legacy path answers around",
    )
    parser.add_argument("--think-time", type=float, default=3.0, help="seconds, mean")
    parser.add_argument(
        "--instance",
        type=Path,
        default=REPO / "instance" / "demo",
        help="where its data lives (made afresh)",
    )
    parser.add_argument(
        "--report-every", type=float, default=30, help="seconds between figure lines"
    )
    return parser.parse_args(argv)


def admin_token(secret: str) -> str:
    """The demo admin's token (`flask users demo` created the user)."""
    admin = uuid.uuid5(DEMO_NAMESPACE, "admin@example.com")
    return issue_token(admin, "admin@example.com", secret=secret, admin=True, ttl_s=4 * 3600)


async def learners(
    url: str,
    steps: list[LessonStep],
    secret: str,
    count: int,
    until: float,
    think_s: float,
    timeline: Timeline,
) -> None:
    """`count` learners at a time until `until` (monotonic): each walks the course, then a
    new learner takes its place. Learners are numbered, and each number is the same learner
    id in every run, so which of them the 10% stage sends to the verified path is the same
    every run (of the first twelve, learners 5 and 11)."""
    numbers = itertools.count()
    rng = random.Random(7)  # noqa: S311 - think times, not secrets
    think = think_time(think_s, rng)
    minter = TokenMinter(secret=secret)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as session:

        async def seat(index: int) -> None:
            await asyncio.sleep(index * think_s / count)  # arrive spread out
            while time.monotonic() < until:
                learner_id = uuid.uuid5(DEMO_NAMESPACE, f"learner-{next(numbers)}")
                learner = Learner([session], 0, steps, minter, timeline, think, True, learner_id)
                timeline.learner_started(count)
                walk = learner.run(len(steps) - 1)
                try:
                    await asyncio.wait_for(walk, max(until - time.monotonic(), 0.1))
                except TimeoutError:
                    break
                finally:
                    timeline.learner_finished()

        await asyncio.gather(*(seat(i) for i in range(count)))


def report(url: str, headers: dict[str, str], timeline: Timeline) -> None:
    """One line: completions and false locks by path, and the guard's estimate."""
    done = [r for r in timeline.requests if r[2] == "complete"]
    by_path = {p: sum(1 for r in done if r[1] == p) for p in ("legacy", "verified")}
    locks = {p: sum(1 for t in timeline.false_locks if t[1] == p) for p in ("legacy", "verified")}
    try:
        answer = requests.get(url + PLAN_PATH + "/evaluations?limit=1", headers=headers, timeout=5)
        latest = (answer.json().get("evaluations") or [None])[0]
    except (requests.RequestException, ValueError):
        latest = None
    guard = f"guard: {latest['decision']}, {latest['eta']['text']}" if latest else "guard: no look"
    log(
        f"completions legacy {by_path['legacy']}, verified {by_path['verified']}; false lock "
        f"screens legacy {locks['legacy']}, verified {locks['verified']}; {guard}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(argv)
    instance = options.instance.resolve()
    shutil.rmtree(instance, ignore_errors=True)
    instance.mkdir(parents=True)
    env = {
        "PROGRESS_ENV": "development",
        "PROGRESS_INSTANCE_PATH": str(instance),
        "DATABASE_URL": f"sqlite:///{instance / 'progress.db'}",
        "PROGRESS_LOG_LEVEL": "WARNING",
        "PROGRESS_FAULTS": options.faults,
        "PROGRESS_GUARD_INTERVAL_S": str(options.guard_interval),
    }
    migrate_and_seed(env)
    tokens = flask(["users", "demo"], env)
    flask(["rollout", "plan", "--enable", "--format", "json"], env)
    flask(["rollout", "advance", "--reason", "demo: the first stage", "--format", "json"], env)
    secret = (instance / "dev-jwt-secret").read_text().strip()
    service = start_service(
        {**env, "HOST": options.host}, Path(instance), workers=1, threads=8, port=options.port
    )
    try:
        service.wait_ready(30)
        url = f"http://{options.host}:{options.port}"
        headers = {"Authorization": f"Bearer {admin_token(secret)}"}
        steps = curriculum_steps(url)
        print(
            f"\nThe demo runs for {options.minutes:g} minutes at 10%, {options.learners} learners "
            f"at a time, the guard looking every {options.guard_interval} s "
            f"(faults: {options.faults}). Open:\n"
            f"  the rollout (admin)  {url}/admin/rollout\n"
            f"  the learner page     {url}/\n"
            f"  the API docs         {url}/apidoc/swagger/\n"
            f"  metrics              {url}/metrics\n"
            f"The service's log: {service.log_path}\n"
            f"Tokens (paste into the page):\n{tokens}\n",
            flush=True,
        )
        until = time.monotonic() + options.minutes * 60
        timeline = Timeline()

        async def run() -> None:
            walking = asyncio.create_task(
                learners(url, steps, secret, options.learners, until, options.think_time, timeline)
            )
            while not walking.done():
                await asyncio.wait({walking}, timeout=options.report_every)
                # requests in a thread: the learners keep walking meanwhile
                await asyncio.to_thread(report, url, headers, timeline)
            await walking

        asyncio.run(run())
        log("done: the learners stopped; the service stops now")
    finally:
        service.stop()


if __name__ == "__main__":
    main()
