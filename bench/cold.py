"""The cold access check in process, beside the `select 1` route, with its round trips.

`.venv/bin/python -m bench.cold [--requests 400] [--rounds 7]` builds the service on
PostgreSQL with `PROGRESS_CACHE_MAXSIZE=1` (database `progress_cold_<random>`, migrated and
seeded, dropped at the end), adds the `select 1` route of bench/select_app.py, lets learners
complete the first lesson on each path, and then calls the WSGI app with prepared environs
for access checks that rotate through the learners, so every check reads PostgreSQL. The
scenarios run interleaved, in a rotated order, for `--rounds` rounds; it prints the medians
of CPU (of the calling thread) and wall microseconds per request, the ratio of the
`select 1` route's cost to each, and the round trips one request makes (libpq's protocol
trace: each simple Query and each Sync is one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from flask import Flask

from harness import databases

from .in_process import PERCENT, service_in_process
from .profile import ACCESS, COMPLETE, WsgiCall, wsgi_call

DB_NAME = databases.run_name("progress_cold", "COLD_POSTGRES_DB")
SELECT_ONE = "/bench/select-1"


def with_select_one(app: Flask) -> Flask:
    """`app` with the `select 1` route the cold access check is compared with."""
    from progress.extensions import db  # after main() set the environment, as in profile.py

    @app.get(SELECT_ONE)
    def select_one() -> dict:
        value = db.session.execute(sa.text("select 1")).scalar_one()
        db.session.rollback()  # a transaction, as the service's reads had when it was written
        return {"value": value}

    return app


def round_trips(engine: sa.Engine, call: WsgiCall) -> int:
    """Round trips one request makes, counted at the wire on the connection it checks out
    (traced from before the pool's ping to the checkin)."""
    with tempfile.NamedTemporaryFile("r") as trace:
        fd = os.open(trace.name, os.O_WRONLY)

        def start(dbapi_conn: Any, *_args: Any) -> None:
            dbapi_conn.pgconn.trace(fd)
            dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

        def stop(dbapi_conn: Any, *_args: Any) -> None:
            dbapi_conn.pgconn.untrace()

        sa.event.listen(engine, "checkout", start, insert=True)
        sa.event.listen(engine, "checkin", stop)
        try:
            call()
        finally:
            sa.event.remove(engine, "checkout", start)
            sa.event.remove(engine, "checkin", stop)
            os.close(fd)
        sent = [line.split("\t")[2] for line in trace.read().splitlines() if line[:2] == "F\t"]
    return sum(1 for message in sent if message.startswith(("Query", "Sync")))


def per_request(calls: Sequence[WsgiCall], requests: int) -> tuple[float, float]:
    """CPU and wall microseconds per request, rotating through `calls` (the learners)."""
    for i in range(50):  # warm-up: pools, prepared statements, first-use imports
        calls[i % len(calls)]()
    cpu, wall = time.thread_time(), time.perf_counter()
    for i in range(requests):
        if calls[i % len(calls)]() != 200:
            raise RuntimeError("request failed")
    return (time.thread_time() - cpu) / requests * 1e6, (
        time.perf_counter() - wall
    ) / requests * 1e6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--learners", type=int, default=8, help="per path, rotated")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with service_in_process(DB_NAME, "progress-cold-", PROGRESS_CACHE_MAXSIZE="1") as service:
        from progress.extensions import db  # progress is imported once the service is built

        app = with_select_one(service.app)
        with app.app_context():
            engine = db.engine
        scenarios: dict[str, tuple[str | None, list[WsgiCall]]] = {
            "select-1": (None, [wsgi_call(app, "GET", SELECT_ONE, {})])
        }
        for path in PERCENT:
            service.serve(path)
            calls = []
            for _ in range(args.learners):
                headers = service.token("cold@example.com")
                if wsgi_call(app, "POST", COMPLETE, headers)() != 200:
                    raise RuntimeError("completing the first lesson failed")
                calls.append(wsgi_call(app, "GET", ACCESS, headers))
            scenarios[f"{path} cold"] = (path, calls)

        names = list(scenarios)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        trips = {}
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                path, calls = scenarios[name]
                if path is not None:
                    service.serve(path)
                figures[name].append(per_request(calls, args.requests))
                # not the learner the cache holds now
                trips[name] = round_trips(engine, calls[args.requests % len(calls)])

        cpu = {name: statistics.median(c for c, _ in figures[name]) for name in names}
        wall = {name: statistics.median(w for _, w in figures[name]) for name in names}
        print(f"# python -m bench.cold --requests {args.requests} --rounds {args.rounds}\n")
        print("| scenario | round trips | CPU µs | wall µs | select-1 ÷ this, CPU | wall |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            print(
                f"| {name} | {trips[name]} | {cpu[name]:.0f} | {wall[name]:.0f} "
                f"| {cpu['select-1'] / cpu[name]:.2f} | {wall['select-1'] / wall[name]:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
