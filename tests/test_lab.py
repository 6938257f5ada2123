"""The consistency lab, small: real gunicorn instances on a throwaway PostgreSQL primary
with a standby lagging 300 ms, cache faults, a worker killed with SIGKILL mid-run, every
learner active at once with a short think time. The verified path shows no false lock
screen and no stale review set, the legacy path shows both (so the races really happened),
the learners' reports match
the metrics, every acknowledged completion is on the primary, no read waits for the replica
and the primary reads at most three times per completion, and the report and its picture
are written."""

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from lab.postgres import missing_requirements

from .support.availability import unavailable
from .support.tokens import MODE

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_lab_proves_zero_false_locks_on_the_verified_path(tmp_path: Path):
    missing = missing_requirements()
    if missing:
        unavailable(f"the lab needs PostgreSQL's server binaries: {missing}")
    report_path = tmp_path / "lab.json"
    command = [
        sys.executable,
        "-m",
        "lab",
        "--instances=2",
        "--workers=2",
        "--learners=60",
        "--rollout=50",
        "--replica-lag-ms=300",
        "--faults=cache_update_delay_ms=300,cache_update_failure_rate=0.2",
        "--kill-worker",
        "--think-time-s=0.5",
        "--ramp-s=2",
        f"--report={report_path}",
        f"--token-mode={MODE}",  # TEST_TOKEN_MODE's
    ]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    output = run.stdout[-6000:] + run.stderr[-3000:]
    assert run.returncode == 0, output
    report = json.loads(report_path.read_text())
    legacy, verified = report["paths"]["legacy"], report["paths"]["verified"]

    assert verified["learners"] > 0, output
    assert verified["false_locks_seen"] == 0, output
    assert legacy["learners"] > 0, output
    assert legacy["false_locks_seen"] > 0, output  # the race was exercised
    for path in (legacy, verified):
        assert path["counts_agree"], output
        assert path["aborted"] == 0, output
    assert legacy["false_locks_seen"] == legacy["metrics"]["false_locks_client_report"] or (
        legacy["reports_uncertain"] or legacy["reports_failed"]
    ), output
    assert report["lost_acknowledged_completions"] == [], output
    assert legacy["acknowledged"] + verified["acknowledged"] == 60 * 3, output
    assert "lost acknowledged completions: 0" in run.stdout
    assert report["kill"]["killed_pid"], output
    assert report["kill"]["replaced"], output
    assert report["passed"]
    assert report["learners"] == 60
    assert report["peakConcurrentLearners"] == 60, output  # all of them at once
    assert report["paths"]["verified"]["falseLockScreensSeen"] == 0
    assert report["paths"]["legacy"]["falseLockScreensSeen"] > 0
    # Every learner opened review after each completion: never stale on verified; on legacy
    # the first review of each learner reads the replica 300 ms behind its completion.
    assert verified["reviews"] == verified["acknowledged"], output
    assert report["paths"]["verified"]["staleReviewSetsSeen"] == 0, output
    assert report["paths"]["legacy"]["staleReviewSetsSeen"] > 0, output
    assert legacy["metrics"]["stale_reviews_audit"] > 0, output
    for name in ("legacy", "verified"):
        figures = report["paths"][name]
        assert figures["completionsLost"] == 0
        assert figures["metricsAgree"] is True
        assert figures["completionsAcknowledged"] == report["paths"][name]["acknowledged"]
        access = figures["accessCheckMs"]
        assert access["p50_ms"] <= access["p95_ms"] <= access["p99_ms"]
    # Reads are routed by the replica's replay position: verified learners send their
    # completion's position, so none waits for the replica, and the primary reads at most
    # three times per completion (its re-read, the next navigation, a true lock confirmed),
    # besides the review opened after each completion: a second navigation that may read
    # the primary once more while the replica lags (never a confirmation: the learners send
    # their version).
    reads = report["paths"]["verified"]["reads"]
    assert report["db_retries"]["replica_lag"] == 0, output
    assert reads["replica"] > 0, output
    assert reads["byReason"]["primary"]["replica_behind"] > 0, output  # the 300 ms lag
    assert 0 < report["paths"]["verified"]["primaryReadsPerCompletionBesidesReview"] <= 3, output
    assert report["paths"]["verified"]["primaryReadsPerCompletion"] <= 4, output
    assert report["paths"]["verified"]["primaryShareOfReads"] == reads["primaryShare"]
    assert report["rates"]["served_per_s"] > 0
    assert Path(report["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Everything it started is gone: the throwaway primary and standby no longer answer.
    for url in (report["database"]["primary_url"], report["database"]["replica_url"]):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
