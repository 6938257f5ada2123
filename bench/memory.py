"""What a cached learner costs: `python -m bench.memory` (also `make bench`'s memory phase).

In process: the service's own ProgressCache filled with learners whose snapshots hold every
lesson of the course (20), built as the store builds them (a UUID key, a dict of lesson id ->
timezone-aware datetime behind a MappingProxyType), the bytes counted with tracemalloc: the
entry alone, and the entry plus its version floor (which a completion or an announcement
adds).

In a real worker: learners with every lesson complete are written straight to PostgreSQL,
then one gunicorn worker (WEB_CONCURRENCY=1) is sent one access check per learner over
concurrent connections, and its RSS (VmRSS) is read before, at a checkpoint and after. The
misses on /metrics count the learners it loaded; a re-check of every 10th learner, newest
first, counts those it still holds (a hit is a held entry). Then the same with
PROGRESS_CACHE_MAXSIZE at the checkpoint: the cache stops growing there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import tracemalloc
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import requests

from harness import databases
from harness.flask_cli import migrate_and_seed
from harness.identity import TokenMinter
from harness.service import RunningService, start_service
from progress.cache import ProgressCache, ProgressSnapshot

from . import RESULTS_DIR, log
from .environment import service_env
from .learners import ACCESS, insert_cached_learners

LEARNERS = 10_000
BOUNDED_MAXSIZE = 2_000
# Cached before the first RSS reading, so threads, database connections and first-use
# imports are already paid for.
WARM_LEARNERS = 200
THREADS = 8
CONCURRENCY = 16
SAMPLE_EVERY = 10
# Longer than a fill takes: no entry expires while the worker is filled.
CACHE_TTL_S = 3600


def _snapshot(learner: uuid.UUID, lessons: int, base: datetime) -> ProgressSnapshot:
    completed = {
        lesson_id: base + timedelta(minutes=lesson_id) for lesson_id in range(1, lessons + 1)
    }
    return ProgressSnapshot(learner, lessons, MappingProxyType(completed))


def bytes_per_cached_learner(learners: int = 10_000, lessons: int = 20) -> dict[str, int]:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    cache = ProgressCache(maxsize=learners, ttl_s=3600)
    ids = [uuid.UUID(int=n + 1) for n in range(learners)]
    tracemalloc.start()
    try:
        start = tracemalloc.take_snapshot()
        for learner in ids:
            cache.put(_snapshot(learner, lessons, base))
        entries = tracemalloc.take_snapshot()
        for learner in ids:
            cache.raise_floor(learner, lessons)
        floors = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    def grown(after: tracemalloc.Snapshot, before: tracemalloc.Snapshot) -> int:
        return sum(stat.size_diff for stat in after.compare_to(before, "filename"))

    # The learner ids exist before the cache sees them (they come from the token), but a
    # cached learner keeps its UUID alive: count it.
    uuid_bytes = sum(ident.__sizeof__() + ident.int.__sizeof__() for ident in ids[:100]) // 100
    entry = grown(entries, start) // learners + uuid_bytes
    with_floor = entry + grown(floors, entries) // learners
    return {
        f"bytes per cached learner ({lessons} lessons), entry": entry,
        f"bytes per cached learner ({lessons} lessons), entry + version floor": with_floor,
    }


# ---------------------------------------------------------------- one real worker


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cache_lookups(server: RunningService) -> dict[str, int]:
    """progress_cache_lookups_total by result (hit, miss, stale), both paths summed."""
    text = requests.get(server.url + "/metrics", timeout=10).text
    totals: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("progress_cache_lookups_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            totals[result] = totals.get(result, 0) + int(float(line.rsplit(" ", 1)[1]))
    return totals


async def _check_each(url: str, tokens: Sequence[str], concurrency: int) -> list[str]:
    pending = iter(tokens)  # shared by the connections: each token is checked once
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:

        async def connection() -> None:
            for token in pending:
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(ACCESS, headers=headers) as response:
                    body = await response.read()
                    if response.status != 200:
                        failures.append(f"{response.status} {body[:200]!r}")

        await asyncio.gather(*(connection() for _ in range(concurrency)))
    return failures


def check_each(server: RunningService, tokens: Sequence[str], concurrency: int) -> None:
    """One access check per token, `concurrency` at a time."""
    failures = asyncio.run(_check_each(server.url, tokens, concurrency))
    if failures:
        raise RuntimeError(f"{len(failures)} access checks failed, first: {failures[0]}")


def fill_worker(
    env: Mapping[str, str],
    tmp: Path,
    tokens: Sequence[str],
    checkpoint: int,
    maxsize: int | None,
    concurrency: int,
) -> dict[str, int]:
    """One worker's RSS (KiB) before, at `checkpoint` and after every learner of `tokens`
    past the first WARM_LEARNERS is checked once; the learners it loaded, and those it
    still holds at the end."""
    settings = {"PROGRESS_CACHE_TTL_S": str(CACHE_TTL_S)}
    if maxsize is not None:
        settings["PROGRESS_CACHE_MAXSIZE"] = str(maxsize)
    server = start_service(settings, tmp, 1, THREADS, env, keep_stdout=False)
    try:
        server.wait_ready(timeout=60)
        workers = server.worker_pids()
        if len(workers) != 1:
            raise RuntimeError(f"the memory server should have one worker, has {workers}")
        (worker,) = workers
        warm, measured = tokens[:WARM_LEARNERS], tokens[WARM_LEARNERS:]
        check_each(server, warm, concurrency)
        before, looked_up = rss_kib(worker), cache_lookups(server)
        check_each(server, measured[:checkpoint], concurrency)
        at_checkpoint = rss_kib(worker)
        check_each(server, measured[checkpoint:], concurrency)
        after, filled = rss_kib(worker), cache_lookups(server)
        # Newest first: while the held entries are re-checked, none is evicted.
        check_each(server, measured[::-1][::SAMPLE_EVERY], concurrency)
        rechecked = cache_lookups(server)
    finally:
        server.stop()
    return {
        "before": before,
        "checkpoint": at_checkpoint,
        "after": after,
        "loaded": filled.get("miss", 0) - looked_up.get("miss", 0),
        "held": (rechecked.get("hit", 0) - filled.get("hit", 0)) * SAMPLE_EVERY,
    }


def worker_memory(
    env: Mapping[str, str],
    tmp: Path,
    learners: int = LEARNERS,
    bounded_maxsize: int = BOUNDED_MAXSIZE,
    concurrency: int = CONCURRENCY,
) -> dict[str, Any]:
    """A worker's RSS with `learners` (20 lessons each) cached, and with the cache bounded
    at `bounded_maxsize`; both workers see the same learners, on env's database."""
    if not 0 < bounded_maxsize < learners:
        raise ValueError("the bounded cache must hold fewer learners than are checked")
    log(f"memory: writing {learners + WARM_LEARNERS} learners with every lesson complete")
    tokens = insert_cached_learners(
        env["DATABASE_URL"],
        learners + WARM_LEARNERS,
        TokenMinter(secret=env["PROGRESS_JWT_SECRET"]),
    )
    log(f"memory: one worker, {learners} learners, default PROGRESS_CACHE_MAXSIZE")
    free = fill_worker(env, tmp, tokens, bounded_maxsize, None, concurrency)
    log(f"memory: one worker, {learners} learners, PROGRESS_CACHE_MAXSIZE={bounded_maxsize}")
    bounded = fill_worker(env, tmp, tokens, bounded_maxsize, bounded_maxsize, concurrency)

    def mib(kib: int) -> float:
        return round(kib / 1024, 1)

    def per_learner(kib: int, count: int) -> int:
        return round(kib * 1024 / max(1, count))

    past = learners - bounded_maxsize
    bound = f"PROGRESS_CACHE_MAXSIZE={bounded_maxsize}"
    growth_past = f"RSS growth per learner past {bounded_maxsize}, bytes"
    return {
        "learners loaded into the worker's cache (misses)": free["loaded"],
        f"learners it holds after {learners} (re-check of every {SAMPLE_EVERY}th)": free["held"],
        "worker RSS before, MiB": mib(free["before"]),
        f"worker RSS with {bounded_maxsize} learners cached, MiB": mib(free["checkpoint"]),
        f"worker RSS with {learners} learners cached, MiB": mib(free["after"]),
        "worker RSS growth per learner, bytes (cache, token, identity and flag memos)": (
            per_learner(free["after"] - free["before"], free["loaded"])
        ),
        f"unbounded: {growth_past}": per_learner(free["after"] - free["checkpoint"], past),
        f"{bound}: learners loaded (misses)": bounded["loaded"],
        f"{bound}: learners it holds after {learners}": bounded["held"],
        f"{bound}: worker RSS before, MiB": mib(bounded["before"]),
        f"{bound}: worker RSS after {bounded_maxsize} learners, MiB": mib(bounded["checkpoint"]),
        f"{bound}: worker RSS after {learners} learners, MiB": mib(bounded["after"]),
        f"{bound}: {growth_past} (what it does not bound)": (
            per_learner(bounded["after"] - bounded["checkpoint"], past)
        ),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--learners", type=int, default=LEARNERS, help="learners cached")
    parser.add_argument(
        "--bounded-maxsize",
        type=int,
        default=BOUNDED_MAXSIZE,
        help=f"PROGRESS_CACHE_MAXSIZE of the bounded run, below --learners "
        f"(default {BOUNDED_MAXSIZE})",
    )
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help="access checks in flight"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "memory.json")
    args = parser.parse_args(argv)
    if not 0 < args.bounded_maxsize < args.learners:
        parser.error("--bounded-maxsize must be at least 1 and below --learners")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    secret = secrets.token_urlsafe(36)
    name = databases.run_name("progress_memory", "BENCH_POSTGRES_DB")
    with (
        tempfile.TemporaryDirectory(prefix="progress-memory-") as tmp,
        databases.throwaway(name) as url,
    ):
        env = service_env(secret, url)
        log(f"database {name}: create, migrate, seed, rollout 50 %")
        migrate_and_seed(env, rollout=50, reason="bench")
        figures = bytes_per_cached_learner()
        figures |= worker_memory(
            env, Path(tmp), args.learners, args.bounded_maxsize, args.concurrency
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print("\n| figure | value |\n|---|---:|")
    for figure, value in figures.items():
        print(f"| {figure} | {value} |")
    print(f"\nresults in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
