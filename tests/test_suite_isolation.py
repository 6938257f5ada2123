"""Two suites on one machine keep apart: each run names its databases with its own id, drops
them at its end, and the databases of a run killed before its end don't pile up."""

from __future__ import annotations

import os
import subprocess
import sys

from harness import databases
from harness.processes import REPO

from .support import isolation
from .support.availability import require_postgres


def test_the_run_has_one_id_that_its_database_names_and_its_processes_carry(pg_database):
    assert os.environ["TEST_RUN_ID"] == isolation.RUN_ID
    assert pg_database.endswith(f"/{isolation.DB_PREFIX}_{isolation.RUN_ID}")
    started = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ['TEST_RUN_ID'])"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert started.stdout.strip() == isolation.RUN_ID


def test_a_killed_runs_databases_are_dropped_and_a_live_runs_are_kept():
    require_postgres()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait(timeout=30)  # a pytest that is gone, as a killed run's would be
    killed = f"{isolation.DB_PREFIX}_abcdef_{ended.pid}"
    live = f"{isolation.DB_PREFIX}_abcdef_{os.getpid()}_unleash"  # another live run's
    try:
        for name in (killed, f"{killed}_model", live):
            databases.recreate(name)
        dropped = isolation.drop_stale_databases()
        assert {killed, f"{killed}_model"} <= set(dropped)
        assert live not in dropped
        left = databases.names()
        assert live in left
        assert killed not in left
    finally:
        for name in (killed, f"{killed}_model", live):
            databases.drop(name)


def test_the_end_of_a_run_drops_every_database_named_after_it(pg_database):
    require_postgres()
    ending = f"{isolation.DB_PREFIX}_fedcba_{os.getpid()}"  # a run other than this one
    made = [ending, f"{ending}_unleash", f"{ending}0_another_run"]
    try:
        for name in made:
            databases.recreate(name)
        assert sorted(isolation.drop_run_databases(ending)) == made[:2]
        left = databases.names()
        assert not set(made[:2]) & set(left)
        assert made[2] in left  # a name that merely starts like the run's is another's
        assert isolation.PG_TEST_DB in left  # this run's own are dropped only at its end
    finally:
        for name in made:
            databases.drop(name)


def test_each_xdist_worker_of_a_run_has_an_id_of_its_own():
    """`make test` runs two pytest-xdist workers: they share the run's id and add their names,
    so their databases, Unleash servers and store keys stay apart."""
    ids = {}
    for worker in ("gw0", "gw1"):
        env = {**os.environ, "TEST_RUN_ID": "abcdef_12345", "PYTEST_XDIST_WORKER": worker}
        shown = subprocess.run(
            [sys.executable, "-c", "import os; from tests.support import isolation; "
             "print(isolation.RUN_ID, isolation.PG_TEST_DB, os.environ['TEST_RUN_ID'])"],
            capture_output=True, text=True, timeout=30, check=True, env=env, cwd=REPO,
        )  # fmt: skip
        ids[worker] = shown.stdout.split()
    assert ids["gw0"][0] == ids["gw0"][2] == "abcdef_12345_gw0"
    assert ids["gw1"][0] == "abcdef_12345_gw1"
    assert ids["gw0"][1] != ids["gw1"][1]
    assert isolation._RUN_DATABASE.match(ids["gw1"][1])  # a killed run's are found as stale
