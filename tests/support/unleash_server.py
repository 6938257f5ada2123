"""Start a real Unleash server (npm ``unleash-server`` v8) for tests.

Requirements: ``node`` (>= 20) and ``npm`` on PATH, a PostgreSQL server the
``admin_dsn`` role can create databases on.  Python deps: stdlib, ``psycopg``
(v3) and ``requests``.

Usage::

    with running_unleash() as server:
        strategy_id = create_rollout_flag(server, "my-flag", percentage=10)
        client = UnleashClient(
            url=server.url,
            app_name="tests",
            custom_headers={"Authorization": server.client_token},
            disable_metrics=True,
            disable_registration=True,
        )

Admin API (v8) used here, all under ``{server.url}/admin`` with header
``Authorization: <admin token>``:

* create flag: ``POST /projects/{project}/features`` ``{"name": ..., "type": "release"}``
* add strategy: ``POST /projects/{p}/features/{f}/environments/{env}/strategies``
* enable: ``POST /projects/{p}/features/{f}/environments/{env}/on``
* list strategies: ``GET /projects/{p}/features/{f}/environments/{env}/strategies``
* change rollout: ``PATCH /projects/{p}/features/{f}/environments/{env}/strategies/{id}``
  with ``[{"op": "replace", "path": "/parameters/rollout", "value": "25"}]``
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from psycopg.conninfo import conninfo_to_dict

from harness import databases
from harness.processes import free_port, stop_group, tail

from .isolation import PG_TEST_DB

REPO_ROOT = Path(__file__).resolve().parents[2]
UNLEASH_DIR = REPO_ROOT / "devtools" / "unleash"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = PG_TEST_DB + "_unleash"
STARTUP_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 10.0


class UnleashHarnessError(RuntimeError):
    """Raised when the Unleash server cannot be installed or started."""


@dataclass
class UnleashServer:
    url: str  # e.g. http://127.0.0.1:41234/api  (what UnleashClient expects)
    base_url: str  # e.g. http://127.0.0.1:41234
    admin_token: str
    client_token: str
    port: int
    database_url: str
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def service_settings(self) -> dict[str, str]:
        """What an instance of the service needs to use this server as its flag backend."""
        return {
            "UNLEASH_URL": self.url,
            "UNLEASH_API_TOKEN": self.client_token,
            "UNLEASH_ADMIN_TOKEN": self.admin_token,
        }

    @property
    def admin_headers(self) -> dict:
        return {"Authorization": self.admin_token}

    @property
    def client_headers(self) -> dict:
        return {"Authorization": self.client_token}

    def admin(
        self, method: str, path: str, json: Any = None, expected: tuple = (200, 201, 202, 204)
    ) -> requests.Response:
        """Call ``{url}/admin{path}`` with the admin token; raise on unexpected status."""
        resp = requests.request(
            method,
            f"{self.url}/admin{path}",
            json=json,
            headers=self.admin_headers,
            timeout=HTTP_TIMEOUT_S,
        )
        if expected and resp.status_code not in expected:
            raise UnleashHarnessError(
                f"{method} /api/admin{path} -> {resp.status_code}: {resp.text[:2000]}"
            )
        return resp

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


# --------------------------------------------------------------------------- install


def ensure_unleash_installed() -> None:
    """Run ``npm ci`` in devtools/unleash unless node_modules is already there."""
    if (UNLEASH_DIR / "node_modules" / "unleash-server" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise UnleashHarnessError(
            "npm not found on PATH; Node.js >= 20 is required for the Unleash harness"
        )
    lock_path = UNLEASH_DIR / ".npm-ci.lock"  # this checkout's install, one at a time
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # serialise parallel test workers
        try:
            if (UNLEASH_DIR / "node_modules" / "unleash-server" / "package.json").is_file():
                return
            env = dict(os.environ, SCARF_ANALYTICS="false")
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=UNLEASH_DIR,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=900,
            )
            if proc.returncode != 0:
                raise UnleashHarnessError(
                    f"npm ci failed in {UNLEASH_DIR} (exit {proc.returncode}):\n{proc.stdout[-4000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- database


def _database_url(admin_dsn: str, database: str) -> str:
    """Build a postgresql:// URL for ``database`` from the admin DSN (URL or key=value)."""
    params = conninfo_to_dict(admin_dsn)
    user = params.get("user") or os.environ.get("PGUSER") or "postgres"
    password = params.get("password")
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or "5432"
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    if host.startswith("/"):  # unix socket directory
        return f"postgresql://{auth}@/{quote(database, safe='')}?host={quote(host, safe='')}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{quote(database, safe='')}"


@contextlib.contextmanager
def running_unleash(
    admin_dsn: str = DEFAULT_ADMIN_DSN,
    port: int | None = None,
    database: str = DEFAULT_DATABASE,
    admin_token: str | None = None,
    client_token: str | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    drop_database_after: bool = True,
) -> Iterator[UnleashServer]:
    """Start a fresh Unleash server on its own database; yield an :class:`UnleashServer`.

    Tokens default to freshly generated ones: admin ``*:*.<hex>`` and client
    (backend) ``*:development.<hex>`` (all projects, environment development).
    """
    ensure_unleash_installed()
    node = shutil.which("node")
    if node is None:
        raise UnleashHarnessError(
            "node not found on PATH; Node.js >= 20 is required for the Unleash harness"
        )
    port = port or free_port()
    admin_token = admin_token or f"*:*.{secrets.token_hex(24)}"
    client_token = client_token or f"*:development.{secrets.token_hex(24)}"

    databases.recreate(database, admin_dsn)
    database_url = _database_url(admin_dsn, database)

    log_dir = Path(tempfile.mkdtemp(prefix="unleash-server-"))
    log_path = log_dir / "unleash.log"
    env = dict(
        os.environ,
        UNLEASH_DATABASE_URL=database_url,
        UNLEASH_PORT=str(port),
        UNLEASH_HOST="127.0.0.1",
        UNLEASH_ADMIN_TOKEN=admin_token,
        UNLEASH_CLIENT_TOKEN=client_token,
        UNLEASH_LOG_LEVEL=os.environ.get("UNLEASH_LOG_LEVEL", "warn"),
        NODE_ENV="production",
    )
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [node, "server.js"],
            cwd=UNLEASH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so we can stop it cleanly
        )
    server = UnleashServer(
        url=f"{base_url}/api",
        base_url=base_url,
        admin_token=admin_token,
        client_token=client_token,
        port=port,
        database_url=database_url,
        log_path=log_path,
        process=proc,
    )
    ok = False
    try:
        _wait_healthy(server, startup_timeout)
        ok = True
        yield server
    finally:
        stop_group(proc)
        if drop_database_after:
            with contextlib.suppress(Exception):
                databases.drop(database, admin_dsn)
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)


def _wait_healthy(server: UnleashServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise UnleashHarnessError(
                f"Unleash server exited with code {code} during startup; log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            resp = requests.get(f"{server.base_url}/health", timeout=2)
            if resp.status_code == 200:
                return
            last_error = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise UnleashHarnessError(
        f"Unleash server not healthy after {timeout:.0f}s ({last_error}); log {server.log_path}:\n{server.log_tail()}"
    )


# --------------------------------------------------------------------------- admin helpers


def _strategies_path(project: str, name: str, environment: str) -> str:
    return f"/projects/{quote(project, safe='')}/features/{quote(name, safe='')}/environments/{quote(environment, safe='')}/strategies"


def create_rollout_flag(
    server: UnleashServer,
    name: str = "verified-progress-path",
    project: str = "default",
    environment: str = "development",
    percentage: int = 0,
) -> str:
    """Create flag ``name`` with one flexibleRollout strategy (stickiness userId,
    groupId = name, rollout = percentage), enable it in ``environment`` and
    return the strategy id."""
    server.admin(
        "POST",
        f"/projects/{quote(project, safe='')}/features",
        json={"name": name, "type": "release"},
    )
    resp = server.admin(
        "POST",
        _strategies_path(project, name, environment),
        json={
            "name": "flexibleRollout",
            "constraints": [],
            "parameters": {
                "rollout": str(int(percentage)),
                "stickiness": "userId",
                "groupId": name,
            },
        },
    )
    strategy_id = resp.json()["id"]
    server.admin(
        "POST",
        f"/projects/{quote(project, safe='')}/features/{quote(name, safe='')}/environments/{quote(environment, safe='')}/on",
    )
    return strategy_id


def get_rollout_strategy(
    server: UnleashServer, name: str, project: str = "default", environment: str = "development"
) -> dict:
    """Return the (first) flexibleRollout strategy of the flag in ``environment``
    (dict with ``id``, ``name``, ``parameters`` ...)."""
    strategies = server.admin("GET", _strategies_path(project, name, environment)).json()
    for strategy in strategies:
        if strategy.get("name") == "flexibleRollout":
            return strategy
    raise UnleashHarnessError(
        f"flag {name!r} has no flexibleRollout strategy in {environment!r}: {strategies}"
    )


def get_rollout(
    server: UnleashServer, name: str, project: str = "default", environment: str = "development"
) -> int:
    return int(get_rollout_strategy(server, name, project, environment)["parameters"]["rollout"])


def set_rollout(
    server: UnleashServer,
    name: str,
    percentage: int,
    project: str = "default",
    environment: str = "development",
    strategy_id: str | None = None,
) -> dict:
    """Change the rollout percentage with a JSON-patch; returns the updated strategy."""
    strategy_id = strategy_id or get_rollout_strategy(server, name, project, environment)["id"]
    resp = server.admin(
        "PATCH",
        f"{_strategies_path(project, name, environment)}/{quote(strategy_id, safe='')}",
        json=[{"op": "replace", "path": "/parameters/rollout", "value": str(int(percentage))}],
    )
    return resp.json()
