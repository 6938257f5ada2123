"""Simulated learners: each walks K lessons as the app's client would, through a load
balancer that rotates its requests over the instances.

For lesson k a learner
1. has lesson k open (the access check that opened it),
2. taps lesson k+1 on the lesson map before finishing k: a *correct* lock screen (a
   "locked" answer here is right; an "accessible" one would be a false unlock),
3. completes lesson k,
4. at once opens lesson k+1 on another instance: "locked" here is a false lock screen as
   the learner saw it (lesson k was just acknowledged), reported with
   POST /api/v1/events/lock-screen as a real client would.

Requests rotate round robin over the instances, so step 4 lands on the instance that
answered step 2 (or step 1 with three instances): one that holds an older copy of the
learner's progress. Each learner keeps one keep-alive connection per instance, as a
browser behind a load balancer does, so that copy sits in the worker that answers.

Only learners on the verified path send `minVersion` (the navigation guard of the
verified client); the legacy client of the old app sent nothing. A request that fails on
the network or with a 5xx is retried once, one second later, as the reference client does.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from progress.auth import issue_token

REQUEST_TIMEOUT_S = 30
RETRY_DELAY_S = 1.0
KINDS = ("access", "complete", "report")


@dataclass(frozen=True)
class LessonStep:
    module_id: str
    lesson_id: str

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


class Learner:
    """One simulated learner; `run()` walks the lessons and returns what it saw."""

    def __init__(
        self,
        instances: Sequence[str],
        first_instance: int,
        lessons: Sequence[LessonStep],
        secret: str,
        send_min_version: bool = True,
    ) -> None:
        self.id = uuid.uuid4()
        self.send_min_version = send_min_version
        self.token = issue_token(
            self.id, f"lab-{self.id.hex[:12]}@example.com", secret=secret, ttl_s=4 * 3600
        )
        self.instances = list(instances)
        self.cursor = first_instance
        self.lessons = list(lessons)
        self.version = 0
        self.result = LearnerResult(str(self.id))
        self.sessions = [requests.Session() for _ in self.instances]
        for session in self.sessions:
            session.headers["Authorization"] = f"Bearer {self.token}"

    # -- one request, through the "load balancer" ---------------------------------------

    def _call(self, method: str, path: str, kind: str, body: Any = None) -> requests.Response:
        index = self.cursor % len(self.instances)
        self.cursor += 1  # the next request goes to the next instance
        url = self.instances[index] + path
        failure = ""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                response = self.sessions[index].request(
                    method, url, json=body, timeout=REQUEST_TIMEOUT_S
                )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                self.result.connection_errors += 1
                failure = f"{type(exc).__name__}: {exc}"
                if kind == "report" and attempt == 1:
                    self.result.reports_uncertain += 1  # it may have been counted
            else:
                elapsed = time.perf_counter() - started
                served = response.headers.get("X-Progress-Path", "-")
                if response.status_code < 500:
                    self.result.record(served, kind, elapsed)
                    return response
                failure = f"HTTP {response.status_code}: {response.text[:200]}"
            if attempt == 1:
                self.result.retries += 1
                time.sleep(RETRY_DELAY_S)  # the same instance: a load balancer's retry
        raise RequestFailed(f"{method} {path} on instance {index}: {failure}")

    def _json(self, response: requests.Response, expected: int, what: str) -> dict[str, Any]:
        if response.status_code != expected:
            raise RequestFailed(f"{what}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def _access(self, lesson: LessonStep) -> dict[str, Any]:
        path = lesson.url("access")
        if self.send_min_version and self.version:  # the reference client's navigation guard
            path += f"?minVersion={self.version}"
        answer = self._json(self._call("GET", path, "access"), 200, f"access {lesson}")
        self.result.path = self.result.path or answer["path"]
        self.version = max(self.version, answer["version"])
        return answer

    def _complete(self, lesson: LessonStep) -> dict[str, Any]:
        answer = self._json(
            self._call("POST", lesson.url("complete"), "complete"), 200, f"complete {lesson}"
        )
        if answer.get("success") is not True:
            raise RequestFailed(f"complete {lesson}: {answer}")
        self.result.path = answer["path"]
        self.version = max(self.version, answer["version"])
        return answer

    def _report_lock_screen(self, lesson: LessonStep, receipt: str) -> None:
        body = {"moduleId": lesson.module_id, "lessonId": lesson.lesson_id, "lockReceipt": receipt}
        try:
            response = self._call("POST", "/api/v1/events/lock-screen", "report", body)
            answer = self._json(response, 202, f"lock-screen report {lesson}")
        except RequestFailed:
            self.result.reports_failed += 1
            return
        self.result.reports_acknowledged += 1
        self.result.reports_confirmed_false += bool(answer.get("falseLock"))

    # -- the walk ------------------------------------------------------------------------

    def run(self, lessons: int) -> LearnerResult:
        try:
            self._access(self.lessons[0])  # the first lesson is open
            for k in range(lessons):
                current, following = self.lessons[k], self.lessons[k + 1]
                if self._access(following)["accessible"]:
                    self.result.false_unlocks_seen += 1  # k isn't complete yet
                self._complete(current)
                self.result.acknowledged.append((current.module_id, current.lesson_id))
                answer = self._access(following)
                if not answer["accessible"]:  # k was just acknowledged
                    self.result.false_locks_seen += 1
                    shown_by = answer["path"]
                    by_path = self.result.false_locks_by_path
                    by_path[shown_by] = by_path.get(shown_by, 0) + 1
                    self._report_lock_screen(following, answer["lockReceipt"])
        except RequestFailed as exc:
            self.result.aborted = str(exc)
        finally:
            for session in self.sessions:
                session.close()
        return self.result


class StartCounter:
    """How many learners have started; fires `on_reach` once when `threshold` is reached."""

    def __init__(self, threshold: int, on_reach: Callable[[], None] | None = None) -> None:
        self.threshold = threshold
        self.on_reach = on_reach
        self.count = 0
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self.count += 1
            fire = self.count == self.threshold and self.on_reach is not None
        if fire:
            self.on_reach()


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (1-99), interpolated; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
