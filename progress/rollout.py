"""Rollout control for product: read and move the flag's percentage, and keep every change.

Embedded mode writes the flag's definition in our database; Unleash mode changes the
flexibleRollout strategy through Unleash's Admin API. Either way the change is recorded in
rollout_changes with who, when and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import requests
import sqlalchemy as sa
from flask import current_app

from .exceptions import ProgressError
from .extensions import db
from .flags import FlagGate, features_document, flag_gate
from .models import FeatureFlag, RolloutChange, RolloutPlan, utcnow


class RolloutError(ProgressError):
    """The flag backend refused or could not be reached; nothing was changed."""

    status, code = 502, "flag_backend_error"


class RolloutBusy(ProgressError):
    """Other rollout changes kept this one waiting too long; nothing was changed."""

    status, code = 409, "rollout_busy"


CHANGE_LOCK_WAIT_S = 30


@dataclass(frozen=True)
class RolloutState:
    flag: str
    percentage: int
    backend: str
    updated_at: datetime | None
    updated_by: str | None


class UnleashAdmin:
    """The few Admin API calls a rollout needs (Unleash v8)."""

    def __init__(
        self, base_url: str, token: str, project: str, environment: str, flag: str
    ) -> None:
        root = base_url.rstrip("/").removesuffix("/api")
        self._strategies = (
            f"{root}/api/admin/projects/{quote(project, safe='')}/features/"
            f"{quote(flag, safe='')}/environments/{quote(environment, safe='')}/strategies"
        )
        self._headers = {"Authorization": token, "Content-Type": "application/json"}

    def _rollout_strategy(self) -> dict:
        try:
            response = requests.get(self._strategies, headers=self._headers, timeout=5)
        except requests.RequestException as exc:
            raise RolloutError(f"Unleash unreachable: {exc}") from None
        if response.status_code != 200:
            raise RolloutError(f"Unleash answered {response.status_code}: {response.text[:200]}")
        for strategy in response.json():
            if strategy.get("name") == "flexibleRollout":
                return strategy
        raise RolloutError("the flag has no flexibleRollout strategy in this environment")

    def percentage(self) -> int:
        return int(self._rollout_strategy()["parameters"].get("rollout", 0))

    def set_percentage(self, percentage: int) -> None:
        strategy_id = self._rollout_strategy()["id"]
        patch = [{"op": "replace", "path": "/parameters/rollout", "value": str(percentage)}]
        try:
            response = requests.patch(
                f"{self._strategies}/{quote(strategy_id, safe='')}",
                headers=self._headers,
                data=json.dumps(patch),
                timeout=5,
            )
        except requests.RequestException as exc:
            raise RolloutError(f"Unleash unreachable: {exc}") from None
        if response.status_code != 200:
            raise RolloutError(f"Unleash answered {response.status_code}: {response.text[:200]}")


def _unleash_admin() -> UnleashAdmin:
    config = current_app.config
    if not config["UNLEASH_ADMIN_TOKEN"]:
        raise RolloutError("UNLEASH_ADMIN_TOKEN is not set: the rollout can't be changed")
    return UnleashAdmin(
        config["UNLEASH_URL"],
        config["UNLEASH_ADMIN_TOKEN"],
        config["UNLEASH_PROJECT"],
        config["UNLEASH_ENVIRONMENT"],
        config["PROGRESS_FLAG_NAME"],
    )


def _last_change(flag: str) -> RolloutChange | None:
    return db.session.scalar(
        sa.select(RolloutChange)
        .where(RolloutChange.flag == flag)
        .order_by(RolloutChange.id.desc())
        .limit(1)
    )


_sqlite_changes = threading.Lock()  # the embedded SQLite default is one process


def _change_lock_key(flag: str) -> int:
    digest = hashlib.blake2b(f"progress.rollout-change:{flag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def _one_change_at_a_time(flag: str) -> Iterator[None]:
    """Rollout changes one after another, across workers and instances, so each history
    row's previous percentage is the one the change before it set. PostgreSQL: an advisory
    lock held until this transaction ends (waiting at most CHANGE_LOCK_WAIT_S); SQLite: a
    lock in this process."""
    try:
        if db.engine.dialect.name == "postgresql":
            # Polled, not waited on: each try is a short statement under the database
            # deadline, and the whole wait has a bound of its own.
            key, deadline = _change_lock_key(flag), time.monotonic() + CHANGE_LOCK_WAIT_S
            while not db.session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))):
                if time.monotonic() >= deadline:
                    raise RolloutBusy(f"another rollout change held on for {CHANGE_LOCK_WAIT_S} s")
                time.sleep(0.05)
            yield
            return
        with _sqlite_changes:
            yield
    except BaseException:
        db.session.rollback()  # and with it the advisory lock
        raise


def rollout_state() -> RolloutState:
    gate = flag_gate()
    if gate.backend == "unleash":
        if current_app.config["UNLEASH_ADMIN_TOKEN"]:
            percentage = _unleash_admin().percentage()
        else:  # read-only: what this worker's client last fetched
            percentage = gate.percentage() or 0
        last = _last_change(gate.flag)
        return RolloutState(
            gate.flag,
            percentage,
            gate.backend,
            last.changed_at if last else None,
            last.changed_by if last else None,
        )
    row = db.session.get(FeatureFlag, gate.flag, populate_existing=True)  # not a stale copy
    if row is None:
        return RolloutState(gate.flag, 0, gate.backend, None, None)
    return RolloutState(gate.flag, row.percentage, gate.backend, row.updated_at, row.updated_by)


def set_rollout(percentage: int, reason: str, actor: str) -> RolloutState:
    """Move the rollout; the change and its history row are kept together."""
    if not 0 <= percentage <= 100:
        raise ValueError("percentage must be within 0..100")
    gate = flag_gate()
    with _one_change_at_a_time(gate.flag):
        _change(gate, percentage, reason, actor)
    try:
        gate.reload_now()  # this worker at once; the others within their refresh interval
    except Exception:  # the change is made; the refresh will pick it up
        current_app.logger.warning("could not reload the flag at once", exc_info=True)
    return rollout_state()


def _change(gate: FlagGate, percentage: int, reason: str, actor: str) -> None:
    """Move the flag and keep the change with what it replaced, then commit."""
    previous = rollout_state().percentage
    now = utcnow()
    if gate.backend == "unleash":
        _unleash_admin().set_percentage(percentage)
    else:
        document = json.dumps(features_document(gate.flag, percentage))
        row = db.session.get(FeatureFlag, gate.flag, with_for_update=True)
        if row is None:
            db.session.add(
                FeatureFlag(
                    name=gate.flag,
                    definition=document,
                    percentage=percentage,
                    updated_at=now,
                    updated_by=actor,
                )
            )
        else:
            row.definition, row.percentage = document, percentage
            row.updated_at, row.updated_by = now, actor
    plan = db.session.get(RolloutPlan, gate.flag)
    if plan is not None:  # a person's move to another stage: the plan follows, its clock starts
        plan.follow_percentage(percentage, now)
    db.session.add(
        RolloutChange(
            flag=gate.flag,
            backend=gate.backend,
            previous_percentage=previous,
            percentage=percentage,
            reason=reason,
            changed_by=actor,
            changed_at=now,
        )
    )
    db.session.commit()


def rollout_history(limit: int = 200) -> list[RolloutChange]:
    rows = list(
        db.session.scalars(
            sa.select(RolloutChange)
            .where(RolloutChange.flag == flag_gate().flag)
            .order_by(RolloutChange.id.desc())
            .limit(limit)
        )
    )
    return rows
