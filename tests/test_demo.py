"""`make demo`, short: the embedded service with simulated learners at 10% stops by
itself, after printing the URLs and tokens and lines in which learners complete lessons,
the legacy path shows false lock screens under the slow cache update, the verified path
none, and the guard's latest evaluation says when it will decide."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import free_port

REPO = Path(__file__).resolve().parents[1]
FIGURES = re.compile(
    r"completions legacy (\d+), verified (\d+); false lock screens legacy (\d+), "
    r"verified (\d+); guard: (\w+), (.*)$"
)


@pytest.mark.slow
def test_the_demo_shows_learners_false_locks_and_the_estimate_then_stops(tmp_path: Path):
    port = free_port()
    command = [
        sys.executable, "-m", "lab.demo", "--minutes", "0.75", "--learners", "10",
        "--guard-interval", "3", "--think-time", "0.5", "--report-every", "10",
        "--port", str(port), "--instance", str(tmp_path / "demo"),
    ]  # fmt: skip
    # 45 s of learners, migrations and the service's start: 3x and more within the bound.
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert f"http://127.0.0.1:{port}/admin/rollout" in out
    assert "token: " in out
    lines = [m for m in map(FIGURES.search, out.splitlines()) if m]
    assert lines, out[-3000:]
    legacy_done, verified_done, legacy_locks, verified_locks, _, guard = lines[-1].groups()
    assert int(legacy_done) > 0
    assert int(verified_done) > 0
    assert int(legacy_locks) > 0  # the slow cache update, seen on the legacy path
    assert int(verified_locks) == 0
    assert guard.startswith(("decides in about", "cannot tell when it decides")), guard
    assert any(m.group(6).startswith("decides in about") for m in lines), out[-3000:]
    assert "done: the learners stopped" in out
