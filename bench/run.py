"""The benchmark harness: `make bench`, or `.venv/bin/python -m bench.run --help`.

Measures, with wrk over loopback, under the same gunicorn settings (2 workers x 4 threads):
a bare Flask JSON endpoint; the warm access check (every learner cached) on each path; the
same with metrics off; the cold access check (PROGRESS_CACHE_MAXSIZE=1, so every check
reads PostgreSQL) beside an endpoint of the service that runs `select 1` through the same
engine; completions. The learners are split by a 50 % rollout, so one set of servers serves
both paths and every scenario runs in every round, in a rotated order; medians over the
rounds give the ratios, which are compared with the targets. Then the memory figures: bytes
per cached learner (20 lessons) measured in process, and one worker's RSS before and after
10,000 learners are cached, and with PROGRESS_CACHE_MAXSIZE=2000 (bench/memory.py). A
Markdown table goes to stdout, everything to `bench/results/latest.json`.

With `--baseline REV` the service at another git revision runs beside the working tree's
(checked out into a temporary directory, run with this virtualenv): its warm access check
and completion are measured in the same rounds, and the table gives current/baseline.

Everything it starts runs in its own process group and is stopped on the way out; the
databases it creates (`progress_bench_<random>`, or $BENCH_POSTGRES_DB; `_baseline` after
it for the baseline's) are dropped at the end.
"""

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import databases
from harness.flask_cli import migrate_and_seed
from harness.identity import TokenMinter
from harness.processes import REPO
from harness.service import RunningService, start_service
from progress.path_names import PATHS

from . import RESULTS_DIR, log
from .baseline import checkout, describe, imported_from
from .environment import service_env
from .learners import ACCESS, FIRST_LESSON, create_learners
from .memory import BOUNDED_MAXSIZE, LEARNERS, bytes_per_cached_learner, worker_memory
from .report import BASELINE_SCENARIOS, markdown, ratios, summarize, target_checks
from .wrk import Wrk, write_lua

DB_NAME = databases.run_name("progress_bench", "BENCH_POSTGRES_DB")
BARE = "/bare"
SELECT_ONE = "/bench/select-1"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per scenario")
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="wrk connections: many more than workers x threads, so the kernel can't hand "
        "them all to one worker (default 64)",
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every scenario")
    parser.add_argument("--learners", type=int, default=400, help="learners to rotate through")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY for every server")
    parser.add_argument(
        "--gunicorn-threads",
        type=int,
        default=int(os.environ.get("GUNICORN_THREADS", "4")),
        help="GUNICORN_THREADS for every server (default: $GUNICORN_THREADS or 4)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help="comma-separated paths to measure: legacy, verified (default: both)",
    )
    parser.add_argument(
        "--memory-learners",
        type=int,
        default=LEARNERS,
        help=f"learners cached in one worker for the RSS figures; 0 skips them "
        f"(default {LEARNERS})",
    )
    parser.add_argument(
        "--memory-maxsize",
        type=int,
        default=BOUNDED_MAXSIZE,
        help="PROGRESS_CACHE_MAXSIZE of the bounded RSS run, below --memory-learners "
        f"(default {BOUNDED_MAXSIZE})",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure the service at this git revision (e.g. main~3) in the same rounds, "
        "and report current/baseline ratios",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f"--paths takes {', '.join(PATHS)}; got {unknown or 'nothing'}")
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    if args.memory_learners and not 0 < args.memory_maxsize < args.memory_learners:
        parser.error("--memory-maxsize must be at least 1 and below --memory-learners")
    for name in ("duration", "repeats", "learners", "workers", "gunicorn_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Servers:
    """Every gunicorn the bench starts, under the same settings unless told otherwise."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.running: list[RunningService] = []

    def start(
        self,
        env: Mapping[str, str],
        *,
        target: str = "app:app",
        ready_path: str = "/healthz",
        root: Path = REPO,
        workers: int | None = None,
        threads: int | None = None,
    ) -> RunningService:
        server = start_service(
            {},
            self.tmp,
            workers or self.args.workers,
            threads or self.args.gunicorn_threads,
            env,
            target=target,
            ready_path=ready_path,
            root=root,
            keep_stdout=False,  # the app's JSON lines, one per request, are not kept
        )
        self.running.append(server)
        server.wait_ready(timeout=60)
        return server

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk_path = shutil.which("wrk")
    if wrk_path is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    secret = secrets.token_urlsafe(36)  # 48 characters
    started = time.monotonic()
    wrk = Wrk(args, wrk_path)
    memory: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="progress-bench-")))
        log(f"database {DB_NAME}: create, migrate, seed, rollout 50 %")
        base_env = service_env(secret, stack.enter_context(databases.throwaway(DB_NAME)))
        trees = {"current": tree_figures(REPO, describe(REPO), base_env)}
        migrate_and_seed(base_env, rollout=50, reason="bench")
        baseline_tree = baseline_env = None
        if args.baseline:
            baseline_tree = stack.enter_context(checkout(args.baseline))
            baseline_db = stack.enter_context(databases.throwaway(f"{DB_NAME}_baseline"))
            baseline_env = service_env(secret, baseline_db)
            revision = f"{args.baseline} = {describe(baseline_tree)}"
            trees["baseline"] = tree_figures(baseline_tree, revision, baseline_env)
            log(f"baseline {revision}: its own database, migrated and seeded by its own tree")
            migrate_and_seed(baseline_env, baseline_tree, rollout=50, reason="bench")
        servers = Servers(args, tmp)
        stack.callback(servers.stop_all)  # first out: before the databases and the tree go

        service = servers.start(base_env)
        baseline = servers.start(baseline_env, root=baseline_tree) if baseline_tree else None
        urls = [service.url] + ([baseline.url] if baseline else [])
        log(f"creating {args.learners} learners (each completes the first lesson)")
        learners = create_learners(urls, args.learners, TokenMinter(secret=secret))
        tokens = {path: [ln.token for ln in learners if ln.path == path] for path in PATHS}
        log(", ".join(f"{len(tokens[path])} on the {path} path" for path in PATHS))
        for path in args.paths:
            if not tokens[path]:
                raise RuntimeError(f"no learner landed on the {path} path at 50 %")
        cold = servers.start({**base_env, "PROGRESS_CACHE_MAXSIZE": "1"})
        quiet = servers.start({**base_env, "PROGRESS_METRICS": "off"})
        bare = servers.start(base_env, target="bench.bare_app:app", ready_path=BARE)
        select_one = servers.start(base_env, target="bench.select_app:app")

        def lua(name: str, method: str, url: str, group: Sequence[str]) -> Path:
            return write_lua(Path(tmp, f"{name}.lua"), method, url, group)

        everyone = [ln.token for ln in learners]
        scenarios: list[tuple[str, str, RunningService, Path, str]] = [
            ("-", "bare", bare, lua("bare", "GET", BARE, everyone), BARE),
            ("-", "select-1", select_one, lua("one", "GET", SELECT_ONE, everyone), SELECT_ONE),
        ]
        for path in args.paths:
            access = lua(f"access-{path}", "GET", ACCESS, tokens[path])
            complete = lua(f"complete-{path}", "POST", FIRST_LESSON, tokens[path])
            scenarios += [
                (path, "warm", service, access, ACCESS),
                (path, "warm_no_metrics", quiet, access, ACCESS),
                (path, "cold", cold, access, ACCESS),
                (path, "completion", service, complete, FIRST_LESSON),
            ]
            if baseline:
                scenarios += [
                    (path, BASELINE_SCENARIOS["warm"], baseline, access, ACCESS),
                    (path, BASELINE_SCENARIOS["completion"], baseline, complete, FIRST_LESSON),
                ]
        log(f"warm-up: {args.warmup} s of every scenario")
        for _path, scenario, server, script, url in scenarios:
            if not scenario.endswith("completion"):
                wrk.run(server, script, url, args.warmup)  # caches, pools, imports
        for repeat in range(1, args.repeats + 1):
            log(f"round {repeat}/{args.repeats}")
            shift = (repeat - 1) * 3 % len(scenarios)  # rotate: new order, new neighbours
            order = scenarios[shift:] + scenarios[:shift]
            if repeat % 2 == 0:
                order.reverse()
            for path, scenario, server, script, url in order:
                wrk.measure(server, script, url, path=path, scenario=scenario, repeat=repeat)
        servers.stop_all()

        memory = bytes_per_cached_learner()
        if args.memory_learners:
            memory |= worker_memory(base_env, tmp, args.memory_learners, args.memory_maxsize)

    rows = summarize(wrk.runs)
    ratio_map = ratios(rows, args.paths)
    per_cpu = ratios(rows, args.paths, "per_server_cpu_s")
    checks = target_checks(ratio_map, per_cpu)
    notes = []
    if any(row["errors"] for row in rows):
        notes.append("some runs had non-2xx answers or socket errors: see the errors column")
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(time.monotonic() - started, 1),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": args.wrk_threads,
            "repeats": args.repeats,
            "learners": args.learners,
            "workers": args.workers,
            "gunicorn_threads": args.gunicorn_threads,
            "paths": args.paths,
            "rollout": 50,
            "cold_cache": "PROGRESS_CACHE_MAXSIZE=1",
            "log_level": "INFO (lines written to /dev/null)",
            "baseline": args.baseline,
        },
        "trees": trees,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "summary": rows,
        "ratios": ratio_map,
        "ratios_per_server_cpu_s": per_cpu,
        "targets": checks,
        "memory": memory,
        "notes": notes,
        "table_markdown": markdown(rows, ratio_map, checks, memory, per_cpu, args.baseline),
        "runs": wrk.runs,
    }


def tree_figures(root: Path, revision: str, env: Mapping[str, str]) -> dict[str, str]:
    """Which source a server on `root` runs: the revision and the `progress` it imports."""
    module = imported_from(root, env)
    log(f"{revision}: progress imported from {module}")
    return {"revision": revision, "progress": str(module)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(report["table_markdown"])
    for note in report["notes"]:
        print(f"\nNote: {note}")
    print(f"\n{report['elapsed_s']} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
