"""What bounds one PostgreSQL primary: `make pg-capacity` or `python -m bench.pg_capacity`.

1. Completions per second: pgbench runs the completion transaction the store runs (lock
   the learner's version row, read their completions, insert one, bump the version, and
   `pg_notify` the new version), with NOTIFY and without, at several client counts.
2. NOTIFY deliveries per second to N listening workers: N listener connections (spread
   over a few processes), each LISTENing on the channel as a worker does, while pgbench
   commits completions; deliveries counted by the listeners (N x completions when they
   keep up).

It works on a database of its own on the machine's server (`progress_capacity`, or
$CAPACITY_POSTGRES_DB), migrated and seeded with the service's own commands, with
--learners learners; the database is dropped at the end. Results: a Markdown table on
stdout and JSON in bench/results/pg-capacity.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg

from bench import RESULTS_DIR, log
from harness import databases
from harness.flask_cli import migrate_and_seed

DB_NAME = databases.run_name("progress_capacity", "CAPACITY_POSTGRES_DB")
CHANNEL = "progress_versions"
# Listener connections are spread over this many processes (threads inside each).
LISTENER_PROCESSES = 4

# The store's completion (progress/store.py, mark_lesson_completed), learner drawn at random.
COMPLETION = """\\set n random(1, {learners})
BEGIN;
SELECT v.version FROM progress_versions v JOIN bench_learners b ON b.id = v.user_id
  WHERE b.n = :n FOR UPDATE OF v;
SELECT lesson_id, completed_at FROM lesson_progress
  WHERE user_id = (SELECT id FROM bench_learners WHERE n = :n);
UPDATE progress_versions SET version = version + 1, updated_at = now()
  WHERE user_id = (SELECT id FROM bench_learners WHERE n = :n) RETURNING version;
INSERT INTO lesson_progress (user_id, lesson_id, completed_at, version)
  SELECT b.id, o.lesson_id, now(), v.version FROM bench_learners b
  JOIN progress_versions v ON v.user_id = b.id
  JOIN bench_lesson_order o ON o.k = (v.version - 1) % 20
  WHERE b.n = :n ON CONFLICT (user_id, lesson_id) DO NOTHING;
{notify}END;
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE lesson_progress SET acknowledged_at = now()
  WHERE user_id = (SELECT id FROM bench_learners WHERE n = :n) AND acknowledged_at IS NULL;
END;
"""
NOTIFY = (
    "SELECT pg_notify('progress_versions', "
    "(SELECT id::text FROM bench_learners WHERE n = :n) || ':1');\n"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_capacity", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--learners", type=int, default=20_000)
    parser.add_argument("--clients", default="4,16", help="pgbench client counts")
    parser.add_argument("--listeners", default="0,4,16", help="listener counts")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "pg-capacity.json")
    return parser.parse_args(argv)


def db_url() -> str:
    return databases.database_url(DB_NAME)


def prepare(learners: int) -> None:
    databases.recreate(DB_NAME)
    env = {
        **os.environ,
        "PROGRESS_ENV": "production",
        "PROGRESS_JWT_SECRET": "capacity-" + "x" * 40,
        "DATABASE_URL": db_url(),
        "PROGRESS_LOG_LEVEL": "WARNING",
        "PROGRESS_INSTANCE_PATH": tempfile.mkdtemp(prefix="capacity-"),
    }
    migrate_and_seed(env)
    with psycopg.connect(db_url()) as conn:
        conn.execute("CREATE TABLE bench_learners (n int PRIMARY KEY, id uuid NOT NULL)")
        conn.execute(
            "CREATE TABLE bench_lesson_order AS SELECT (row_number() OVER "
            "(ORDER BY m.position, l.position) - 1)::int AS k, l.id AS lesson_id "
            "FROM lessons l JOIN modules m ON m.id = l.module_id"
        )
        conn.execute(
            "INSERT INTO bench_learners SELECT n, gen_random_uuid() "
            "FROM generate_series(1, %s) AS n",
            (learners,),
        )
        conn.execute(
            "INSERT INTO users (id, email, email_verified, created_at) "
            "SELECT id, 'capacity-' || n || '@example.com', true, now() FROM bench_learners"
        )
        conn.execute(
            "INSERT INTO progress_versions (user_id, version, updated_at) "
            "SELECT id, 0, now() FROM bench_learners"
        )
    with psycopg.connect(db_url(), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def listen(ready: Any, stop: Any, counts: Connection, connections: int) -> None:
    """Some workers' listeners: each a connection that LISTENs and counts what it
    receives, in a thread of its own (psycopg waits without holding the GIL)."""
    received = [0] * connections

    def one(index: int) -> None:
        with psycopg.connect(db_url(), autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            ready.release()
            while not stop.is_set():
                for _ in conn.notifies(timeout=0.5):
                    received[index] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts.send(sum(received))


def pgbench(script: Path, clients: int, duration: int) -> dict[str, float]:
    binary = shutil.which("pgbench") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None
    )
    if binary is None:
        raise SystemExit("pgbench not found (Debian: postgresql or postgresql-contrib)")
    result = subprocess.run(  # noqa: S603 - pgbench with arguments we built
        [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
         "-T", str(duration), "-f", str(script), db_url()],
        capture_output=True, text=True, timeout=duration + 120, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    tps = re.search(r"tps = ([\d.]+)", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    processed = re.search(r"number of transactions actually processed: (\d+)", result.stdout)
    if tps is None or processed is None:
        raise RuntimeError(f"can't read pgbench's output:\n{result.stdout}")
    return {
        "completions_per_s": round(float(tps.group(1)), 1),
        "latency_ms": float(latency.group(1)) if latency else None,
        "completions": int(processed.group(1)),
    }


def with_listeners(script: Path, clients: int, listeners: int, duration: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Semaphore(0), ctx.Event()
    pipes, processes = [], []
    processes_wanted = min(listeners, LISTENER_PROCESSES)
    for index in range(processes_wanted):
        share = listeners // processes_wanted + (index < listeners % processes_wanted)
        receiver, sender = ctx.Pipe(duplex=False)
        process = ctx.Process(target=listen, args=(ready, stop, sender, share), daemon=True)
        process.start()
        pipes.append(receiver)
        processes.append(process)
    for _ in range(listeners):
        if not ready.acquire(timeout=120):
            raise RuntimeError("a listener did not start")
    started = time.monotonic()
    figures = pgbench(script, clients, duration)
    time.sleep(1)  # let the listeners drain what was committed last
    stop.set()
    delivered = sum(pipe.recv() for pipe in pipes)
    for process in processes:
        process.join(timeout=10)
    elapsed = time.monotonic() - started
    expected = figures["completions"] * listeners
    return {
        **figures,
        "listeners": listeners,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed, 1),
        "delivered_share": round(delivered / expected, 4) if expected else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    listener_counts = [int(n) for n in args.listeners.split(",")]
    log(f"database {DB_NAME}: migrate, seed, {args.learners} learners")
    prepare(args.learners)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pg-capacity-") as tmp:
            on, off = Path(tmp, "notify.sql"), Path(tmp, "quiet.sql")
            on.write_text(COMPLETION.format(learners=args.learners, notify=NOTIFY))
            off.write_text(COMPLETION.format(learners=args.learners, notify=""))
            for count in clients:
                for name, script in (("off", off), ("on", on)):
                    figures = pgbench(script, count, args.duration)
                    rows.append({"notify": name, "clients": count, "listeners": 0, **figures})
                    log(f"NOTIFY {name}, {count} clients: {figures}")
            for listeners in listener_counts:
                figures = with_listeners(on, clients[-1], listeners, args.duration)
                rows.append({"notify": "on", "clients": clients[-1], **figures})
                log(f"NOTIFY on, {listeners} listeners: {figures}")
    finally:
        databases.drop(DB_NAME)
    lines = [
        "| NOTIFY | pgbench clients | listeners | completions/s | latency ms "
        "| deliveries/s | delivered |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        share = row.get("delivered_share")
        lines.append(
            f"| {row['notify']} | {row['clients']} | {row['listeners']} "
            f"| {row['completions_per_s']:.0f} | {row['latency_ms']} "
            f"| {row.get('deliveries_per_s', '-')} "
            f"| {'-' if share is None else f'{share:.1%}'} |"
        )
    table = "\n".join(lines)
    report = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python", "-m", "bench.pg_capacity", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "rows": rows,
        "table_markdown": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table + f"\n\nresults in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
