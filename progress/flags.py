"""UnleashClient wiring: is the verified path on for a learner?

Embedded mode (no UNLEASH_URL): the flag's definition, in Unleash's client features format,
lives in our own database and reaches UnleashClient through `DatabaseFeatureCache` with
`initialize_client(fetch_toggles=False)`; the client re-reads it every refresh interval.
Unleash mode: the same client polls a real Unleash server.

One client per worker process, created lazily after gunicorn's fork (its scheduler threads
would not survive one), each with its own instance id.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from . import metrics
from .extensions import db, register_readiness_check
from .per_process import PerProcess

FLAGS_KEY = "progress.flags"
APP_NAME = "lesson-progress"
log = logging.getLogger(__name__)
_instance_numbers = itertools.count(1)
# Process-wide, so a document generation never repeats across caches (a rebuilt client).
_generations = itertools.count(1)
# How long after the document changes decisions are not memoised: the SDK loads its engine
# from the cache right after reading it, so a decision made this long after comes from it.
SETTLE_S = 1.0
# Decisions memoised per worker, like the identities already created (worker.py).
DECISIONS_MAXSIZE = 100_000


def features_document(flag: str, percentage: int) -> dict[str, Any]:
    """One flexibleRollout flag, sticky on userId, as /api/client/features answers."""
    return {
        "version": 2,
        "features": [
            {
                "name": flag,
                "type": "release",
                "enabled": True,
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "constraints": [],
                        "parameters": {
                            "rollout": str(percentage),
                            "stickiness": "userId",
                            "groupId": flag,
                        },
                    }
                ],
            }
        ],
    }


def rollout_percentage(document: dict[str, Any], flag: str) -> int | None:
    """The flag's flexibleRollout percentage in a features document; 0 if disabled."""
    for feature in document.get("features", []):
        if feature.get("name") != flag:
            continue
        if not feature.get("enabled", False):
            return 0
        for strategy in feature.get("strategies", []):
            if strategy.get("name") == "flexibleRollout":
                return int(strategy.get("parameters", {}).get("rollout", 0))
        return 100  # enabled with no rollout strategy: everyone
    return None


class _ObservingCache(BaseCache):
    """A dict cache that exports the percentage it holds as a gauge."""

    def __init__(self, flag: str) -> None:
        self.flag = flag
        self._values: dict[str, Any] = {}
        self.percentage: int | None = None
        # Bumped whenever the features document changes: decisions memoised under an older
        # generation are not used.
        self.generation = next(_generations)
        self.changed_at = time.monotonic()

    def _observe(self, raw: str | None) -> None:
        if not raw:
            return
        try:
            self.percentage = rollout_percentage(json.loads(raw), self.flag)
        except (ValueError, TypeError):
            return
        if self.percentage is not None:
            metrics.rollout_percentage.set(self.percentage)

    def set(self, key: str, value: Any) -> None:
        changed = key == FEATURES_URL and value != self._values.get(key)
        self._values[key] = value
        if changed:
            self.changed_at = time.monotonic()
            self.generation = next(_generations)
            self._observe(value)

    def settled(self) -> bool:
        """The document has not changed for SETTLE_S: the client's engine holds it."""
        return time.monotonic() - self.changed_at >= SETTLE_S

    def mset(self, data: dict) -> None:
        for key, value in data.items():
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._values

    def destroy(self) -> None:
        self._values.clear()


class MemoryFeatureCache(_ObservingCache):
    """Unleash mode: per worker, in memory (the default FileCache is shared by every worker
    on a host)."""


class DatabaseFeatureCache(_ObservingCache):
    """Embedded mode: the features document is read from the feature_flags table."""

    bootstrapped = True

    def __init__(self, flag: str, engine: sa.Engine) -> None:
        super().__init__(flag)
        self._engine = engine

    def get(self, key: str, default: Any = None) -> Any:
        if key != FEATURES_URL:
            return super().get(key, default)
        try:
            with self._engine.connect() as conn:
                raw = conn.execute(
                    sa.text("SELECT definition FROM feature_flags WHERE name = :name"),
                    {"name": self.flag},
                ).scalar()
        except sa.exc.SQLAlchemyError:  # keep the last good definition
            log.warning("flag definition unreadable; keeping the last one", exc_info=True)
            return super().get(key, default)
        raw = raw or json.dumps(features_document(self.flag, 0))  # never set: nobody moved
        super().set(FEATURES_URL, raw)
        return raw


@dataclass
class _Client:
    """This process's flag client, the cache it reads, and the decisions memoised from it."""

    unleash: UnleashClient
    cache: _ObservingCache
    # learner -> (document generation, decision); cleared when full.
    decisions: dict[uuid.UUID, tuple[int, bool]] = field(default_factory=dict)


class FlagGate:
    """Evaluates the rollout flag for a learner in this worker process."""

    def __init__(self, app: Flask) -> None:
        self.flag: str = app.config["PROGRESS_FLAG_NAME"]
        self.unleash_url: str = app.config["UNLEASH_URL"]
        self._config = app.config
        self._app = app
        self._client: PerProcess[_Client] = PerProcess(self._start, close=_destroy)
        self._last_failure = 0.0
        self._last_warning = 0.0
        self._decisions_max = DECISIONS_MAXSIZE

    @property
    def backend(self) -> str:
        return "unleash" if self.unleash_url else "embedded"

    def _start(self) -> _Client:
        if time.monotonic() - self._last_failure < 5:
            raise RuntimeError("flag client failed to start moments ago; retrying soon")
        try:
            return self._build()
        except Exception:
            self._last_failure = time.monotonic()
            raise

    def _build(self) -> _Client:
        instance_id = f"{socket.gethostname()}-{os.getpid()}-{next(_instance_numbers)}"
        if self.unleash_url:
            cache: _ObservingCache = MemoryFeatureCache(self.flag)
            client = UnleashClient(
                url=self.unleash_url,
                app_name=APP_NAME,
                instance_id=instance_id,
                refresh_interval=self._config["PROGRESS_FLAG_REFRESH_S"],
                custom_headers={"Authorization": self._config["UNLEASH_API_TOKEN"]},
                cache=cache,
                request_timeout=5,
                request_retries=1,
                multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            )
            client.initialize_client()
        else:
            with self._app.app_context():
                engine = db.engine
            cache = DatabaseFeatureCache(self.flag, engine)
            client = UnleashClient(
                url="http://embedded.invalid",  # required by the SDK, never contacted
                app_name=APP_NAME,
                instance_id=instance_id,
                refresh_interval=self._config["PROGRESS_FLAG_REFRESH_S"],
                cache=cache,
                disable_metrics=True,
                disable_registration=True,
                multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            )
            client.initialize_client(fetch_toggles=False)
        return _Client(client, cache)

    def client(self) -> UnleashClient:
        """This worker's client, started on first use."""
        return self._client.get().unleash

    def verified_for(self, learner_id: uuid.UUID) -> bool:
        """The flag's decision for the learner, memoised per features document: the same
        document and the same learner always give the same answer (stickiness on userId)."""
        current = self._client.get()
        cache, decisions = current.cache, current.decisions
        generation = cache.generation
        known = decisions.get(learner_id)
        if known is not None and known[0] == generation:
            return known[1]
        enabled = self._evaluate(current.unleash, learner_id)
        if cache.generation == generation and cache.settled():
            if len(decisions) >= self._decisions_max:
                decisions.clear()
            decisions[learner_id] = (generation, enabled)
        return enabled

    @property
    def decisions_held(self) -> int:
        """How many decisions this worker has memoised (at most DECISIONS_MAXSIZE)."""
        current = self._client.peek()
        return len(current.decisions) if current is not None else 0

    def _evaluate(self, client: UnleashClient, learner_id: uuid.UUID) -> bool:
        missing: list[str] = []

        def flag_missing(name: str, context: dict) -> bool:
            missing.append(name)
            return False

        enabled = client.is_enabled(
            self.flag, {"userId": str(learner_id)}, fallback_function=flag_missing
        )
        if missing:
            raise LookupError(f"flag {self.flag!r} is not defined in {self.backend}")
        return enabled

    def percentage(self) -> int | None:
        """The percentage this worker's client holds now."""
        current = self._client.peek()
        return current.cache.percentage if current is not None else None

    def reload_now(self) -> None:
        """Make this worker see a change at once instead of at its next refresh. The SDK has
        no public "refresh now", so the client is rebuilt: a new client reads the flag as it
        starts (a fetch from Unleash, or the definition from our database). Requests keep
        the current client until the new one holds the flag."""
        fresh = self._start()
        if fresh.cache.percentage is None:
            _destroy(fresh)
            raise RuntimeError("the rebuilt flag client could not read the flag; kept the last")
        self._client.replace(fresh)

    def readiness(self) -> str:
        try:
            self.client()
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        if self.percentage() is None:
            return "unavailable: flag not loaded"
        return f"ok ({self.backend}, {self.percentage()}%)"

    def warn_fallback(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:  # one line per 10 s, not one per request
            self._last_warning = now
            log.warning(
                "flag cannot be evaluated; serving the legacy path",
                extra={"flag": self.flag, "backend": self.backend, "reason": repr(exc)},
            )

    def close(self) -> None:
        self._client.reset()


def _destroy(client: _Client) -> None:
    client.unleash.destroy()


def init_app(app: Flask) -> None:
    gate = FlagGate(app)
    app.extensions[FLAGS_KEY] = gate
    register_readiness_check(app, "flags", gate.readiness)


def flag_gate() -> FlagGate:
    return current_app.extensions[FLAGS_KEY]


def verified_path_on(learner_id: uuid.UUID) -> bool:
    """Whether the verified path is on for the learner: what the flag says, or False (the
    legacy path) when the flag can't be evaluated."""
    gate = flag_gate()
    try:
        return gate.verified_for(learner_id)
    except Exception as exc:
        gate.warn_fallback(exc)
        return False
