"""`make monitor`: Debian's Prometheus with the bundled scrape config and alert rules,
scraping the service that `make run` serves, until Ctrl-C.

The bundled prometheus/prometheus.yml is used as it is, except for the service's address
(--service, HOST:PORT of `make run`) and the rules' path; its data is kept under
instance/monitor/ between runs.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
JOB = "lesson-progress"
READY_TIMEOUT_S = 30


def config_for(service: str) -> dict:
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(REPO / "prometheus" / name) for name in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    job["static_configs"] = [{"targets": [service], "labels": {"env": "local"}}]
    return config


def wait_until_ready(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"prometheus exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"prometheus was not ready within {READY_TIMEOUT_S} s")


def alerts_page(url: str) -> str:
    """The alerts page: /alerts, or /classic/alerts where Prometheus serves only its classic
    UI (Debian's package builds without the newer one)."""
    for path in ("/alerts", "/classic/alerts"):
        try:
            with urllib.request.urlopen(url + path, timeout=5) as answer:  # noqa: S310
                if answer.status == 200:
                    return url + path
        except (urllib.error.URLError, OSError):
            continue
    return url + "/alerts"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="127.0.0.1:8000", help="HOST:PORT of the service")
    parser.add_argument("--listen", default="127.0.0.1:9090", help="HOST:PORT for Prometheus")
    parser.add_argument("--data", default=str(REPO / "instance" / "monitor"), type=Path)
    args = parser.parse_args()

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        sys.exit("prometheus is not installed (Debian: apt-get install -y prometheus)")
    args.data.mkdir(parents=True, exist_ok=True)
    config = args.data / "prometheus.yml"
    config.write_text(yaml.safe_dump(config_for(args.service), sort_keys=False))
    log = (args.data / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={args.data / 'data'}",
            f"--web.listen-address={args.listen}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Ctrl-C (or a TERM from make's caller) stops Prometheus cleanly, then us.
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    url = f"http://{args.listen}"
    try:
        wait_until_ready(url, process)
        print(
            f"Prometheus is scraping http://{args.service}/metrics (job {JOB}) every "
            f"{config_for(args.service)['global']['scrape_interval']}, with the bundled alerts.\n"
            f"  alerts:  {alerts_page(url)}\n"
            f"  targets: {alerts_page(url).removesuffix('alerts')}targets\n"
            f"  log:     {args.data / 'prometheus.log'}\n"
            "Point a Grafana at it with the bundled provisioning: docs/operations.md.\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
    finally:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
