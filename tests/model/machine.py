"""The rules and the invariants of the interleaving model.

Every rule is one thing that can happen in production: a request on any worker (its client
sending the version it holds, with the completion's position, without it, or with a
position from an older completion), a cache update that finishes late or never, an
announcement delivered late, out of order or never (with the position its listener read
after it, or none), a replica catching up, the replica reporting how far it has replayed (an
honest position, maybe an old one, or none), a listener reconnecting, a breaker tripping or
cooling down. After
every step the answers given in it are checked against the primary, the ground truth:

- false_lock: an access check (or a completion refused as locked) never says "locked" for a
  lesson the primary held as accessible before the request began;
- false_unlock: no answer calls a lesson accessible or completed that the primary does not
  hold so after the request (progress only grows: "never held" is "doesn't hold now");
- read_your_writes: a client that sends the highest version it has seen gets an answer at
  that version or later, and an answer at version v holds everything the primary held at v;
- lost_completion: every completion acknowledged with 200 is in the primary;
- worker_floor: a worker never answers from a version older than one it committed itself or
  was told of by an announcement (since its listener last connected): the promise the
  floor makes to clients that send no version;
- floor_state: the same promise on the worker's state: its floor for a learner never falls
  below a version it committed or was told of (announcements can arrive after newer news);
- stale_review: a review set never lacks the words of a lesson the primary held completed
  before the request began (and, as every read, keeps read_your_writes, worker_floor and
  false_unlock: it lists no lesson the primary doesn't hold).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import currently_in_test_context, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from progress.curriculum import LessonRef

from ..support.apps import SECRET
from ..support.tokens import token_minter
from .scheduler import ParkedUpdate
from .world import BREAKER_COOLDOWN_S, BREAKER_THRESHOLD, Completed, PrimaryState, World

COMPLETE = "/api/v1/modules/{}/lessons/{}/complete"
ACCESS = "/api/v1/modules/{}/lessons/{}/access"
PROGRESS = "/api/v1/progress"
REVIEW = "/api/v1/review"


class Violation(AssertionError):
    """The service broke its guarantee in this interleaving; `kind` names the check. One
    class per check, so hypothesis tells them apart (it keys failures by type)."""

    kind = "violation"

    def __init_subclass__(cls, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind


class FalseLock(Violation, kind="false_lock"): ...


class FalseUnlock(Violation, kind="false_unlock"): ...


class StaleRead(Violation, kind="read_your_writes"): ...


class LostCompletion(Violation, kind="lost_completion"): ...


class WorkerForgot(Violation, kind="worker_floor"): ...


class FloorFell(Violation, kind="floor_state"): ...


class StaleReview(Violation, kind="stale_review"): ...


CHECKS = tuple(v.kind for v in Violation.__subclasses__())


@dataclass
class Figures:
    """What a run explored: steps, examples and distinct interleavings (step sequences)."""

    steps: int = 0
    examples: int = 0
    interleavings: set[int] = field(default_factory=set)
    shapes: set[tuple[str, ...]] = field(default_factory=set)  # rule names only

    def as_dict(self) -> dict[str, int]:
        return {
            "steps": self.steps,
            "examples": self.examples,
            "distinct_interleavings": len(self.interleavings),
            "distinct_rule_sequences": len(self.shapes),
        }


@dataclass
class Learner:
    id: uuid.UUID
    email: str
    headers: dict[str, str]
    version: int = 0  # the highest version its client has seen (the reference client's)
    position: int | None = None  # the position its completion answer gave with `version`
    positions: dict[int, int] = field(default_factory=dict)  # version -> its completion's
    acknowledged: set[int] = field(default_factory=set)  # lesson ids answered 200
    history: dict[int, Completed] = field(default_factory=lambda: {0: {}})  # the primary's
    replica_version: int = 0


def new_learner() -> Learner:
    learner_id = uuid.uuid4()
    email = f"{learner_id.hex[:8]}@example.com"
    token = token_minter(SECRET).mint(learner_id, email, email_verified=True)  # the suite's mode
    return Learner(learner_id, email, {"Authorization": f"Bearer {token}"})


def step(function: Callable[..., None]) -> Callable[..., None]:
    """Count the step and remember it in the example's interleaving."""

    @functools.wraps(function)
    def counted(self: ProgressModel, **arguments: Any) -> None:
        self.figures.steps += 1
        self.trace.append((function.__name__, tuple(sorted(arguments.items()))))
        function(self, **arguments)

    return counted


WORKERS = st.integers(0, 2)
LEARNERS = st.integers(0, 1)  # two learners: one's traffic must never move the other's answers
CHOICE = st.integers(0, 7)  # which parked update (0: the oldest)
POSITIONS = st.sampled_from(["paired", "none", "older"])  # what the client sends beside minVersion


class ProgressModel(RuleBasedStateMachine):
    """Configured per run by `model_for`: the world, the path, the checks."""

    world: ClassVar[World]
    path: ClassVar[str] = "verified"
    checks: ClassVar[frozenset[str]] = frozenset(CHECKS)
    figures: ClassVar[Figures]

    def __init__(self) -> None:
        super().__init__()
        self.parked: list[ParkedUpdate] = []
        self.world.new_example(self.parked)
        self.learners = [new_learner(), new_learner()]
        # worker index, learner index -> the newest version the worker knows is committed
        self.known: dict[tuple[int, int], int] = {}
        # every commit with a position, in commit order: (learner index, version, position)
        self.commits: list[tuple[int, int, int]] = []
        self.trace: list[tuple[str, tuple]] = []
        self.said: list[str] = []
        # the primary as read after the last step: nothing writes it between steps
        self.truth = [PrimaryState(0, {}), PrimaryState(0, {})]

    # -- helpers ---------------------------------------------------------------------------

    @property
    def lessons(self) -> tuple[LessonRef, ...]:
        return self.world.lessons

    def _say(self, text: str) -> None:
        """What happened, for the counterexample (and for replays outside hypothesis)."""
        self.said.append(text)
        if currently_in_test_context():
            note(text)

    def _read_primary(self) -> None:
        self.truth = self.world.primary_states([learner.id for learner in self.learners])

    def _accessible(self, completed: Completed, lesson: LessonRef) -> bool:
        """The unlock rule, written again from the course's order (not the service's)."""
        return (
            lesson.index == 0
            or lesson.id in completed
            or self.lessons[lesson.index - 1].id in completed
        )

    def _lesson(self, primary: PrimaryState, offset: int) -> LessonRef:
        """A lesson near the learner's frontier (the first one not completed)."""
        index = min(max(len(primary.completed) + offset, 0), len(self.lessons) - 1)
        return self.lessons[index]

    def _name(self, lesson: LessonRef) -> str:
        return f"{lesson.module_slug}/{lesson.slug} (#{lesson.index})"

    def _fail(self, violation: type[Violation], message: str) -> None:
        if violation.kind in self.checks:
            raise violation(message)

    def _answered(self, worker: int, learner: int, response: Any) -> dict[str, Any]:
        if response.status_code != 200:
            raise AssertionError(
                f"unexpected {response.status_code}: {response.get_data(as_text=True)}"
            )
        body = response.get_json()
        if "path" in body:
            assert body["path"] == self.path, f"served by {body['path']}, not {self.path}"
        who = self.learners[learner]
        position = body.get("position")  # completion answers carry one
        if body["version"] > who.version or (body["version"] == who.version and position):
            who.version, who.position = body["version"], position
        return body

    def _holding(self, learner: int, send_version: bool, position: str) -> tuple[int | None, str]:
        """What the client sends: (minVersion or None, the query string). `position`:
        "paired", the position its completion answer gave with that version; "none"; or
        "older", one from an earlier completion (a client that kept the wrong one)."""
        who = self.learners[learner]
        if not send_version:
            return None, ""
        sent = who.position
        if position == "none":
            sent = None
        elif position == "older":
            older = [p for v, p in who.positions.items() if v < who.version]
            sent = max(older) if older else sent
        query = f"?minVersion={who.version}"
        return who.version, query + ("" if sent is None else f"&minPosition={sent}")

    def _check_version(
        self, worker: int, learner: int, sent: int | None, version: int, what: str
    ) -> None:
        if sent is not None and version < sent:
            self._fail(StaleRead, f"{what} answered at version {version} to minVersion={sent}")
        floor = self.known.get((worker, learner), 0)
        if version < floor:
            self._fail(
                WorkerForgot,
                f"{what} answered at version {version}, though "
                f"{self.world.workers[worker].name} knew version {floor} was committed",
            )

    def _committed(self, learner_index: int, before: PrimaryState, after: PrimaryState) -> None:
        """A new version: remember the primary's state, wait for every worker's NOTIFY."""
        learner = self.learners[learner_index]
        learner.history[after.version] = dict(after.completed)
        if after.version > before.version:
            for worker in self.world.workers:
                worker.receive(wait_for=f"{learner.id}:{after.version}")

    # -- requests --------------------------------------------------------------------------

    @rule(
        worker=WORKERS,
        learner=LEARNERS,
        offset=st.sampled_from([0, 1, -1]),
        update=st.sampled_from(["finish", "fail", "timeout"]),
    )
    @step
    def complete(self, worker: int, learner: int, offset: int, update: str) -> None:
        """Complete a lesson on a worker; its verified cache update finishes in time, fails,
        or is parked past the request's deadline (to run, fail or vanish later)."""
        w, who = self.world.workers[worker], self.learners[learner]
        before = self.truth[learner]
        lesson = self._lesson(before, offset)
        w.updates["verified"].outcome = update  # type: ignore[assignment]
        try:
            response = w.client.post(
                COMPLETE.format(lesson.module_slug, lesson.slug), headers=who.headers
            )
        finally:
            w.updates["verified"].outcome = "finish"
        self._read_primary()
        after = self.truth[learner]
        if response.status_code == 409:
            self._say(f"{w.name}: complete {self._name(lesson)} -> 409 locked")
            if self._accessible(before.completed, lesson):
                self._fail(FalseLock, f"completing open lesson {self._name(lesson)} refused")
            return
        body = self._answered(worker, learner, response)
        self._say(
            f"{w.name}: complete {self._name(lesson)} (update: {update}) -> version "
            f"{body['version']}, cacheUpdated={body['cacheUpdated']}"
        )
        who.acknowledged.add(lesson.id)
        if body["position"] is not None and after.version > before.version:
            who.positions[body["version"]] = body["position"]
            self.commits.append((learner, body["version"], body["position"]))
        self.known[worker, learner] = max(self.known.get((worker, learner), 0), body["version"])
        self._committed(learner, before, after)
        if lesson.id not in after.completed:
            self._fail(LostCompletion, f"{self._name(lesson)} acknowledged, not in the primary")

    @rule(
        worker=WORKERS,
        learner=LEARNERS,
        offset=st.sampled_from([0, 1, -1, 2]),
        send_version=st.booleans(),
        position=POSITIONS,
    )
    @step
    def check_access(
        self, worker: int, learner: int, offset: int, send_version: bool, position: str = "paired"
    ) -> None:
        """The navigation guard: is this lesson open? With or without the client's version."""
        w, who = self.world.workers[worker], self.learners[learner]
        before = after = self.truth[learner]  # an access check writes nothing
        lesson = self._lesson(before, offset)
        sent, query = self._holding(learner, send_version, position)
        url = ACCESS.format(lesson.module_slug, lesson.slug)
        response = w.client.get(url + query, headers=who.headers)
        body = self._answered(worker, learner, response)
        what = f"{w.name}: access {self._name(lesson)} {query or 'minVersion=None'}"
        self._say(
            f"{what} -> {'accessible' if body['accessible'] else 'LOCKED'} at version "
            f"{body['version']} from {body['source']} (primary: version {before.version})"
        )
        if not body["accessible"] and self._accessible(before.completed, lesson):
            self._fail(
                FalseLock,
                f"{what} answered locked at version {body['version']}; the primary held it "
                f"open at version {before.version} before the check began",
            )
        if body["accessible"] and not self._accessible(after.completed, lesson):
            self._fail(FalseUnlock, f"{what} answered accessible; the primary says locked")
        self._check_version(worker, learner, sent, body["version"], what)

    @rule(worker=WORKERS, learner=LEARNERS, send_version=st.booleans(), position=POSITIONS)
    @step
    def read_progress(
        self, worker: int, learner: int, send_version: bool, position: str = "paired"
    ) -> None:
        """A page (re)load: the learner's completions and which lessons are open."""
        w, who = self.world.workers[worker], self.learners[learner]
        sent, query = self._holding(learner, send_version, position)
        response = w.client.get(PROGRESS + query, headers=who.headers)
        body = self._answered(worker, learner, response)
        after = self.truth[learner]  # a progress read writes nothing
        by_key = {(lesson.module_slug, lesson.slug): lesson.id for lesson in self.lessons}
        completed = {by_key[c["moduleId"], c["lessonId"]] for c in body["completed"]}
        open_ids = {
            by_key[x["moduleId"], x["lessonId"]] for x in body["lessons"] if x["accessible"]
        }
        what = f"{w.name}: progress {query or 'minVersion=None'}"
        self._say(f"{what} -> version {body['version']}, {len(completed)} completed")
        if not completed <= set(after.completed):
            self._fail(FalseUnlock, f"{what} lists completions the primary doesn't hold")
        if any(not self._accessible(after.completed, self.lessons_by_id[i]) for i in open_ids):
            self._fail(FalseUnlock, f"{what} opens a lesson the primary holds locked")
        self._check_version(worker, learner, sent, body["version"], what)
        missing = set(who.history.get(body["version"], {})) - completed
        if missing:
            self._fail(StaleRead, f"{what} claims version {body['version']} without {missing}")

    @rule(worker=WORKERS, learner=LEARNERS, send_version=st.booleans(), position=POSITIONS)
    @step
    def read_review(
        self, worker: int, learner: int, send_version: bool, position: str = "paired"
    ) -> None:
        """The learner opens review: the words of every completed lesson."""
        w, who = self.world.workers[worker], self.learners[learner]
        sent, query = self._holding(learner, send_version, position)
        response = w.client.get(REVIEW + query, headers=who.headers)
        body = self._answered(worker, learner, response)
        before = after = self.truth[learner]  # a review writes nothing
        by_key = {(lesson.module_slug, lesson.slug): lesson for lesson in self.lessons}
        listed = {by_key[x["moduleId"], x["lessonId"]].id for x in body["words"]}
        what = f"{w.name}: review {query or 'minVersion=None'}"
        self._say(
            f"{what} -> version {body['version']}, words of {len(listed)} lessons from "
            f"{body['source']} (primary: version {before.version})"
        )
        if not listed <= set(after.completed):
            self._fail(FalseUnlock, f"{what} lists words of lessons the primary doesn't hold")
        missing = {
            lesson_id for lesson_id in before.completed if self.lessons_by_id[lesson_id].words
        } - listed
        if missing:
            self._fail(
                StaleReview,
                f"{what} answered at version {body['version']} without the words of "
                f"{sorted(self._name(self.lessons_by_id[i]) for i in missing)}, completed in "
                f"the primary at version {before.version} before the request began",
            )
        self._check_version(worker, learner, sent, body["version"], what)
        behind = {
            i for i in who.history.get(body["version"], {}) if self.lessons_by_id[i].words
        } - listed
        if behind:
            self._fail(StaleRead, f"{what} claims version {body['version']} without {behind}")

    @functools.cached_property
    def lessons_by_id(self) -> dict[int, LessonRef]:
        return {lesson.id: lesson for lesson in self.lessons}

    # -- background cache updates ----------------------------------------------------------

    @precondition(lambda self: self.parked)
    @rule(choice=CHOICE, fails=st.booleans())
    @step
    def parked_update_runs(self, choice: int, fails: bool) -> None:
        """A cache update that missed its deadline runs now (and maybe fails)."""
        update = self.parked.pop(choice % len(self.parked))
        self._say(f"{update.describe()} runs late{' and fails' if fails else ''}")
        update.run(fail=fails)

    @precondition(lambda self: self.parked)
    @rule(choice=CHOICE)
    @step
    def parked_update_is_lost(self, choice: int) -> None:
        """A cache update that never runs (its thread died with the worker's pool)."""
        update = self.parked.pop(choice % len(self.parked))
        self._say(f"{update.describe()} never runs")

    # -- announcements (NOTIFY) ------------------------------------------------------------

    def _announcement(self, worker: int, newest: bool) -> str | None:
        inbox = self.world.workers[worker].inbox
        return inbox.pop(-1 if newest else 0) if inbox else None

    def _has_announcements(self) -> bool:
        return any(worker.inbox for worker in self.world.workers)

    @precondition(_has_announcements)
    @rule(worker=WORKERS, newest=st.booleans(), stamped=st.booleans())
    @step
    def announcement_delivered(self, worker: int, newest: bool, stamped: bool = False) -> None:
        """The worker's oldest received announcement reaches it, or the newest, overtaking
        the others (out of order); the rest stay delayed. Stamped: with the primary's
        insert position its listener read after it arrived; else before that read."""
        payload = self._announcement(worker, newest)
        if payload is None:
            return
        learner_id, _, version = payload.partition(":")
        position = self.world.insert_position() if stamped else None
        self._say(
            f"{self.world.workers[worker].name} learns version {version}"
            + (f" at position {position}" if stamped else "")
        )
        self.world.workers[worker].listener.apply(payload, position)
        for index, learner in enumerate(self.learners):
            if str(learner.id) == learner_id:
                key = (worker, index)
                self.known[key] = max(self.known.get(key, 0), int(version))

    @precondition(_has_announcements)
    @rule(worker=WORKERS, newest=st.booleans())
    @step
    def announcement_dropped(self, worker: int, newest: bool) -> None:
        """An announcement is lost (never delivered)."""
        payload = self._announcement(worker, newest)
        if payload is not None:
            name = self.world.workers[worker].name
            self._say(f"{name} never learns version {payload.partition(':')[2]}")

    @rule(worker=WORKERS)
    @step
    def listener_reconnects(self, worker: int) -> None:
        """The LISTEN session broke and reconnected: what was announced meanwhile is lost,
        so the worker clears its cache and floors (as VersionListener does on connect)."""
        w = self.world.workers[worker]
        self._say(f"{w.name}'s listener reconnects")
        w.inbox.clear()
        w.state.cache.clear()
        for key in [key for key in self.known if key[0] == worker]:
            del self.known[key]

    # -- the replica -----------------------------------------------------------------------

    @rule(
        learner=LEARNERS,
        everything=st.booleans(),
        reports=st.sampled_from(["newest", "older", "none"]),
    )
    @step
    def replica_catches_up(self, learner: int, everything: bool, reports: str = "newest") -> None:
        """The replica applies the next committed version (or all of them); until it
        does, it lags. From then on it reports (pg_last_wal_replay_lsn) the newest position
        it has replayed, an older one, or none (it can't say); its next read tells a worker."""
        who = self.learners[learner]
        latest = max(who.history)
        if who.replica_version < latest:
            target = latest if everything else who.replica_version + 1
            self._say(f"the replica reaches version {target}")
            self.world.replicate(who.id, who.email, PrimaryState(target, who.history[target]))
            who.replica_version = target
        honest = self._replayed_positions()
        position = None if reports == "none" else honest[-2 if reports == "older" else -1]
        self._say(f"the replica reports replay position {position} (newest: {honest[-1]})")
        self.world.report_replay_position(position)

    def _replayed_positions(self) -> list[int]:
        """The positions the replica may honestly report: each commit's, up to the first
        commit it has not applied (a replica replays in commit order); 0 twice, so that
        there is always an older one."""
        honest = [0, 0]
        for learner, version, position in self.commits:
            if self.learners[learner].replica_version < version:
                break
            honest.append(position)
        return honest

    # -- the breaker -----------------------------------------------------------------------

    @rule(worker=WORKERS)
    @step
    def breaker_trips(self, worker: int) -> None:
        """Consecutive failed cache updates open the worker's breaker (cache bypassed)."""
        w = self.world.workers[worker]
        self._say(f"{w.name}'s breaker trips")
        for _ in range(BREAKER_THRESHOLD):
            w.state.breaker.record_failure()

    @rule(worker=WORKERS)
    @step
    def breaker_cools_down(self, worker: int) -> None:
        """The cool-down passes: the next cache update is the probe (half open)."""
        w = self.world.workers[worker]
        self._say(f"{w.name}'s breaker cools down")
        w.clock.now += BREAKER_COOLDOWN_S

    # -- after every step ------------------------------------------------------------------

    @invariant()
    def acknowledged_completions_are_in_the_primary(self) -> None:
        self._read_primary()
        for learner, truth in zip(self.learners, self.truth, strict=True):
            missing = learner.acknowledged - set(truth.completed)
            if missing:
                self._fail(LostCompletion, f"acknowledged lessons {missing} are not in the primary")

    @invariant()
    def floors_hold_what_each_worker_was_told(self) -> None:
        if "floor_state" not in self.checks:
            return
        for (worker, learner), version in self.known.items():
            w = self.world.workers[worker]
            floor = w.state.cache.floor(self.learners[learner].id)
            if floor < version:
                self._fail(
                    FloorFell,
                    f"{w.name}'s floor is {floor}, though it knew version {version} was committed",
                )

    def teardown(self) -> None:
        self.figures.examples += 1
        self.figures.interleavings.add(hash(tuple(self.trace)))
        self.figures.shapes.add(tuple(name for name, _ in self.trace))
        self.parked.clear()


def model_for(
    world: World,
    *,
    path: str = "verified",
    checks: frozenset[str] = frozenset(CHECKS),
    name: str = "VerifiedPathModel",
) -> type[ProgressModel]:
    """A configured machine class (its name keys its examples in hypothesis's database)."""
    world.serve(path)
    return type(
        name,
        (ProgressModel,),
        {
            "world": world,
            "path": path,
            "checks": frozenset(checks),
            "figures": Figures(),
        },
    )
