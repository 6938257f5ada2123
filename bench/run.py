"""The benchmark harness: `make bench`, or `.venv/bin/python -m bench.run --help`.

Measures, with wrk over loopback, under the same gunicorn settings (2 workers x 4 threads):
a bare Flask JSON endpoint; the warm access check (every learner cached) on each path; the
same with metrics off; the cold access check (PROGRESS_CACHE_MAXSIZE=1, so every check
reads PostgreSQL) beside an endpoint of the service that runs `select 1` through the same
engine; completions. The learners are split by a 50 % rollout, so one set of servers serves
both paths and every scenario runs in every round, in a rotated order; medians over the
rounds give the ratios, which are compared with the targets. Then the memory figures: bytes
per cached learner (20 lessons) measured in process, and one worker's RSS before and after
10,000 learners are cached. A Markdown table goes to stdout, everything to
`bench/results/latest.json`.

Everything it starts runs in its own process group and is stopped on the way out; the
database it creates (`progress_bench`, or $BENCH_POSTGRES_DB) is dropped at the end.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = os.environ.get("BENCH_POSTGRES_DB", "progress_bench")
PATHS = ("legacy", "verified")

FIRST_LESSON = "/api/v1/modules/basics/lessons/greetings/complete"
ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
BARE = "/bare"
SELECT_ONE = "/bench/select-1"

SCENARIOS = ("warm", "warm_no_metrics", "cold", "completion")
# The issue's targets: (ratio name, comparison, bound).
TARGETS = (
    ("legacy: warm/bare req/s", ">=", 0.8),
    ("verified: warm/bare req/s", ">=", 0.8),
    ("verified/legacy warm req/s", ">=", 0.95),
    ("legacy: cold/select-1 req/s", ">=", 0.5),
    ("verified: cold/select-1 req/s", ">=", 0.5),
    ("verified/legacy completion median latency", "<=", 1.3),
)
MEMORY_LEARNERS = 10_000
# Inherited settings that would change what is measured; the harness sets its own.
SCRUBBED_ENV = (
    "PROGRESS_FAULTS",
    "DATABASE_REPLICA_URL",
    "UNLEASH_URL",
    "UNLEASH_API_TOKEN",
    "UNLEASH_ADMIN_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR",
    "prometheus_multiproc_dir",
    "PROGRESS_CACHE_MAXSIZE",
    "PROGRESS_CACHE_TTL_S",
    "PROGRESS_METRICS",
    "BIND",
    "HOST",
    "PORT",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


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
        default=MEMORY_LEARNERS,
        help=f"learners cached for the RSS figure; 0 skips it (default {MEMORY_LEARNERS})",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f"--paths takes {', '.join(PATHS)}; got {unknown or 'nothing'}")
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections")
    for name in ("duration", "repeats", "learners", "workers", "gunicorn_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# ---------------------------------------------------------------- processes and database


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        name = sql.Identifier(DB_NAME)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database() -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME))
        )


def service_env(secret: str, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(
        PROGRESS_ENV="production",
        PROGRESS_JWT_SECRET=secret,
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}",
        PROGRESS_LOG_LEVEL="INFO",  # production's level: the access line is paid for
        WEB_CONCURRENCY=str(args.workers),
        GUNICORN_THREADS=str(args.gunicorn_threads),
        GUNICORN_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def flask_cli(cli_args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flask", "--app", "app", *cli_args]
    return subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        command, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=120, check=False
    )


def flask_cli_checked(cli_args: Sequence[str], env: Mapping[str, str]) -> None:
    result = flask_cli(cli_args, env)
    if result.returncode != 0:
        raise RuntimeError(
            f"flask {' '.join(cli_args)} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


class Server:
    """One gunicorn master and its workers, in a process group of their own."""

    def __init__(
        self, name: str, target: str, env: Mapping[str, str], ready_path: str, log_dir: Path
    ) -> None:
        self.name = name
        self.target = target
        self.port = free_port()
        self.env = {**env, "BIND": f"127.0.0.1:{self.port}"}
        self.ready_path = ready_path
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgid(self) -> int:
        assert self.process is not None
        return self.process.pid  # start_new_session: the master leads its own group

    def start(self, timeout_s: float = 60.0) -> None:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.target]
        with self.log_path.open("a") as log_file:
            log_file.write(f"\n=== {time.strftime('%H:%M:%S')} start {self.target}\n")
            log_file.flush()
            # The app's JSON lines (one per request, written as in production) are not kept.
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                command,
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
            try:
                if requests.get(self.base_url + self.ready_path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers orphaned by a master that died first still carry its group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------- learners


@dataclass
class Learner:
    user_id: str
    token: str
    path: str  # the path the flag picked, from the completion's answer


def create_learners(base_url: str, count: int, secret: str) -> list[Learner]:
    """Tokens from the repo's own issuer; the service creates each learner on first use."""
    from progress.auth import issue_token  # the repo's issuer, imported only when needed

    learners = []
    with requests.Session() as session:
        for i in range(count):
            user_id = uuid.uuid4()
            token = issue_token(user_id, f"bench-{i}@example.com", secret=secret, ttl_s=24 * 3600)
            response = session.post(
                base_url + FIRST_LESSON, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            if response.status_code != 200 or not response.json().get("success"):
                raise RuntimeError(
                    f"completing the first lesson failed: {response.status_code} {response.text}"
                )
            learners.append(Learner(str(user_id), token, response.json()["path"]))
    return learners


def insert_cached_learners(count: int, secret: str) -> list[str]:
    """`count` learners with all 20 lessons complete, written straight to the database (far
    quicker than 20 completions each over HTTP); their tokens."""
    from progress.auth import issue_token

    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{DB_NAME}") as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (id, email, email_verified, created_at) "
                "VALUES (%s, %s, true, now())",
                [(i, f"cached-{n}@example.com") for n, i in enumerate(ids)],
            )
        conn.execute(
            "INSERT INTO progress_versions (user_id, version, updated_at) "
            "SELECT id, 20, now() FROM users WHERE email LIKE 'cached-%%'"
        )
        conn.execute(
            "INSERT INTO lesson_progress (user_id, lesson_id, completed_at) "
            "SELECT u.id, l.id, now() FROM users u CROSS JOIN lessons l "
            "WHERE u.email LIKE 'cached-%%'"
        )
    return [
        issue_token(i, f"cached-{n}@example.com", secret=secret, ttl_s=24 * 3600)
        for n, i in enumerate(ids)
    ]


# ---------------------------------------------------------------- wrk


def write_lua(path: Path, method: str, url_path: str, tokens: Sequence[str]) -> Path:
    """A wrk script that rotates through the learners' tokens, requests formatted once."""
    token_lines = ",\n".join(f'  "{token}"' for token in tokens)
    path.write_text(
        f"""-- generated by bench/run.py
local tokens = {{
{token_lines}
}}
local method, path = "{method}", "{url_path}"
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local prepared = {{}}
local position = 0

function init(args)
  for k, token in ipairs(tokens) do
    prepared[k] = wrk.format(method, path, {{
      ["Host"] = wrk.headers["Host"],
      ["Authorization"] = "Bearer " .. token,
    }})
  end
  -- each thread starts at a different learner
  position = ((thread_index or 0) * 97) % #prepared
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end
"""
    )
    return path


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
LATENCY_LINE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, re.MULTILINE)
    if rps is None or total is None:
        raise ValueError(f"can't parse wrk output:\n{output}")
    latency = {
        f"p{pct}_ms": round(float(value) * UNITS_MS[unit], 3)
        for pct, value, unit in LATENCY_LINE.findall(output)
    }
    if "p99_ms" not in latency:
        raise ValueError(f"wrk output has no latency distribution:\n{output}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        **latency,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
    }


# ---------------------------------------------------------------- CPU accounting


def _processes() -> Iterator[tuple[str, int, int]]:
    """(command name, process group, utime + stime in clock ticks) of every process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name_end = raw.rfind(")")
        name = raw[raw.find("(") + 1 : name_end]
        fields = raw[name_end + 2 :].split()
        yield name, int(fields[2]), int(fields[11]) + int(fields[12])


def cpu_sample(server_pgid: int) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy, of which interrupts and steal), the
    server's group, PostgreSQL, and the children this process has waited for (wrk)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[:8])
    server = postgres = 0
    for name, pgrp, ticks in _processes():
        if pgrp == server_pgid:
            server += ticks
        elif name == "postgres":
            postgres += ticks
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "busy": (user + nice + system + irq + softirq + steal) / CLK_TCK,
        "irq": (irq + softirq) / CLK_TCK,
        "steal": steal / CLK_TCK,
        "server": server / CLK_TCK,
        "postgres": postgres / CLK_TCK,
        "wrk": children.ru_utime + children.ru_stime,
    }


CPU_PARTS = ("wrk", "server", "postgres", "irq", "steal")


def cpu_split(before: Mapping[str, float], after: Mapping[str, float], wall: float) -> dict:
    """Cores used during the run by wrk, the server, PostgreSQL (every database on the
    machine), interrupts (loopback networking), the hypervisor (steal) and everything else
    (other processes on a shared machine)."""
    used = {key: max(0.0, after[key] - before[key]) for key in before}
    cores = {key: used[key] / wall for key in CPU_PARTS}
    cores["other"] = max(0.0, used["busy"] - sum(used[key] for key in CPU_PARTS)) / wall
    cores["total"] = used["busy"] / wall
    return {key: round(value, 2) for key, value in cores.items()}


@dataclass
class Bench:
    args: argparse.Namespace
    wrk: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def wrk_run(self, server: Server, script: Path, url_path: str, seconds: int) -> dict:
        command = [
            self.wrk,
            f"-t{self.args.wrk_threads}",
            f"-c{self.args.connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(script),
            server.base_url + url_path,
        ]
        before, started = cpu_sample(server.pgid), time.monotonic()
        result = subprocess.run(  # noqa: S603 - wrk from PATH, arguments we built
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
        wall = time.monotonic() - started
        after = cpu_sample(server.pgid)
        if result.returncode != 0:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr}")
        parsed = parse_wrk(result.stdout)
        parsed["cpu_cores"] = cpu_split(before, after, wall)
        return parsed

    def measure(
        self,
        server: Server,
        script: Path,
        url_path: str,
        *,
        path: str,
        scenario: str,
        repeat: int,
    ) -> None:
        result = self.wrk_run(server, script, url_path, self.args.duration)
        run = {"path": path, "scenario": scenario, "repeat": repeat}
        run.update(result)
        self.runs.append(run)
        cpu = result["cpu_cores"]
        errors = result["non2xx"] + result["socket_errors"]
        log(
            f"  {path:>8} {scenario:<15} #{repeat}: {result['rps']:8.0f} req/s  "
            f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
            f"errors {errors}  cores: "
            + " ".join(f"{key} {cpu[key]:.2f}" for key in (*CPU_PARTS, "other"))
        )


# ---------------------------------------------------------------- report


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["path"], run["scenario"]), []).append(run)
    rows = []
    for (path, scenario), members in groups.items():
        cpu_keys = members[0]["cpu_cores"].keys()
        rows.append(
            {
                "path": path,
                "scenario": scenario,
                "runs": len(members),
                "rps": round(median([m["rps"] for m in members]), 1),
                # Requests per CPU-second of the server: what a request costs it, whatever
                # share of the machine other processes left it during the run.
                "per_server_cpu_s": round(
                    median([m["rps"] / max(m["cpu_cores"]["server"], 0.01) for m in members]), 1
                ),
                "p50_ms": round(median([m["p50_ms"] for m in members]), 2),
                "p99_ms": round(median([m["p99_ms"] for m in members]), 2),
                "rps_all": [round(m["rps"]) for m in members],
                "errors": sum(m["non2xx"] + m["socket_errors"] for m in members),
                "cpu_cores": {
                    key: round(median([m["cpu_cores"][key] for m in members]), 2)
                    for key in cpu_keys
                },
            }
        )
    return rows


def ratios(
    rows: Sequence[Mapping[str, Any]], paths: Sequence[str], measure: str = "rps"
) -> dict[str, float]:
    """Ratios of medians measured in this run (the figures that compare across machines):
    of req/s (`rps`), or of requests per server CPU-second (`per_server_cpu_s`)."""
    by_key = {(row["path"], row["scenario"]): row for row in rows}

    def rps(path: str, scenario: str) -> float | None:
        row = by_key.get((path, scenario))
        return row[measure] if row and row[measure] else None

    def put(name: str, numerator: float | None, denominator: float | None) -> None:
        if numerator is not None and denominator:
            out[name] = round(numerator / denominator, 3)

    out: dict[str, float] = {}
    bare, select_one = rps("-", "bare"), rps("-", "select-1")
    for path in paths:
        put(f"{path}: warm/bare req/s", rps(path, "warm"), bare)
        put(f"{path}: cold/select-1 req/s", rps(path, "cold"), select_one)
        put(f"{path}: cold/bare req/s", rps(path, "cold"), bare)
        put(f"{path}: warm metrics on/off req/s", rps(path, "warm"), rps(path, "warm_no_metrics"))
    put("verified/legacy warm req/s", rps("verified", "warm"), rps("legacy", "warm"))
    put("verified/legacy cold req/s", rps("verified", "cold"), rps("legacy", "cold"))
    put("select-1/bare req/s", select_one, bare)
    legacy_done = by_key.get(("legacy", "completion"))
    verified_done = by_key.get(("verified", "completion"))
    if measure == "rps" and legacy_done and verified_done and legacy_done["p50_ms"]:
        out["verified/legacy completion median latency"] = round(
            verified_done["p50_ms"] / legacy_done["p50_ms"], 3
        )
    return out


def target_checks(
    ratio_map: Mapping[str, float], per_cpu: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Each target against the req/s ratio (the issue's measure), with the same ratio per
    server CPU-second beside it (what the machine's other load can't move)."""
    checks = []
    for name, comparison, bound in TARGETS:
        value = ratio_map.get(name)
        met = None
        if value is not None:
            met = value >= bound if comparison == ">=" else value <= bound
        checks.append(
            {
                "ratio": name,
                "target": f"{comparison} {bound}",
                "value": value,
                "per_server_cpu_s": per_cpu.get(name),
                "met": met,
            }
        )
    return checks


def markdown(
    rows: Sequence[Mapping[str, Any]],
    ratio_map: Mapping[str, float],
    checks: Sequence[Mapping[str, Any]],
    memory: Mapping[str, Any] | None,
) -> str:
    lines = [
        "| path | scenario | req/s (median) | req per server CPU-s | p50 ms | p99 ms | errors "
        "| cores: wrk / server / pg / irq / steal / other | req/s per round |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    order = {name: i for i, name in enumerate(("bare", "select-1", *SCENARIOS))}
    for row in sorted(rows, key=lambda r: (r["path"] != "-", r["path"], order[r["scenario"]])):
        cpu = row["cpu_cores"]
        lines.append(
            f"| {row['path']} | {row['scenario']} | {row['rps']:.0f} "
            f"| {row['per_server_cpu_s']:.0f} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['errors']} "
            f"| {' / '.join(f'{cpu[key]:.2f}' for key in (*CPU_PARTS, 'other'))} "
            f"| {', '.join(str(v) for v in row['rps_all'])} |"
        )
    if checks:
        lines += [
            "",
            "| target | req/s ratio | met | the same per server CPU-s |",
            "|---|---:|---|---:|",
        ]
        for check in checks:
            value = "-" if check["value"] is None else f"{check['value']:.3f}"
            cpu = check["per_server_cpu_s"]
            cpu_cell = "-" if cpu is None else f"{cpu:.3f}"
            met = {True: "yes", False: "**NO**", None: "not measured"}[check["met"]]
            lines.append(f"| {check['ratio']} {check['target']} | {value} | {met} | {cpu_cell} |")
    targeted = {check["ratio"] for check in checks}
    others = {name: value for name, value in ratio_map.items() if name not in targeted}
    if others:
        lines += ["", "| other ratio | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in others.items()]
    if memory:
        lines += ["", "| memory | value |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in memory.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- memory


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_pids(server: Server) -> list[int]:
    pid = server.pgid
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cache_misses(server: Server) -> int:
    text = requests.get(server.base_url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("progress_cache_lookups_total{") and 'result="miss"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def worker_memory(bench: Bench, server: Server, tokens: Sequence[str], tmp: Path) -> dict:
    """One worker's RSS before and after every learner in `tokens` is cached in it."""
    workers = worker_pids(server)
    if len(workers) != 1:
        raise RuntimeError(f"the memory server should have one worker, has {workers}")
    (worker,) = workers
    warm = write_lua(tmp / "memory-warm.lua", "GET", ACCESS, tokens[:1])
    bench.wrk_run(server, warm, ACCESS, 2)  # pools, first-use imports, one learner
    before = rss_kib(worker)
    script = write_lua(tmp / "memory.lua", "GET", ACCESS, tokens)
    deadline = time.monotonic() + 300
    while cache_misses(server) < len(tokens) + 1 and time.monotonic() < deadline:
        bench.wrk_run(server, script, ACCESS, 10)
    misses = cache_misses(server)
    after = rss_kib(worker)
    return {
        "learners cached in the worker (cache misses)": misses - 1,
        "worker RSS before, MiB": round(before / 1024, 1),
        "worker RSS with them cached, MiB": round(after / 1024, 1),
        "worker RSS growth per learner, bytes (cache, token and flag memos)": round(
            (after - before) * 1024 / max(1, misses - 1)
        ),
    }


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    secret = secrets.token_urlsafe(36)  # 48 characters
    base_env = service_env(secret, args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS_DIR / "logs"
    log_dir.mkdir(exist_ok=True)
    notes: list[str] = []
    started = time.monotonic()
    servers: list[Server] = []
    memory: dict[str, Any] = {}

    def start(name: str, target: str, env: Mapping[str, str], ready: str) -> Server:
        server = Server(name, target, env, ready, log_dir)
        servers.append(server)
        server.start()
        return server

    with tempfile.TemporaryDirectory(prefix="progress-bench-") as tmp:
        bench = Bench(args, wrk)
        try:
            log(f"database {DB_NAME}: create, migrate, seed, rollout 50 %")
            recreate_database()
            flask_cli_checked(["db", "upgrade"], base_env)
            flask_cli_checked(["seed"], base_env)
            flask_cli_checked(["rollout", "set", "50", "--reason", "bench"], base_env)

            service = start("service", "app:app", base_env, "/healthz")
            log(f"creating {args.learners} learners (each completes the first lesson)")
            learners = create_learners(service.base_url, args.learners, secret)
            tokens = {path: [ln.token for ln in learners if ln.path == path] for path in PATHS}
            log(", ".join(f"{len(tokens[path])} on the {path} path" for path in PATHS))
            for path in args.paths:
                if not tokens[path]:
                    raise RuntimeError(f"no learner landed on the {path} path at 50 %")
            cold_env = service_env(secret, args, PROGRESS_CACHE_MAXSIZE="1")
            cold = start("cold", "app:app", cold_env, "/healthz")
            quiet_env = service_env(secret, args, PROGRESS_METRICS="off")
            quiet = start("no-metrics", "app:app", quiet_env, "/healthz")
            bare = start("bare", "bench.bare_app:app", base_env, BARE)
            select_one = start("select-1", "bench.select_app:app", base_env, "/healthz")

            def lua(name: str, method: str, url: str, group: Sequence[str]) -> Path:
                return write_lua(Path(tmp, f"{name}.lua"), method, url, group)

            everyone = [ln.token for ln in learners]
            scenarios: list[tuple[str, str, Server, Path, str]] = [
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
            log(f"warm-up: {args.warmup} s of every scenario")
            for _path, scenario, server, script, url in scenarios:
                if scenario != "completion":
                    bench.wrk_run(server, script, url, args.warmup)  # caches, pools, imports
            for repeat in range(1, args.repeats + 1):
                log(f"round {repeat}/{args.repeats}")
                shift = (repeat - 1) * 3 % len(scenarios)  # rotate: new order, new neighbours
                order = scenarios[shift:] + scenarios[:shift]
                if repeat % 2 == 0:
                    order.reverse()
                for path, scenario, server, script, url in order:
                    bench.measure(server, script, url, path=path, scenario=scenario, repeat=repeat)
            for server in list(servers):
                server.stop()
                servers.remove(server)

            memory = memory_figures()
            if args.memory_learners:
                log(f"memory: {args.memory_learners} learners with 20 lessons in one worker")
                cached = insert_cached_learners(args.memory_learners, secret)
                # One worker; many threads, since each learner's first request writes (the
                # learner is created on first use) and that waits on the shared server.
                memory_env = service_env(secret, args, WEB_CONCURRENCY="1", GUNICORN_THREADS="32")
                one = start("memory", "app:app", memory_env, "/healthz")
                memory.update(worker_memory(bench, one, cached, Path(tmp)))
        finally:
            for server in list(servers):
                server.stop()
            try:
                drop_database()
            except psycopg.Error as exc:
                log(f"could not drop {DB_NAME}: {exc}")

    rows = summarize(bench.runs)
    ratio_map = ratios(rows, args.paths)
    per_cpu = ratios(rows, args.paths, "per_server_cpu_s")
    checks = target_checks(ratio_map, per_cpu)
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
        },
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
        "table_markdown": markdown(rows, ratio_map, checks, memory),
        "runs": bench.runs,
    }


def memory_figures() -> dict[str, Any]:
    from bench.memory import bytes_per_cached_learner

    return bytes_per_cached_learner()


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
