"""The lab's database: a throwaway PostgreSQL primary with a lagging hot standby, or a
fresh database on the machine's server when no replica is wanted.

The pair lives under a temporary directory and runs as the `postgres` OS user when the lab
runs as root (PostgreSQL refuses root; CI runs as root). The primary streams WAL to the
standby, which applies each commit `recovery_min_apply_delay` late: a read replica that
lags by a known amount. Both are throwaway, so durability is off (`fsync = off`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from harness import databases
from harness.processes import free_port, run_to_end

DB_NAME = databases.run_name("progress_lab", "LAB_POSTGRES_DB")
MACHINE_ADMIN_URL = os.environ.get("LAB_POSTGRES_URL", databases.ADMIN_URL)
OS_USER = "postgres"


class DatabaseError(RuntimeError):
    """The lab's database could not be set up."""


def postgres_bin() -> Path | None:
    """Where initdb, pg_ctl and pg_basebackup live: $LAB_PG_BIN, else the newest
    /usr/lib/postgresql/<version>/bin, else the PATH."""
    if os.environ.get("LAB_PG_BIN"):
        return Path(os.environ["LAB_PG_BIN"])
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for candidate in reversed(versions):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def missing_requirements() -> str | None:
    """Why a replica pair can't be made on this machine, or None when it can."""
    bindir = postgres_bin()
    if bindir is None:
        return "PostgreSQL server binaries (initdb) not found; set LAB_PG_BIN"
    for tool in ("initdb", "pg_ctl", "pg_basebackup"):
        if not (bindir / tool).exists():
            return f"{bindir / tool} is missing"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root needs an OS user {OS_USER!r} to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root needs runuser (util-linux) to start PostgreSQL"
    return None


def url(port: int, database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


@dataclass
class LabDatabase:
    """Where the service writes (primary) and reads access checks from (replica)."""

    primary_url: str
    replica_url: str | None
    description: str


class ReplicaPair:
    """A primary and a hot standby that applies commits `lag_ms` late."""

    def __init__(self, root: Path, lag_ms: int, database: str = DB_NAME) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise DatabaseError("PostgreSQL server binaries not found")
        self.bin = bindir
        self.root = root / "pg"
        self.lag_ms = lag_ms
        self.database = database
        self.primary_dir = self.root / "primary"
        self.standby_dir = self.root / "standby"
        self.primary_port = free_port()
        self.standby_port = free_port()
        while self.standby_port == self.primary_port:
            self.standby_port = free_port()
        self._as_root = os.geteuid() == 0
        self._started: list[Path] = []

    # -- commands, as the postgres OS user when we are root ------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            return [runuser, "-u", OS_USER, "--", *command]
        return command

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        # cwd: the postgres user can't always read the caller's directory
        run_to_end(self._command(tool, *args), cwd=self.root, timeout=timeout, error=DatabaseError)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LabDatabase:
        self.root.mkdir(parents=True)
        if self._as_root:
            # Let postgres reach its directory (and list nothing else).
            os.chmod(self.root.parent, 0o711)  # noqa: S103
            user = pwd.getpwnam(OS_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        self._init_primary()
        self._start(self.primary_dir, "primary")
        databases.recreate(self.database, url(self.primary_port, "postgres"))
        self._make_standby()
        self._start(self.standby_dir, "standby")
        self._wait_streaming()
        return LabDatabase(
            primary_url=url(self.primary_port, self.database),
            replica_url=url(self.standby_port, self.database),
            description=(
                f"throwaway primary :{self.primary_port} and hot standby :{self.standby_port} "
                f"(recovery_min_apply_delay {self.lag_ms} ms) under {self.root}"
            ),
        )

    def _init_primary(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.primary_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        self._append(
            self.primary_dir / "postgresql.conf",
            {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.primary_port),
                "unix_socket_directories": f"'{self.root}'",
                "wal_level": "replica",
                "max_wal_senders": "5",
                "max_connections": "300",
                "fsync": "off",  # throwaway: speed over durability
                "full_page_writes": "off",
                "hot_standby_feedback": "on",  # replica reads are never cancelled
            },
        )
        with (self.primary_dir / "pg_hba.conf").open("a") as hba:
            hba.write(
                "\n# the consistency lab\n"
                "host all all 127.0.0.1/32 trust\n"
                "host replication all 127.0.0.1/32 trust\n"
            )

    def _make_standby(self) -> None:
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "-D",
            str(self.standby_dir),
            "-R",  # standby.signal and primary_conninfo
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        # Appended after the primary's copied settings: the last one wins.
        self._append(
            self.standby_dir / "postgresql.conf",
            {
                "port": str(self.standby_port),
                "hot_standby": "on",
                "recovery_min_apply_delay": f"'{self.lag_ms}ms'",
            },
        )

    @staticmethod
    def _append(path: Path, settings: dict[str, str]) -> None:
        with path.open("a") as conf:
            conf.write("\n# the consistency lab\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _start(self, datadir: Path, name: str) -> None:
        log = self.root / f"{name}.log"
        try:
            self._run("pg_ctl", "-D", str(datadir), "-l", str(log), "-w", "-t", "60", "start")
        except DatabaseError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DatabaseError(f"{exc}\n{name} log:\n{tail}") from None
        self._started.append(datadir)

    def _wait_streaming(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with psycopg.connect(url(self.primary_port, "postgres"), autocommit=True) as conn:
            while time.monotonic() < deadline:
                states = [row[0] for row in conn.execute("SELECT state FROM pg_stat_replication")]
                if "streaming" in states:
                    return
                time.sleep(0.2)
        raise DatabaseError(f"the standby is not streaming after {timeout}s")

    def wait_caught_up(self, timeout: float = 60) -> float:
        """Until the standby has applied everything the primary has written so far; the
        seconds it took."""
        started = time.monotonic()
        with psycopg.connect(url(self.primary_port, "postgres"), autocommit=True) as primary:
            target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(url(self.standby_port, "postgres"), autocommit=True) as standby:
            while time.monotonic() - started < timeout:
                behind = standby.execute(
                    "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (target,)
                ).fetchone()[0]
                if behind is not None and behind <= 0:
                    return time.monotonic() - started
                time.sleep(0.1)
        raise DatabaseError(f"the standby did not catch up in {timeout}s")

    def stop(self) -> None:
        """Stop both servers (standby first) and delete their files."""
        for datadir in reversed(self._started):
            try:
                self._run("pg_ctl", "-D", str(datadir), "-m", "fast", "-w", "-t", "30", "stop")
            except (DatabaseError, subprocess.TimeoutExpired):
                with contextlib.suppress(DatabaseError, subprocess.TimeoutExpired):
                    self._run("pg_ctl", "-D", str(datadir), "-m", "immediate", "stop")
        self._started.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def lab_database(
    root: Path, replica_lag_ms: int
) -> Iterator[tuple[LabDatabase, ReplicaPair | None]]:
    """The database for one lab run, removed on the way out whatever happens."""
    if replica_lag_ms > 0:
        pair = ReplicaPair(root, replica_lag_ms)
        try:
            yield pair.start(), pair
        finally:
            pair.stop()
        return
    with databases.throwaway(DB_NAME, MACHINE_ADMIN_URL) as primary:
        yield LabDatabase(primary, None, f"database {DB_NAME} on the machine's server"), None
