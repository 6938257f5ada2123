"""The command line as a terminal user expects: text at a terminal and JSON in a pipe, a
reason required to move the rollout, logs never mixed into the answer on stdout, and a
configuration error said in one line."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FLASK = [str(Path(sys.executable).with_name("flask")), "--app", "app"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> dict[str, str]:
    """The embedded default (SQLite under a fresh instance directory), migrated, with the
    library logs turned up to DEBUG so that any of them on stdout would show."""
    instance = tmp_path_factory.mktemp("instance")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROGRESS_", "DATABASE_", "UNLEASH_", "PROMETHEUS_"))
    }
    env |= {
        "PROGRESS_ENV": "development",
        "PROGRESS_INSTANCE_PATH": str(instance),
        "PROGRESS_LOG_LEVEL": "DEBUG",
    }
    run(["db", "upgrade"], env, check=True)
    return env


def run(args: list[str], env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*FLASK, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def at_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run with stdout on a pseudo-terminal, as a person typing the command sees it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*FLASK, *args], cwd=REPO, env=env, stdout=follower, stderr=subprocess.DEVNULL
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(leader)
    assert process.returncode == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_rollout_set_requires_a_reason_and_changes_nothing_without_one(embedded):
    refused = run(["rollout", "set", "10"], embedded)
    assert refused.returncode == 2
    assert "Missing option '--reason'" in refused.stderr
    blank = run(["rollout", "set", "10", "--reason", "  "], embedded)
    assert blank.returncode == 2
    assert json.loads(run(["rollout", "status"], embedded, check=True).stdout)["percentage"] == 0


def test_in_a_pipe_stdout_is_only_json_even_with_debug_logs(embedded):
    moved = run(["rollout", "set", "10", "--reason", "first stage"], embedded, check=True)
    assert json.loads(moved.stdout)["percentage"] == 10  # one JSON object, nothing else
    assert moved.stderr.strip(), "the DEBUG logs went somewhere: stderr"
    for line in moved.stderr.splitlines():
        json.loads(line)  # the logs are still JSON lines, on stderr
    status = json.loads(run(["rollout", "status"], embedded, check=True).stdout)
    assert (status["percentage"], status["updatedBy"].startswith("cli:")) == (10, True)
    history = run(["rollout", "history"], embedded, check=True).stdout.splitlines()
    assert [json.loads(line)["reason"] for line in history] == ["first stage"]
    assert run(["rollout", "evaluations"], embedded, check=True).stdout == ""


def test_at_a_terminal_the_answer_is_text_and_json_on_request(embedded):
    run(["rollout", "set", "10", "--reason", "first stage"], embedded, check=True)
    status = at_a_terminal(["rollout", "status"], embedded)
    assert "10% of learners on the verified path" in status
    assert "by cli:" in status
    history = at_a_terminal(["rollout", "history"], embedded)
    assert "-> " in history
    assert "first stage" in history
    assert at_a_terminal(["rollout", "evaluations"], embedded).strip() == "No evaluation yet."
    forced = at_a_terminal(["rollout", "status", "--format", "json"], embedded)
    assert json.loads(forced)["percentage"] == 10
    piped = run(["rollout", "history", "--format", "text"], embedded, check=True).stdout
    assert "first stage" in piped
    assert not piped.startswith("{")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "set PROGRESS_ENV=development to use the built-in secret"),
        ({"PROGRESS_ENV": "staging"}, "PROGRESS_ENV must be one of"),
        ({"PROGRESS_ENV": "development", "PROGRESS_CACHE_TTL_S": "soon"}, "must be an integer"),
    ],
    ids=["missing-secret", "unknown-environment", "malformed-number"],
)
def test_a_configuration_error_is_one_line_on_stderr(embedded, settings, message):
    env = {k: v for k, v in embedded.items() if k != "PROGRESS_ENV"} | settings
    result = run(["rollout", "status"], env)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert message in lines[0]


def test_read_only_commands_write_no_scheduler_lines_with_a_real_unleash(embedded):
    """With Unleash as the flag backend the flag client starts its scheduler: reading the
    rollout prints the answer and nothing on stderr at the default log level."""
    from .support.unleash_server import create_rollout_flag, running_unleash

    with running_unleash() as server:
        create_rollout_flag(server, "verified-progress-path", percentage=10)
        env = embedded | server.service_settings | {"PROGRESS_LOG_LEVEL": "INFO"}
        for args in (["rollout", "status"], ["rollout", "plan"], ["rollout", "history"]):
            result = run([*args, "--format", "json"], env, check=True)
            assert result.stderr == "", (args, result.stderr[-2000:])
