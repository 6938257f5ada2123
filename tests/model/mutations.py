"""The verified path with one defence switched off, and the legacy path: each must let the
model find a counterexample, or the model has a hole.

Switching a defence off patches the real code in the test (the fault is the point here);
every other defence stays on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from progress import faults
from progress.cache import UNKNOWN, Known, ProgressCache, ProgressSnapshot
from progress.paths.verified import Read, VerifiedPath


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    path: str  # which path serves the learners
    finds: str  # the invariant (machine.CHECKS) it must break
    switch_off: Callable[[pytest.MonkeyPatch], None]


def _nothing(_: pytest.MonkeyPatch) -> None:
    pass


def _no_double_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "_active", faults.Faults(disable_double_check=True))


def _no_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProgressCache, "floor", lambda self, learner_id: 0)
    monkeypatch.setattr(ProgressCache, "known", lambda self, learner_id: UNKNOWN)


def _no_min_version(monkeypatch: pytest.MonkeyPatch) -> None:
    check_access, read_progress = VerifiedPath.check_access, VerifiedPath.read_progress
    monkeypatch.setattr(
        VerifiedPath,
        "check_access",
        lambda self, learner, lesson, *_: check_access(self, learner, lesson, 0),
    )
    monkeypatch.setattr(
        VerifiedPath, "read_progress", lambda self, learner, *_: read_progress(self, learner, 0)
    )


def _trust_the_position(monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica said to have replayed the position is believed, whatever version it holds."""
    monkeypatch.setattr(
        VerifiedPath,
        "_read_replayed",
        lambda self, learner_id, needed, reason: Read(
            self._load_replica(learner_id, reason), "db", from_primary=False
        ),
    )


def _no_version_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries and floors take whatever comes last, older or not."""

    def put(self: ProgressCache, snapshot: ProgressSnapshot) -> bool:
        with self._lock:
            self._entries[snapshot.learner_id] = snapshot
        return True

    def apply(
        self: ProgressCache, learner_id: uuid.UUID, change: Callable
    ) -> ProgressSnapshot | None:
        with self._lock:
            current = self._entries.get(learner_id)
            if current is None:
                return None
            self._entries[learner_id] = change(current)
            return self._entries[learner_id]

    def raise_floor(
        self: ProgressCache, learner_id: uuid.UUID, version: int, position: int | None = None
    ) -> None:
        with self._lock:
            self._floors[learner_id] = Known(version, position)

    monkeypatch.setattr(ProgressCache, "put", put)
    monkeypatch.setattr(ProgressCache, "apply", apply)
    monkeypatch.setattr(ProgressCache, "raise_floor", raise_floor)


MUTATIONS = [
    Mutation("legacy", "the legacy path (the old app)", "legacy", "false_lock", _nothing),
    Mutation(
        "no_double_check",
        "verified, no double check of cached 'locked' answers",
        "verified",
        "false_lock",
        _no_double_check,
    ),
    Mutation(
        "no_floor",
        "verified, the worker's floor never consulted",
        "verified",
        "worker_floor",
        _no_floor,
    ),
    Mutation(
        "no_min_version",
        "verified, the client's minVersion ignored",
        "verified",
        "read_your_writes",
        _no_min_version,
    ),
    Mutation(
        "no_version_rule",
        "verified, the cache's version rule off (entries and floors take the last write)",
        "verified",
        "floor_state",
        _no_version_rule,
    ),
    Mutation(
        "trust_the_position",
        "verified, a replica said to have replayed the position believed below the version",
        "verified",
        "read_your_writes",
        _trust_the_position,
    ),
    Mutation(
        "legacy_review",
        "the legacy path's review cache (the old app's vocabulary cache)",
        "legacy",
        "stale_review",
        _nothing,
    ),
    Mutation(
        "no_review_double_check",
        "verified, review sets not confirmed on the primary",
        "verified",
        "stale_review",
        _no_double_check,
    ),
]
