"""schemathesis' command line, every check, positive and negative cases, every phase
(examples, coverage, fuzzing, stateful), against the service under gunicorn on a database
of its own: once with a learner's token, once with an admin's. It must find no failure.

The budget is modest here (SCHEMATHESIS_MAX_EXAMPLES, 10 per operation); `make fuzz` runs
the same with 200."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import databases
from harness.service import UNREACHED_RATE_LIMITS, running_service

from .support.apps import SECRET, build_app, dispose, migrate_and_seed
from .support.availability import require_postgres
from .support.isolation import PG_TEST_DB
from .support.learners import AuthActions
from .support.service import service_env

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261129")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_postgres()
    url = databases.recreate(f"{PG_TEST_DB}_cli")
    app = build_app(url, tmp_path_factory.mktemp("cli-instance"))
    migrate_and_seed(app)
    dispose(app)
    return url


def schemathesis_run(schema_url: str, token: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        str(SCHEMATHESIS),
        "--config-file", str(CONFIG),
        "run", schema_url,
        "--checks", "all",
        "--mode", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", MAX_EXAMPLES,
        "--seed", SEED,
        "--generation-database", "none",
        "--header", f"Authorization: Bearer {token}",
        "--no-color",
    ]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=cwd
    )


@pytest.mark.parametrize("who", ["learner", "admin"])
def test_the_command_line_run_finds_no_failure(cli_database, tmp_path, who):
    token = AuthActions(SECRET).learner(admin=who == "admin").token
    # One token's hundreds of writes: under the default limits most would be answered 429.
    env = service_env(cli_database, tmp_path / "metrics", **UNREACHED_RATE_LIMITS)
    with running_service(env, tmp_path, workers=2) as service:
        run = schemathesis_run(service.url + "/api/v1/openapi.json", token, tmp_path)
    summary = run.stdout[-3000:]
    print(f"\nschemathesis ({who}, seed {SEED}, {MAX_EXAMPLES} examples):\n{summary}")
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
    assert "passed" in summary
