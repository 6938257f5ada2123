"""A real Prometheus (Debian's package) scraping given targets, for the lab and the tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from .processes import free_port, wait_until_ready

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen
    log_path: Path

    def query(self, expr: str) -> list[dict]:
        """An instant query; the result vector (or matrix/scalar as a list)."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}: {body}")
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def value(self, expr: str, **labels: str) -> float | None:
        for series in self.query(expr):
            if all(series["metric"].get(k) == v for k, v in labels.items()):
                return float(series["value"][1])
        return None

    def wait_for_scrape(self, job: str, after: float, timeout: float = 30) -> None:
        """Until every target of `job` has been scraped successfully since `after`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()
            active = [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == job]
            if active and all(
                t["health"] == "up" and _epoch(t["lastScrape"]) > after for t in active
            ):
                return
            time.sleep(0.3)
        raise AssertionError(f"Prometheus never scraped {job}: {targets}")


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp[:26].rstrip("Z") + "+00:00").timestamp()


def prometheus_installed() -> bool:
    return Path(PROMETHEUS).exists()


@contextlib.contextmanager
def running_prometheus(
    targets: list[str], tmp: Path, job: str = "lesson-progress", rule_files: list[Path] = ()
) -> Iterator[RunningPrometheus]:
    port = free_port()
    config = tmp / f"prometheus-{port}.yml"
    rules = "".join(f"\n  - {path}" for path in rule_files)
    config.write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:{rules or " []"}
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: [{", ".join(repr(t) for t in targets)}]
"""
    )
    log_path = tmp / f"prometheus-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(  # noqa: S603 - the packaged prometheus, our arguments
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / f'tsdb-{port}'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningPrometheus(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until_ready(f"{server.url}/-/ready", process, 30, log_path, "prometheus")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
