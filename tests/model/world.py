"""The model's world: a primary and a replica database, and workers of the real service.

- The primary is a real PostgreSQL database with the migrations and the course: the
  model's ground truth, read by the model on its own connection.
- The replica is a second real database with the same schema and course. Nothing writes it
  but the model, which applies the primary's committed states to it in order, as streaming
  replication would, only when the model says: until then it lags. It reports a replay
  position (`pg_last_wal_replay_lsn()`, tests/support/replay_position.py) that the model
  chooses among the honest ones: none, or the position of a commit it has applied with
  every commit before it.
- Each worker is a Flask app of the service (its own cache, floors and breaker; its cache
  updates handed to an `UpdateScheduler`). Instance A's two workers read the replica;
  instance B's worker has none. Announcements are real NOTIFYs received on a real LISTEN
  session per worker; the model delivers each to the worker's `VersionListener.apply`
  when it chooses (in order, reordered, late or never).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
from flask import Flask
from flask.testing import FlaskClient

from harness import databases
from harness.service import UNREACHED_RATE_LIMITS
from progress import rollout
from progress.breaker import CircuitBreaker
from progress.curriculum import LessonRef
from progress.flags import flag_gate
from progress.invalidation import CHANNEL, VersionListener, libpq_dsn
from progress.replica import POSITION_KEY
from progress.worker import WorkerState, worker_state

from ..support import replay_position
from ..support.apps import build_app, dispose, migrate_and_seed
from .scheduler import ParkedUpdate, UpdateScheduler

BREAKER_THRESHOLD = 3
BREAKER_COOLDOWN_S = 5.0
WORKER_SETTINGS = {
    "PROGRESS_LOG_LEVEL": "ERROR",  # the mutations log thousands of false locks
    "PROGRESS_BREAKER_THRESHOLD": BREAKER_THRESHOLD,
    "PROGRESS_BREAKER_COOLDOWN_MS": int(BREAKER_COOLDOWN_S * 1000),
    # The model hunts interleavings, not deadlines (tests/test_db_hang.py bounds those): a
    # call slowed past the 3 s default by a machine busy with other suites is no finding.
    "PROGRESS_DB_TIMEOUT_MS": 30_000,
    # a lagging replica is retried, then the primary answers: keep the real sleeps short
    "PROGRESS_RETRY_BASE_MS": 1,
    "PROGRESS_RETRY_MAX_MS": 4,
    # The model's learners complete far faster than a person: limits it never reaches.
    **UNREACHED_RATE_LIMITS,
}
ANNOUNCEMENT_WAIT_S = 5.0

Completed = dict[int, datetime]  # lesson id -> completed at


@dataclass(frozen=True)
class PrimaryState:
    version: int
    completed: Completed


class ModelClock:
    """The breaker's clock: time passes only when the model says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Worker:
    name: str
    app: Flask
    client: FlaskClient
    state: WorkerState
    listen: psycopg.Connection  # a real LISTEN session on the primary
    listener: VersionListener  # never started: the model calls apply()
    has_replica: bool
    clock: ModelClock = field(default_factory=ModelClock)
    inbox: list[str] = field(default_factory=list)  # received, not yet delivered
    updates: dict[str, UpdateScheduler] = field(default_factory=dict)

    def reset(self, parked: list[ParkedUpdate]) -> None:
        """A fresh process: empty cache and floors, a closed breaker, no announcements."""
        self.state.cache.clear()
        self.app.extensions[POSITION_KEY].forget()  # what the replica said to the last example
        self.clock = ModelClock()
        self.state.breaker = CircuitBreaker(
            threshold=BREAKER_THRESHOLD, cooldown_s=BREAKER_COOLDOWN_S, clock=self.clock
        )
        for path in ("verified", "legacy"):
            self.updates[path] = UpdateScheduler(self.name, path, parked)
            self.state.use_background(path, self.updates[path])
        self.receive(wait_for=None)
        self.inbox.clear()

    def receive(self, wait_for: str | None) -> None:
        """Move the announcements the primary sent this session into the inbox; with
        `wait_for`, until that payload has arrived (NOTIFY is sent on commit)."""
        deadline = ANNOUNCEMENT_WAIT_S if wait_for else 0.0
        for notification in self.listen.notifies(timeout=deadline):
            self.inbox.append(notification.payload)
            if notification.payload == wait_for:
                return
        if wait_for is not None and wait_for not in self.inbox:
            raise AssertionError(f"{self.name} never received the announcement {wait_for}")


class World:
    """Databases and workers built once per test session; `new_example` resets them."""

    def __init__(self, primary_url: str, replica_url: str, tmp: Path) -> None:
        self.primary_url = primary_url
        self.replica_url = replica_url
        self.primary = psycopg.connect(libpq_dsn(primary_url), autocommit=True)
        self.replica = psycopg.connect(libpq_dsn(replica_url), autocommit=False)
        self.workers = [
            self._worker("a1", tmp, replica=True),
            self._worker("a2", tmp, replica=True),
            self._worker("b1", tmp, replica=False),
        ]
        with self.workers[0].app.app_context():
            self.lessons: tuple[LessonRef, ...] = worker_state().curriculum().lessons
        self._check_replica_course()

    def _worker(self, name: str, tmp: Path, *, replica: bool) -> Worker:
        settings = dict(WORKER_SETTINGS)
        if replica:
            settings["DATABASE_REPLICA_URL"] = self.replica_url
        app = build_app(self.primary_url, tmp / name, **settings)
        with app.app_context():
            state = worker_state()
        state.listener.enabled = False  # no LISTEN thread: the model delivers announcements
        listen = psycopg.connect(libpq_dsn(self.primary_url), autocommit=True)
        listen.execute(f"LISTEN {CHANNEL}")
        return Worker(
            name=name,
            app=app,
            client=app.test_client(),
            state=state,
            listen=listen,
            listener=VersionListener(libpq_dsn(self.primary_url), state.cache),
            has_replica=replica,
        )

    def _check_replica_course(self) -> None:
        ids = self.replica.execute("SELECT id FROM lessons ORDER BY id").fetchall()
        self.replica.rollback()
        assert sorted(row[0] for row in ids) == sorted(lesson.id for lesson in self.lessons)

    def serve(self, path: str) -> None:
        """Send every learner to `path` ("verified": 100 %, "legacy": 0 %)."""
        with self.workers[0].app.app_context():
            rollout.set_rollout(100 if path == "verified" else 0, "interleaving model", "tests")
        for worker in self.workers:
            with worker.app.app_context():
                flag_gate().reload_now()

    def new_example(self, parked: list[ParkedUpdate]) -> None:
        self.report_replay_position(None)
        for worker in self.workers:
            worker.reset(parked)

    def report_replay_position(self, position: int | None) -> None:
        """What the replica answers for `pg_last_wal_replay_lsn()` from now on."""
        replay_position.report(self.replica, position)

    def insert_position(self) -> int:
        """The primary's WAL insert position now: past every commit made so far."""
        return replay_position.insert_position(self.primary)

    # -- the primary, the model's ground truth --------------------------------------------

    def primary_states(self, learners: list[uuid.UUID]) -> list[PrimaryState]:
        """Each learner's version and completions on the primary, in one statement."""
        rows = self.primary.execute(
            "SELECT v.user_id, v.version, p.lesson_id, p.completed_at FROM progress_versions v"
            " LEFT JOIN lesson_progress p ON p.user_id = v.user_id WHERE v.user_id = ANY(%s)",
            (learners,),
        ).fetchall()
        versions: dict[uuid.UUID, int] = {}
        completed: dict[uuid.UUID, Completed] = {learner: {} for learner in learners}
        for learner, version, lesson, at in rows:
            versions[learner] = version
            if lesson is not None:
                completed[learner][lesson] = at
        return [PrimaryState(versions.get(x, 0), completed[x]) for x in learners]

    # -- the replica: the primary's states, applied in order, when the model says ----------

    def replicate(self, learner: uuid.UUID, email: str, state: PrimaryState) -> None:
        """Make the replica hold `state` for the learner, in one transaction."""
        with self.replica.transaction():
            self.replica.execute(
                "INSERT INTO users (id, email, email_verified, created_at)"
                " VALUES (%s, %s, true, now()) ON CONFLICT (id) DO NOTHING",
                (learner, email),
            )
            self.replica.execute(
                "INSERT INTO progress_versions (user_id, version, updated_at)"
                " VALUES (%s, %s, now()) ON CONFLICT (user_id) DO UPDATE SET version = %s",
                (learner, state.version, state.version),
            )
            self.replica.execute("DELETE FROM lesson_progress WHERE user_id = %s", (learner,))
            # Each completion made the next version, in the order they were completed.
            completions = sorted(state.completed.items(), key=lambda item: item[1])
            for version, (lesson, at) in enumerate(completions, start=1):
                self.replica.execute(
                    "INSERT INTO lesson_progress (user_id, lesson_id, completed_at, version,"
                    " acknowledged_at) VALUES (%s, %s, %s, %s, %s)",
                    (learner, lesson, at, version, at),
                )

    def close(self) -> None:
        for worker in self.workers:
            worker.listen.close()
            dispose(worker.app)
        self.primary.close()
        self.replica.close()


def build_world(database: str, tmp: Path) -> World:
    primary_url = databases.recreate(database)
    replica_url = databases.recreate(f"{database}_replica")
    with psycopg.connect(libpq_dsn(primary_url), autocommit=True) as admin:
        for name in (database, f"{database}_replica"):
            # a throwaway database: commits needn't wait for the disk (visibility and
            # NOTIFY are unchanged), which keeps a step cheap on a busy machine
            admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    for url, where in ((primary_url, "primary"), (replica_url, "replica")):
        app = build_app(url, tmp / where, PROGRESS_LOG_LEVEL="ERROR")
        migrate_and_seed(app)
        dispose(app)
    replay_position.install(replica_url)
    return World(primary_url, replica_url, tmp)
