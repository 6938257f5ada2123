"""`make monitor`: Debian's Prometheus with the bundled config and rules scrapes the service
that `make run` would serve (here gunicorn on a free port), prints its alerts page, loads
every alert rule, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests
import yaml

from harness.processes import REPO, free_port
from harness.service import running_service

from .support.availability import unavailable
from .support.service import service_env


@pytest.mark.slow
def test_make_monitor_scrapes_the_service_and_prints_the_alerts_page(pg_app, pg_database, tmp_path):
    if shutil.which("prometheus") is None:
        unavailable("prometheus is not installed (apt-get install prometheus)")
    rules = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())
    alert_names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    env = service_env(pg_database, tmp_path / "metrics")
    port = free_port()
    with running_service(env, tmp_path, workers=1) as service:
        monitor = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "monitor",
                f"PORT={service.port}",
                f"MONITOR_PORT={port}",
                f"MONITOR_DATA={tmp_path / 'monitor'}",  # a fresh TSDB, not instance/monitor
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches make and everything it started
        )
        try:
            printed = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                line = monitor.stdout.readline()
                assert line, f"make monitor ended early:\n{''.join(printed)}"
                printed.append(line)
                if "alerts:" in line:
                    break
            url = re.search(r"alerts:\s+(\S+)", "".join(printed)).group(1)
            base = f"http://127.0.0.1:{port}"
            assert url in (f"{base}/alerts", f"{base}/classic/alerts")  # Debian: classic UI
            page = requests.get(url, timeout=10)
            assert page.status_code == 200
            assert "VerifiedPathFalseLockScreen" in page.text
            loaded = requests.get(f"{base}/api/v1/rules", timeout=10).json()["data"]["groups"]
            assert {r["name"] for g in loaded for r in g["rules"]} == alert_names
            deadline = time.monotonic() + 40  # the bundled scrape interval is 15 s
            while True:
                targets = requests.get(f"{base}/api/v1/targets", timeout=10).json()
                active = targets["data"]["activeTargets"]  # empty until discovery ran
                if active and active[0]["health"] == "up":
                    (target,) = active
                    break
                assert time.monotonic() < deadline, active
                time.sleep(1)
            assert target["labels"]["job"] == "lesson-progress"
            assert target["scrapeUrl"] == f"{service.url}/metrics"
            up = requests.get(f"{base}/api/v1/query", params={"query": "up"}, timeout=10).json()
            assert [s["value"][1] for s in up["data"]["result"]] == ["1"]
        finally:
            os.killpg(monitor.pid, signal.SIGINT)
            monitor.wait(timeout=30)
            monitor.stdout.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
