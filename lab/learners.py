"""Simulated learners: each walks K lessons as the app's client would, through a load
balancer that rotates its requests over the instances, all of them at the same time.

For lesson k a learner
1. has lesson k open (the access check that opened it), and reads it for a while,
2. taps lesson k+1 on the lesson map before finishing k: a *correct* lock screen (a
   "locked" answer here is right; an "accessible" one would be a false unlock),
3. works through lesson k (the think time) and completes it,
4. at once opens lesson k+1 on another instance: "locked" here is a false lock screen as
   the learner saw it (lesson k was just acknowledged), reported with
   POST /api/v1/events/lock-screen and the answer's `lockReceipt`, as a real client would,
5. opens review: a review set missing a word of any lesson acknowledged so far is a stale
   review set as the learner saw it.

Requests rotate round robin over the instances, so step 4 lands on an instance that
answered an earlier step: one that may hold an older copy of the learner's progress.

Every learner is a coroutine on one asyncio event loop (aiohttp), so ten thousand sessions
can be active at once; the requests share a keep-alive connection pool per instance, as a
load balancer's upstream connections do. Only learners on the verified path send
`minVersion` (the navigation guard of the verified client), and with it the `position` of
the completion that gave it as `minPosition`, as the reference client does; the legacy
client of the old app sent nothing. A request that fails on the network or with a 5xx is
retried once, one second later, as the reference client does.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from harness.identity import TokenMinter

REQUEST_TIMEOUT_S = 30
RETRY_DELAY_S = 1.0
KINDS = ("access", "complete", "report", "review")


@dataclass(frozen=True)
class LessonStep:
    module_id: str
    lesson_id: str
    words: tuple[str, ...] = ()  # its words' terms, as the curriculum route lists them

    def url(self, suffix: str) -> str:
        return f"/api/v1/modules/{self.module_id}/lessons/{self.lesson_id}/{suffix}"


@dataclass
class LearnerResult:
    learner_id: str
    path: str | None = None
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    false_locks_seen: int = 0
    false_locks_by_path: dict[str, int] = field(default_factory=dict)  # by the answering path
    false_unlocks_seen: int = 0  # lesson k+1 said accessible before k was completed
    stale_reviews_seen: int = 0  # review sets missing a word of an acknowledged lesson
    stale_reviews_by_path: dict[str, int] = field(default_factory=dict)  # by answering path
    reviews: int = 0
    reports_acknowledged: int = 0  # lock-screen reports answered 202
    reports_confirmed_false: int = 0  # ... that the service judged false
    reports_uncertain: int = 0  # a report whose first try failed on the network
    reports_failed: int = 0
    retries: int = 0
    connection_errors: int = 0
    aborted: str | None = None  # why the learner could not go on
    latencies: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def record(self, path: str, kind: str, seconds: float) -> None:
        self.latencies.setdefault(path, {}).setdefault(kind, []).append(seconds)


class RequestFailed(Exception):
    """Both tries failed (network error or 5xx), or an unexpected 4xx came back."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Timeline:
    """What happened when, for the report's rates and the picture: one row per answered
    request (seconds since the start, served path, kind, latency) and per false lock."""

    started: float = field(default_factory=time.monotonic)
    requests: list[tuple[float, str, str, float]] = field(default_factory=list)
    false_locks: list[tuple[float, str]] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)  # when each try was sent
    activity: list[tuple[float, int]] = field(default_factory=list)  # (t, learners active)
    active: int = 0
    peak_active: int = 0
    started_learners: int = 0
    finished_learners: int = 0
    all_started_at: float | None = None  # when the last learner began its session
    first_finished_at: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def learner_started(self, total: int) -> None:
        self.active += 1
        self.started_learners += 1
        self.peak_active = max(self.peak_active, self.active)
        self.activity.append((self.now(), self.active))
        if self.started_learners == total:
            self.all_started_at = self.now()

    def learner_finished(self) -> None:
        self.active -= 1
        self.finished_learners += 1
        self.activity.append((self.now(), self.active))
        if self.first_finished_at is None:
            self.first_finished_at = self.now()


class Learner:
    """One simulated learner; `run()` walks the lessons and returns what it saw."""

    def __init__(
        self,
        sessions: Sequence[aiohttp.ClientSession],
        first_instance: int,
        lessons: Sequence[LessonStep],
        minter: TokenMinter,
        timeline: Timeline,
        think: Callable[[], float] = lambda: 0.0,
        send_min_version: bool = True,
        learner_id: uuid.UUID | None = None,
    ) -> None:
        self.id = learner_id or uuid.uuid4()
        self.send_min_version = send_min_version
        token = minter.mint(self.id, f"lab-{self.id.hex[:12]}@example.com", ttl_s=4 * 3600)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.sessions = sessions
        self.cursor = first_instance
        self.lessons = list(lessons)
        self.timeline = timeline
        self.think = think
        self.version = 0
        self.position: int | None = None  # the completion's that made `version`, if any
        self.result = LearnerResult(str(self.id))

    # -- one request, through the "load balancer" ---------------------------------------

    async def _call(self, method: str, path: str, kind: str, body: Any = None) -> Reply:
        index = self.cursor % len(self.sessions)
        self.cursor += 1  # the next request goes to the next instance
        session = self.sessions[index]
        failure = ""
        for attempt in (1, 2):
            started = time.perf_counter()
            self.timeline.sent.append(self.timeline.now())
            try:
                async with session.request(method, path, json=body, headers=self.headers) as r:
                    reply = Reply(r.status, await r.read())
                    served = r.headers.get("X-Progress-Path", "-")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.result.connection_errors += 1
                failure = f"{type(exc).__name__}: {exc}"
                if kind == "report" and attempt == 1:
                    self.result.reports_uncertain += 1  # it may have been counted
            else:
                elapsed = time.perf_counter() - started
                if reply.status < 500:
                    self.result.record(served, kind, elapsed)
                    self.timeline.requests.append((self.timeline.now(), served, kind, elapsed))
                    return reply
                failure = f"HTTP {reply.status}: {reply.body[:200]!r}"
            if attempt == 1:
                self.result.retries += 1
                await asyncio.sleep(RETRY_DELAY_S)  # the same instance: a load balancer's retry
        raise RequestFailed(f"{method} {path} on instance {index}: {failure}")

    def _json(self, reply: Reply, expected: int, what: str) -> dict[str, Any]:
        if reply.status != expected:
            raise RequestFailed(f"{what}: HTTP {reply.status}: {reply.body[:200]!r}")
        return reply.json()

    def _holding(self) -> str:
        """The query the reference client sends: minVersion, and minPosition if known."""
        if not (self.send_min_version and self.version):
            return ""
        position = "" if self.position is None else f"&minPosition={self.position}"
        return f"?minVersion={self.version}{position}"

    def _saw(self, version: int, position: int | None = None) -> None:
        """Versions only grow; a newer one from an answer without a position has none."""
        if version > self.version or (version == self.version and self.position is None):
            self.version, self.position = version, position

    async def _access(self, lesson: LessonStep) -> dict[str, Any]:
        path = lesson.url("access")
        path += self._holding()  # the reference client's navigation guard
        answer = self._json(await self._call("GET", path, "access"), 200, f"access {lesson}")
        self.result.path = self.result.path or answer["path"]
        self._saw(answer["version"])
        return answer

    async def _complete(self, lesson: LessonStep) -> dict[str, Any]:
        reply = await self._call("POST", lesson.url("complete"), "complete")
        answer = self._json(reply, 200, f"complete {lesson}")
        if answer.get("success") is not True:
            raise RequestFailed(f"complete {lesson}: {answer}")
        self.result.path = answer["path"]
        self._saw(answer["version"], answer.get("position"))
        return answer

    async def _report_lock_screen(self, lesson: LessonStep, receipt: str) -> None:
        body = {"moduleId": lesson.module_id, "lessonId": lesson.lesson_id, "lockReceipt": receipt}
        try:
            reply = await self._call("POST", "/api/v1/events/lock-screen", "report", body)
            answer = self._json(reply, 202, f"lock-screen report {lesson}")
        except RequestFailed:
            self.result.reports_failed += 1
            return
        self.result.reports_acknowledged += 1
        self.result.reports_confirmed_false += bool(answer.get("falseLock"))

    async def _review(self) -> None:
        """Open review; count the set stale if it lacks a word of a lesson acknowledged."""
        path = "/api/v1/review" + self._holding()
        answer = self._json(await self._call("GET", path, "review"), 200, "review")
        self._saw(answer["version"])
        self.result.reviews += 1
        terms = {(w["moduleId"], w["lessonId"], w["term"]) for w in answer["words"]}
        wanted = {
            (lesson.module_id, lesson.lesson_id, term)
            for lesson in self.lessons
            if (lesson.module_id, lesson.lesson_id) in self.result.acknowledged
            for term in lesson.words
        }
        if not wanted <= terms:
            self.result.stale_reviews_seen += 1
            by_path = self.result.stale_reviews_by_path
            by_path[answer["path"]] = by_path.get(answer["path"], 0) + 1

    # -- the walk ------------------------------------------------------------------------

    async def run(self, lessons: int) -> LearnerResult:
        try:
            await self._access(self.lessons[0])  # the first lesson is open
            for k in range(lessons):
                current, following = self.lessons[k], self.lessons[k + 1]
                await asyncio.sleep(self.think())  # reading lesson k
                if (await self._access(following))["accessible"]:
                    self.result.false_unlocks_seen += 1  # k isn't complete yet
                await asyncio.sleep(self.think())  # working through lesson k
                await self._complete(current)
                self.result.acknowledged.append((current.module_id, current.lesson_id))
                answer = await self._access(following)
                if not answer["accessible"]:  # k was just acknowledged
                    self.result.false_locks_seen += 1
                    shown_by = answer["path"]
                    by_path = self.result.false_locks_by_path
                    by_path[shown_by] = by_path.get(shown_by, 0) + 1
                    self.timeline.false_locks.append((self.timeline.now(), shown_by))
                    await self._report_lock_screen(following, answer["lockReceipt"])
                await self._review()  # the words of lesson k must be there
        except RequestFailed as exc:
            self.result.aborted = str(exc)
        return self.result


def think_time(mean_s: float, rng: random.Random) -> Callable[[], float]:
    """Uniform within a quarter of the mean either side: learners drift apart."""
    if mean_s <= 0:
        return lambda: 0.0
    return lambda: rng.uniform(0.75 * mean_s, 1.25 * mean_s)


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (1-99), interpolated; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
