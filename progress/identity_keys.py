"""The identity provider's public keys (a JWKS), fetched with PyJWT's own client.

PyJWKClient caches the key set for a TTL (`lifespan`), refetches it once for a key id the set
lacks (at most once per `cooldown_duration`), and bounds each fetch (`timeout`). What it
lacks is added here: a key server that fails keeps the last key set in use (PyJWKClient
would try again on every token once its cache expired, each try waiting out the timeout),
is tried again at most once per refetch period, and shows on /readyz as degraded.
Its per-kid LRU (`cache_keys`) is left off: it never expires, so a key the provider
withdrew would stay trusted.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWKSet
from jwt.exceptions import PyJWKError, PyJWKSetError

from .extensions import register_readiness_check

KEYS_KEY = "progress.identity_keys"


class UnknownKey(LookupError):
    """No key the provider publishes (or last published, while it is down) has this id."""


class _RecordingClient(PyJWKClient):
    """PyJWKClient that remembers the last key set it fetched, for when the server fails."""

    last_good: PyJWKSet | None = None

    def fetch_data(self) -> Any:
        data = super().fetch_data()
        self.last_good = PyJWKSet.from_dict(data)
        return data


class ProviderKeys:
    """The signing keys of one JWKS URL, for one process."""

    def __init__(self, url: str, *, ttl_s: float, refetch_s: float, timeout_s: float) -> None:
        self.url = url
        self.refetch_s = refetch_s
        self._client = _RecordingClient(
            url, lifespan=ttl_s, timeout=timeout_s, cooldown_duration=refetch_s
        )
        # One look-up at a time: while the server hangs, one request waits out the timeout
        # and the others find it marked down instead of each waiting in turn.
        self._lock = threading.Lock()
        self._down_since: float | None = None  # wall clock, for /readyz
        self._last_try = 0.0  # monotonic
        self._failure = ""

    def signing_key(self, kid: str) -> PyJWK:
        """The published key with this id; UnknownKey if there is none."""
        with self._lock:
            if self._down_since is not None and time.monotonic() - self._last_try < self.refetch_s:
                return self._cached(kid)  # down: don't wait on it again yet
            self._last_try = time.monotonic()
            try:
                key = self._client.get_signing_key(kid)
            except PyJWKClientConnectionError as exc:
                self._mark_down(exc)
                return self._cached(kid)
            except (PyJWKSetError, PyJWKError) as exc:  # a malformed key set: keep the last one
                self._mark_down(exc)
                return self._cached(kid)
            except PyJWKClientError:
                self._down_since = None
                raise UnknownKey(kid) from None
            self._down_since = None
            return key

    def _mark_down(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.time()
        self._failure = type(exc).__name__

    def _cached(self, kid: str) -> PyJWK:
        known = self._client.last_good
        for key in known.keys if known is not None else ():
            if key.key_id == kid and key.public_key_use in ("sig", None):
                return key
        raise UnknownKey(kid)

    def readiness(self) -> str:
        """ok once keys are in hand; degraded while the last ones serve a failing server."""
        if self._client.last_good is None and self._down_since is None:
            try:  # none fetched yet: fetch now, so a wrong URL shows before the first token
                with self._lock:
                    self._last_try = time.monotonic()
                    self._client.get_jwk_set()
            except (PyJWKClientError, PyJWKError) as exc:
                self._mark_down(exc)
        keys = self._client.last_good
        count = len(keys.keys) if keys is not None else 0
        if self._down_since is None:
            return f"ok ({count} keys)"
        since = datetime.fromtimestamp(self._down_since, UTC).isoformat(timespec="seconds")
        if count == 0:
            return f"unavailable: the key set can't be fetched ({self._failure} since {since})"
        return (
            f"degraded (the key set can't be fetched since {since}, {self._failure}; "
            f"the {count} keys fetched before still verify tokens)"
        )


def provider_keys() -> ProviderKeys:
    """This app's key set (only with PROGRESS_JWT_JWKS_URL)."""
    return current_app.extensions[KEYS_KEY]


def init_app(app: Flask) -> None:
    url = app.config["PROGRESS_JWT_JWKS_URL"]
    if not url:
        return
    keys = ProviderKeys(
        url,
        ttl_s=app.config["PROGRESS_JWT_JWKS_TTL_S"],
        refetch_s=app.config["PROGRESS_JWT_JWKS_REFETCH_S"],
        timeout_s=app.config["PROGRESS_JWT_JWKS_TIMEOUT_MS"] / 1000,
    )
    app.extensions[KEYS_KEY] = keys
    register_readiness_check(app, "identity_keys", keys.readiness)
