"""Where a request's time goes: cProfile of the WSGI app in process.

`.venv/bin/python -m bench.profile [--path verified] [--requests 3000]` builds the service on
PostgreSQL (database `progress_profile`, migrated and seeded, dropped at the end), makes one
learner complete the first lesson, then calls the WSGI app directly with a prepared environ
for warm access checks, and does the same for the bare Flask app. It prints CPU microseconds
per request (interleaved rounds, medians) for the bare app, the access check as served (its
fast path) and the same check through the Flask route alone (the app behind the fast path),
then cProfile's top functions, by cumulative and by own time, for the one `--through-flask`
picks (CPU time of the calling thread, so a busy machine barely moves the figures).
`--stale-after-ms 0` makes every cached entry older than the stale limit.
Logs go to /dev/null at the production level (INFO), so the access-log line is paid for.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

from harness import databases

from .bare_app import app as bare_app
from .in_process import service_in_process

DB_NAME = databases.run_name("progress_profile", "PROFILE_POSTGRES_DB")
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"
ACCESS = "/api/v1/modules/basics/lessons/introductions/access"


WsgiCall = Callable[[], int]


def wsgi_call(app: Any, method: str, path: str, headers: dict[str, str]) -> WsgiCall:
    """A zero-argument function that sends one prepared request through `app`."""
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    status: list[str] = []

    def start_response(code: str, _headers: Any, _exc: Any = None) -> None:
        status.append(code)

    def call() -> int:
        status.clear()
        body = app(dict(environ), start_response)
        try:
            for _chunk in body:
                pass
        finally:
            if hasattr(body, "close"):
                body.close()
        return int(status[0].split()[0])

    return call


def measure(call: WsgiCall, requests: int, profile: cProfile.Profile | None) -> float:
    """CPU microseconds per request in this thread (without the profiler's overhead when
    `profile` is None): CPU time, not wall time, so other load on the machine barely moves
    it."""
    for _ in range(200):  # warm-up: caches, pools, first-use imports
        call()
    started = time.thread_time()
    if profile is not None:
        profile.enable()
    for _ in range(requests):
        status = call()
        if status != 200:
            raise RuntimeError(f"request answered {status}")
    if profile is not None:
        profile.disable()
    return (time.thread_time() - started) / requests * 1e6


def top_lines(profile: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls") :].rstrip()


# Where the levers act, as (label, how to find it in the stats).
LEVERS = (
    ("the token check (auth identify)", ("auth.py", "identify")),
    ("flag decision (verified_for)", ("flags.py", "verified_for")),
    ("the path's answer and its receipt (answer_access)", ("learner.py", "answer_access")),
    ("access log line and request metrics (logs end_request)", ("logs.py", "end_request")),
    ("Flask's request handling (Flask.wsgi_app)", ("app.py", "wsgi_app")),
    ("Flask's coroutine checks (iscoroutinefunction)", ("inspect.py", "iscoroutinefunction")),
)


def lever_figures(profile: cProfile.Profile, requests: int) -> list[str]:
    """Per request, under the profiler: the CPU microseconds each lever's code took,
    spectree's own share (its wrapper minus the view), and context-local look-ups."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cumulative(file: str, function: str) -> float:
        return sum(
            value[3]
            for (path, _line, name), value in stats.items()
            if path.endswith(file) and name == function
        )

    def calls(file: str, function: str) -> int:
        return sum(
            value[1]
            for (path, _line, name), value in stats.items()
            if path.endswith(file) and name == function
        )

    lines = []
    for label, (file, function) in LEVERS:
        lines.append(f"{label}: {cumulative(file, function) / requests * 1e6:.0f} µs")
    wrapper = cumulative("spec.py", "sync_validate")
    view = cumulative("learner.py", "check_access")
    lines.append(f"spectree around the view: {max(0.0, wrapper - view) / requests * 1e6:.0f} µs")
    lookups = calls("local.py", "__get__") + calls("local.py", "_get_current_object")
    lines.append(f"context-local look-ups: {lookups / requests:.0f} per request")
    total = cumulative("profile.py", "call")
    lines.append(f"whole request under the profiler: {total / requests * 1e6:.0f} µs")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--path", choices=("legacy", "verified"), default="verified")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", type=Path, help="also write the service's pstats here")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument(
        "--through-flask",
        action="store_true",
        help="profile the check through the Flask route alone, not its fast path",
    )
    parser.add_argument(
        "--stale-after-ms",
        type=int,
        help="PROGRESS_STALE_AFTER_MS for the service (0: every cached entry is stale)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = {} if args.stale_after_ms is None else {"PROGRESS_STALE_AFTER_MS": args.stale_after_ms}
    with service_in_process(DB_NAME, "progress-profile-", **config) as service:
        app = service.app
        service.serve(args.path)
        headers = service.token("profile@example.com")
        if wsgi_call(app, "POST", COMPLETE, headers)() != 200:
            raise RuntimeError("completing the first lesson failed")

        fast = wsgi_call(app, "GET", ACCESS, headers)
        through_flask = wsgi_call(app.wsgi_app.flask_wsgi, "GET", ACCESS, headers)  # type: ignore[attr-defined]
        calls = {
            "bare": wsgi_call(bare_app, "GET", "/bare", {}),
            f"{args.path} warm access check (fast path)": fast,
            f"{args.path} warm access check (Flask route)": through_flask,
        }
        rounds: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                rounds[name].append(measure(call, args.requests, None))
        plain = {name: statistics.median(values) for name, values in rounds.items()}
        profile = cProfile.Profile(time.thread_time)  # CPU time, as above
        measure(through_flask if args.through_flask else fast, args.requests, profile)

        stale = "" if args.stale_after_ms is None else f" --stale-after-ms {args.stale_after_ms}"
        flask = " --through-flask" if args.through_flask else ""
        print(
            f"# python -m bench.profile --path {args.path} --requests {args.requests}"
            f" --rounds {args.rounds}{stale}{flask}\n"
        )
        for name, value in plain.items():
            print(f"{name}: {value:.0f} µs of CPU per request (no profiler; median)")
        bare = plain["bare"]
        for name, value in list(plain.items())[1:]:
            print(f"{name} / bare: {value / bare:.2f}")
        if args.dump:
            profile.dump_stats(args.dump)
        print("\n## the levers, per request (CPU time under the profiler)\n")
        print("\n".join(lever_figures(profile, args.requests)))
        print(f"\n## top {args.top} by cumulative time\n")
        print(top_lines(profile, "cumulative", args.top))
        print(f"\n## top {args.top} by own time\n")
        print(top_lines(profile, "tottime", args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
