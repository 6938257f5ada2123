"""One id per test run, and the names made from it, so that two suites on one machine (two
checkouts, or one checkout twice) never share a database, a store key or a directory.

`TEST_RUN_ID` is set here once, for the run and every process it starts: the checkout's
path hashed, then this pytest's pid. Given in the environment, it is used as it is. Each
pytest-xdist worker adds its name (`_gw0`), so the workers of one run stay apart too.
"""

from __future__ import annotations

import hashlib
import os
import re

from harness import databases
from harness.processes import REPO

_CHECKOUT = hashlib.sha1(str(REPO).encode()).hexdigest()[:6]
RUN_ID = os.environ.setdefault("TEST_RUN_ID", f"{_CHECKOUT}_{os.getpid()}")
# Under pytest-xdist each worker is a run of its own inside the run: gw0, gw1, ...
if (_WORKER := os.environ.get("PYTEST_XDIST_WORKER")) and not RUN_ID.endswith(f"_{_WORKER}"):
    RUN_ID = os.environ["TEST_RUN_ID"] = f"{RUN_ID}_{_WORKER}"
# TEST_POSTGRES_DB is the prefix; the run's id keeps two runs with the same prefix apart.
DB_PREFIX = os.environ.get("TEST_POSTGRES_DB", "progress_test")
# The session's database; every other database a test makes is named after it.
PG_TEST_DB = f"{DB_PREFIX}_{RUN_ID}"
# A database of a run with a default id: ..._<checkout>_<pid>, then any suffix.
_RUN_DATABASE = re.compile(rf"^{re.escape(DB_PREFIX)}_[0-9a-f]{{6}}_(\d+)(?:_|$)")


def drop_run_databases(session_database: str = PG_TEST_DB) -> list[str]:
    """Drop every database a run made, at its end: its session's and those named after it."""
    made = [
        name
        for name in databases.names()
        if name == session_database or name.startswith(session_database + "_")
    ]
    for name in made:
        databases.drop(name)
    return made


def drop_stale_databases() -> list[str]:
    """Drop the databases of earlier runs whose pytest is gone (killed before it could drop
    them); a live run's databases, this machine's other users' included, are left alone."""
    stale = []
    for name in databases.names():
        found = _RUN_DATABASE.match(name)
        if found and not _alive(int(found.group(1))):
            databases.drop(name)
            stale.append(name)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
