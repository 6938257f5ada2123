"""The consistency lab: `python -m lab` (or `make lab LAB_ARGS='...'`).

Real processes prove that the verified path shows no false lock screen under load and
faults: N gunicorn instances of W workers on a PostgreSQL primary with a lagging hot
standby, M simulated learners (all active at once, each a coroutine with think times)
walking lessons through a round-robin "load balancer", injected cache faults, optionally a
worker killed with SIGKILL mid-run. It prints a table
per path and exits 0 only when the verified path showed no false lock screen, the legacy
path showed some (the race was really exercised), the learners' count of reported lock
screens equals the metrics' `client_report` count, and no acknowledged completion is
missing from the primary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
import requests

from harness import prometheus
from harness.flask_cli import FLASK, flask, migrate_and_seed
from harness.identity import MODES, TokenMinter, start_minter
from harness.processes import REPO, on_tree, stop_group
from harness.service import RunningService, service_environment, start_service
from progress import faults

from . import plot, postgres, report
from .learners import Learner, LearnerResult, LessonStep, Timeline, think_time

DEFAULT_FAULTS = "cache_update_delay_ms=300,cache_update_failure_rate=0.2"
# Inherited settings that would change what is measured; the lab sets its own.
SCRUBBED_PREFIXES = ("PROGRESS_", "DATABASE_", "UNLEASH_", "PROMETHEUS_", "GUNICORN_")
SCRUBBED = ("prometheus_multiproc_dir", "BIND", "HOST", "PORT", "WEB_CONCURRENCY")


def log(message: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _at_least(minimum: int) -> Any:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


def _faults(raw: str) -> str:
    try:
        faults.parse(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return raw


def _percent(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be within 0..100")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab",
        description="The consistency lab: zero false lock screens on the verified path, "
        "on real processes, under load and faults.",
    )
    add = parser.add_argument
    add("--instances", type=_at_least(1), default=2, help="gunicorn instances (default 2)")
    add("--workers", type=_at_least(1), default=2, help="workers per instance (default 2)")
    add(
        "--threads",
        type=_at_least(1),
        default=16,
        help="threads per worker (default 16: the verified path's bounded waits, a cache "
        "update or a replica-lag retry, hold a thread while they sleep)",
    )
    add("--learners", type=_at_least(1), default=1000, help="simulated learners (default 1000)")
    add("--rollout", type=_percent, default=50, help="verified path percentage (default 50)")
    add(
        "--faults",
        type=_faults,
        default=DEFAULT_FAULTS,
        help=f"PROGRESS_FAULTS for every instance (default {DEFAULT_FAULTS!r}; '' for none)",
    )
    add(
        "--replica-lag-ms",
        type=_at_least(0),
        default=500,
        help="a throwaway primary + hot standby applying commits this late; 0: no replica, "
        "a database on the machine's server (default 500)",
    )
    add("--kill-worker", action="store_true", help="SIGKILL a worker of instance 0 mid-run")
    add(
        "--offered-rate",
        type=float,
        default=60.0,
        help="requests per second the learners offer (default 60: what this service serves "
        "with room on a busy 2-core machine); sets the think time and the ramp",
    )
    add(
        "--think-time-s",
        type=float,
        help="mean seconds a learner reads a lesson, and again works through it (uniform "
        "0.75x..1.25x; 0: none) (default: 2 x learners / --offered-rate)",
    )
    add(
        "--ramp-s",
        type=float,
        help="learners open the app evenly over this many seconds, less than one session, so "
        "that all of them are active at once (default: learners / --offered-rate)",
    )
    add(
        "--connections",
        type=_at_least(1),
        default=128,
        help="keep-alive connections per instance that the load balancer keeps (default 128)",
    )
    add("--seed", type=int, default=13, help="random seed for think times (default 13)")
    add(
        "--lessons",
        type=_at_least(1),
        help="lessons per learner (default 3; 1 above 2,000 learners, so that a run stays "
        "within 20 minutes at --offered-rate)",
    )
    add(
        "--guard",
        action="store_true",
        help="also run a real Prometheus and the rollout guard (a sidecar) with stages 0,10,100 "
        "and auto-advance; print its evaluations and the rollout history",
    )
    add(
        "--token-mode",
        choices=MODES,
        default="hs256",
        help="learners' tokens: hs256 (a shared secret, the default) or jwks (signed with an "
        "ES256 key a key server in this process publishes, as an identity provider would)",
    )
    add(
        "--old-clients",
        action="store_true",
        help="learners' clients never send minVersion (the old app's client), so only the "
        "service's own layers stand between a stale copy and a false lock",
    )
    add("--guard-stage-seconds", type=_at_least(1), default=20, help="minimum stage time (20)")
    add(
        "--tune",
        action="store_true",
        help="also run a real Prometheus scraping the instances and, after the traffic, "
        "`flask rollout tune` against it: the timeouts the run's latencies recommend",
    )
    add("--report", "--json", dest="report", type=Path, help="write the report as JSON here")
    add(
        "--plot",
        type=Path,
        help="write a PNG of access-check latency and false lock screens over time per path "
        "(default: beside --report, with .png)",
    )
    add("--logs", type=Path, help="copy the instances' logs into this directory")
    args = parser.parse_args(argv)
    if args.lessons is None:
        args.lessons = 3 if args.learners <= 2000 else 1
    # After its first request a learner makes 4 per lesson (access, access, complete, review)
    # over 2 think times per lesson: 2 / think time requests per second; the ramp offers the
    # first requests at the rate.
    if args.think_time_s is None:
        args.think_time_s = round(2 * args.learners / args.offered_rate, 1)
    if args.ramp_s is None:
        args.ramp_s = round(args.learners / args.offered_rate, 1)
    return args


# ---------------------------------------------------------------- environment and CLI


def base_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(SCRUBBED_PREFIXES) and key not in SCRUBBED
    }


# ---------------------------------------------------------------- the rollout guard


class GuardRun:
    """A real Prometheus scraping the instances; with --guard a guard plan and `flask
    rollout guard --loop` as a sidecar judging the rollout while the learners run; with
    --tune, `flask rollout tune` against that Prometheus after the traffic."""

    def __init__(
        self,
        args: argparse.Namespace,
        env: Mapping[str, str],
        services: Sequence[RunningService],
        root: Path,
    ) -> None:
        self._env = dict(env)
        self._args = args
        targets = [service.url.removeprefix("http://") for service in services]
        self._prometheus = prometheus.running_prometheus(targets, root)
        server = self._server = self._prometheus.__enter__()
        self._sidecar: subprocess.Popen | None = None
        if not args.guard:
            log(f"Prometheus at {server.url}, scraping every second")
            return
        stage_s = str(args.guard_stage_seconds)
        # A lab run counts hundreds of completions: enough for the guard's sequential test
        # to tell 5 points (docs/guard.md), far from enough for the default 0.1.
        flask(
            ["rollout", "plan", "--stages", "0,10,100", "--min-stage-seconds", stage_s,
             "--min-completions", "20", "--min-access-checks", "40", "--auto-advance",
             "--success-rate-margin", "0.05", "--on-failure", "rollback", "--enable",
             "--resume"],
            self._env,
        )  # fmt: skip
        self._log = open(root / "guard.log", "w")  # noqa: SIM115 - open for the sidecar's life
        self._sidecar = subprocess.Popen(  # noqa: S603 - our own flask, fixed arguments
            [*FLASK, "rollout", "guard", "--loop"],
            cwd=REPO,
            env=on_tree(
                {
                    **self._env,
                    "PROMETHEUS_URL": server.url,
                    "PROGRESS_GUARD_INTERVAL_S": "3",
                    "PROGRESS_GUARD_MIN_WINDOW_S": "5",
                },
                REPO,
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log(f"guard: Prometheus at {server.url}, sidecar every 3 s, stages 0,10,100")

    def finish(self) -> dict[str, Any]:
        if self._sidecar is not None:
            stop_group(self._sidecar)
            self._log.close()
        tuned = self._tune() if self._args.tune else None
        self._prometheus.__exit__(None, None, None)
        if self._sidecar is None:
            return {"tune": tuned}
        timeline: dict[str, Any] = {
            "evaluations": flask(
                ["rollout", "evaluations", "--limit", "200", "--format", "text"], self._env
            ),
            "history": flask(["rollout", "history", "--format", "text"], self._env),
        }
        print("\n# rollout guard: evaluations, oldest last\n" + timeline["evaluations"])
        print("\n# rollout history, newest first\n" + timeline["history"])
        timeline["tune"] = tuned
        return timeline

    def _tune(self) -> dict[str, Any]:
        """`flask rollout tune` against this Prometheus once it scraped the run's end."""
        self._server.wait_for_scrape("lesson-progress", after=time.time())
        env = {**self._env, "PROMETHEUS_URL": self._server.url}
        text = flask(["rollout", "tune", "--days", "1", "--format", "text"], env)
        print("\n# flask rollout tune --days 1, against the run's Prometheus\n" + text)
        return json.loads(flask(["rollout", "tune", "--days", "1", "--format", "json"], env))


# ---------------------------------------------------------------- killing a worker


class WorkerKiller:
    """SIGKILL one worker of an instance, once, and later check the master replaced it."""

    def __init__(self, service: RunningService) -> None:
        self.service = service
        self.victim: int | None = None
        self.at_s: float | None = None
        self.error: str | None = None
        self._started = time.monotonic()

    def fire(self) -> None:
        pids = self.service.worker_pids()
        if not pids:
            self.error = "no worker pid found under the master"
            log(f"WARNING: could not kill a worker: {self.error}")
            return
        self.victim = pids[0]
        self.at_s = round(time.monotonic() - self._started, 2)
        os.kill(self.victim, signal.SIGKILL)
        log(f"SIGKILL to worker {self.victim} of instance 0 (workers were {pids})")

    def outcome(self, workers: int, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        pids = self.service.worker_pids()
        while self.victim is not None and time.monotonic() < deadline:
            pids = self.service.worker_pids()
            if self.victim not in pids and len(pids) == workers:
                break
            time.sleep(0.2)
        return {
            "killed_pid": self.victim,
            "at_s": self.at_s,
            "error": self.error,
            "workers_after": pids,
            "replaced": self.victim is not None
            and self.victim not in pids
            and len(pids) == workers,
        }


# ---------------------------------------------------------------- traffic


def curriculum_steps(url: str) -> list[LessonStep]:
    answer = requests.get(url + "/api/v1/curriculum", timeout=30)
    answer.raise_for_status()
    return [
        LessonStep(module["id"], lesson["id"], tuple(w["term"] for w in lesson.get("words", [])))
        for module in answer.json()["modules"]
        for lesson in module["lessons"]
    ]


async def _drive(
    args: argparse.Namespace,
    urls: Sequence[str],
    steps: Sequence[LessonStep],
    minter: TokenMinter,
    killer: WorkerKiller | None,
    timeline: Timeline,
) -> list[LearnerResult]:
    rng = random.Random(args.seed)  # noqa: S311 - think times, not secrets
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [
        aiohttp.ClientSession(
            base_url=url,
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=4),
        )
        for url in urls
    ]
    think = think_time(args.think_time_s, rng)
    learners = [
        Learner(sessions, i % len(urls), steps, minter, timeline, think, not args.old_clients)
        for i in range(args.learners)
    ]
    kill_at = max(1, args.learners // 3)

    async def walk(index: int, learner: Learner) -> LearnerResult:
        await asyncio.sleep(args.ramp_s * index / len(learners))
        timeline.learner_started(len(learners))
        if killer is not None and timeline.started_learners == kill_at:
            killer.fire()
        try:
            return await learner.run(args.lessons)
        finally:
            timeline.learner_finished()

    async def progress() -> None:
        seen_requests = 0
        while True:
            await asyncio.sleep(10)
            answered = len(timeline.requests)
            log(
                f"{timeline.finished_learners}/{len(learners)} learners done, "
                f"{timeline.active} active (peak {timeline.peak_active}), "
                f"{(answered - seen_requests) / 10:.0f} answers/s"
            )
            seen_requests = answered

    reporter = asyncio.create_task(progress())
    try:
        return list(await asyncio.gather(*(walk(i, ln) for i, ln in enumerate(learners))))
    finally:
        reporter.cancel()
        for session in sessions:
            await session.close()


def drive(
    args: argparse.Namespace,
    urls: Sequence[str],
    steps: Sequence[LessonStep],
    minter: TokenMinter,
    killer: WorkerKiller | None,
    timeline: Timeline,
) -> list[LearnerResult]:
    """Every learner a coroutine on one event loop: all of them active at once."""
    return asyncio.run(_drive(args, urls, steps, minter, killer, timeline))


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    started = time.monotonic()
    phases: dict[str, float] = {}
    secret = secrets.token_urlsafe(36)  # 48 characters
    minter = start_minter(args.token_mode, secret)
    env = {**base_environment(), **minter.settings()}
    with tempfile.TemporaryDirectory(prefix="progress-lab-") as tmp:
        root = Path(tmp)
        log(
            "database: "
            + (
                f"throwaway primary + standby lagging {args.replica_lag_ms} ms"
                if args.replica_lag_ms
                else f"{postgres.DB_NAME} on the machine's server"
            )
        )
        with postgres.lab_database(root, args.replica_lag_ms) as (database, pair):
            log(database.description)
            common = {
                **env,
                **service_environment(
                    secret,
                    database.primary_url,
                    PROGRESS_INSTANCE_PATH=str(root / "instance-cli"),
                ),
            }
            migrate_and_seed(common, rollout=args.rollout, reason="lab")
            if pair is not None:
                caught_up = pair.wait_caught_up()
                log(f"standby caught up with migrations and seed in {caught_up:.1f} s")
            phases["database_s"] = round(time.monotonic() - started, 1)

            services: list[RunningService] = []
            try:
                for index in range(args.instances):
                    instance_env = service_environment(
                        secret,
                        database.primary_url,
                        **minter.settings(),
                        PROGRESS_FAULTS=args.faults,
                        # The instances share this machine's clock, so a lock read after the
                        # acknowledgement is judged false however soon: learners' and metrics'
                        # counts agree with --old-clients too (docs/lock-receipts.md).
                        PROGRESS_CLOCK_SKEW_MS="0",
                        PROMETHEUS_MULTIPROC_DIR=str(root / f"metrics-{index}"),
                        PROGRESS_FLAG_REFRESH_S="1",
                        GUNICORN_LOG_LEVEL="warning",
                        PYTHONUNBUFFERED="1",
                    )
                    if database.replica_url:
                        instance_env["DATABASE_REPLICA_URL"] = database.replica_url
                    services.append(
                        start_service(instance_env, root, args.workers, args.threads, env)
                    )
                for service in services:
                    service.wait_ready(timeout=60)
                urls = [service.url for service in services]
                log(f"{args.instances} instances x {args.workers} workers: {', '.join(urls)}")
                phases["startup_s"] = round(time.monotonic() - started - phases["database_s"], 1)

                steps = curriculum_steps(urls[0])
                if args.lessons >= len(steps):
                    raise SystemExit(
                        f"--lessons must be below the course's {len(steps)} lessons "
                        "(each learner opens the lesson after its last)"
                    )
                guard = GuardRun(args, common, services, root) if args.guard or args.tune else None
                killer = WorkerKiller(services[0]) if args.kill_worker else None
                log(
                    f"{args.learners} learners x {args.lessons} lessons, all active at once "
                    f"(started over {args.ramp_s:g} s, think time {args.think_time_s:g} s), "
                    f"rollout {args.rollout}%, faults {args.faults or 'none'}"
                )
                traffic_started = time.monotonic()
                timeline = Timeline()
                try:
                    results = drive(args, urls, steps, minter, killer, timeline)
                finally:
                    guard_timeline = guard.finish() if guard else None
                phases["traffic_s"] = round(time.monotonic() - traffic_started, 1)
                kill = killer.outcome(args.workers) if killer else None

                samples = report.scrape(urls)
                lost = report.lost_completions(database.primary_url, results)
            finally:
                for service in services:
                    service.stop()
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    for index, service in enumerate(services):
                        shutil.copy(service.log_path, args.logs / f"instance-{index}.log")

    views = report.learners_by_path(results)
    metrics_by_path = {path: report.path_metrics(samples, path) for path in report.PATHS}
    reads = {path: report.path_reads(samples, path) for path in report.PATHS}
    checks = report.verdict(views, metrics_by_path, lost, args.rollout)
    agreement = {
        path: report.counts_agree(views[path], metrics_by_path[path]["false_locks_client_report"])
        for path in report.PATHS
    }
    phases["total_s"] = round(time.monotonic() - started, 1)
    passed = all(check.ok for check in checks)
    path_of = {r.learner_id: r.path for r in results}
    lost_by_path = dict.fromkeys(report.PATHS, 0)
    for item in lost:
        lost_by_path[path_of.get(item["learner"]) or "legacy"] += 1
    rates = report.rates(timeline, args)
    result = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "learners": args.learners,
        "peakConcurrentLearners": timeline.peak_active,
        "rates": rates,
        "command": " ".join(["python", "-m", "lab", *sys.argv[1:]]),
        "config": {
            "instances": args.instances,
            "workers": args.workers,
            "threads": args.threads,
            "learners": args.learners,
            "lessons": args.lessons,
            "think_time_s": args.think_time_s,
            "offered_rate": args.offered_rate,
            "ramp_s": args.ramp_s,
            "connections_per_instance": args.connections,
            "rollout": args.rollout,
            "faults": args.faults,
            "replica_lag_ms": args.replica_lag_ms,
            "kill_worker": args.kill_worker,
        },
        "database": {
            "description": database.description,
            "primary_url": database.primary_url,
            "replica_url": database.replica_url,
        },
        "wall_time_s": phases["total_s"],
        "phases": phases,
        "paths": {
            path: {
                "falseLockScreensSeen": view.false_locks_seen,
                "staleReviewSetsSeen": view.stale_reviews_seen,
                "reviewMs": view.latency_ms("review"),
                "completionsAcknowledged": view.acknowledged,
                "completionsLost": lost_by_path.get(path, 0),
                "metricsAgree": agreement[path][0] if path in agreement else None,
                "accessCheckMs": view.latency_ms("access"),
                "completionMs": view.latency_ms("complete"),
                "reads": reads[path],
                "primaryShareOfReads": reads[path]["primaryShare"],
                "primaryReadsPerCompletion": reads[path]["primaryReadsPerCompletion"],
                "primaryReadsPerCompletionBesidesReview": reads[path][
                    "primaryReadsPerCompletionBesidesReview"
                ],
                **{k: v for k, v in asdict(view).items() if k != "latencies"},
                "latency": {kind: view.latency_ms(kind) for kind in sorted(view.latencies)},
                "metrics": metrics_by_path.get(path, {}),
                "counts_agree": agreement[path][0] if path in agreement else None,
            }
            for path, view in views.items()
        },
        "db_retries": report.db_retries(samples),
        "guard_timeline": guard_timeline,
        "kill": kill,
        "lost_acknowledged_completions": lost,
        "aborted_learners": [
            {"learner": r.learner_id, "path": r.path, "why": r.aborted}
            for r in results
            if r.aborted
        ],
        "checks": [asdict(check) for check in checks],
        "passed": passed,
        "table_markdown": report.markdown_table(views, metrics_by_path, agreement, reads),
    }
    result["timeline"] = timeline
    return result, passed


def print_report(result: Mapping[str, Any]) -> None:
    print()
    print(result["table_markdown"])
    rates = result["rates"]
    print(
        f"\nlearners {result['learners']}, at once (peak) {result['peakConcurrentLearners']}; "
        f"while all were active ({rates['window_s']} s): offered {rates['offered_per_s']} req/s "
        f"(sent), served {rates['served_per_s']} req/s; the think-time model's rate "
        f"{rates['planned_per_s']} req/s; over the whole run {rates['served_overall_per_s']} "
        f"req/s served"
    )
    retries = result["db_retries"]
    print(
        f"\nDB retries (both paths; the family has no path label): "
        f"replica_lag {retries['replica_lag']}, db_error {retries['db_error']}"
    )
    for path, figures in result["paths"].items():
        reads = figures["reads"]
        why = ", ".join(
            f"{target} {reason} {count}"
            for target in ("primary", "replica")
            for reason, count in reads["byReason"][target].items()
            if count
        )
        print(
            f"{path} reads: primary {reads['primary']}, replica {reads['replica']}; the "
            f"primary's share {reads['primaryShare']}, primary reads per completion "
            f"{reads['primaryReadsPerCompletion']} "
            f"({reads['primaryReadsPerCompletionBesidesReview']} besides review sets' "
            f"confirmations; {why or 'none'})"
        )
    if result["kill"]:
        kill = result["kill"]
        print(
            f"killed worker: pid {kill['killed_pid']} of instance 0 at {kill['at_s']} s; "
            f"replaced by the master: {'yes' if kill['replaced'] else 'NO'}"
        )
    lost = result["lost_acknowledged_completions"]
    print(f"lost acknowledged completions: {len(lost)}")
    for item in lost[:50]:
        print(f"  learner {item['learner']}: {item['moduleId']}/{item['lessonId']}")
    for aborted in result["aborted_learners"][:10]:
        print(f"aborted learner {aborted['learner']} ({aborted['path']}): {aborted['why']}")
    print()
    for check in result["checks"]:
        print(f"[{'ok' if check['ok'] else 'FAIL'}] {check['name']}: {check['detail']}")
    phases = ", ".join(f"{name} {value}" for name, value in result["phases"].items())
    print(f"\nwall time {result['wall_time_s']} s ({phases})")
    print("PASSED" if result["passed"] else "FAILED")


def _stop_on_signal(signum: int, frame: object) -> None:
    log(f"signal {signum}: stopping learners, instances and the database")
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replica_lag_ms > 0:
        missing = postgres.missing_requirements()
        if missing:
            print(f"the lab needs a PostgreSQL server installation: {missing}", file=sys.stderr)
            return 2
    # SIGTERM unwinds like Ctrl-C, so every server and the database are removed.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    try:
        result, passed = run(args)
    except KeyboardInterrupt:
        log("interrupted; everything the lab started has been stopped and removed")
        return 130
    print_report(result)
    timeline = result.pop("timeline")
    picture = args.plot or (args.report.with_suffix(".png") if args.report else None)
    if picture is not None:
        picture.parent.mkdir(parents=True, exist_ok=True)
        plot.draw(timeline, picture, f"{args.learners} learners, rollout {args.rollout} %")
        result["plot"] = str(picture)
        print(f"picture: {picture}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(result, indent=2) + "\n")
        print(f"report: {args.report}")
    return 0 if passed else 1
