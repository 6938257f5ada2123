"""Abuse limits per learner, with Flask-Limiter: completions, lock screen reports and admin
writes are counted per token subject (never per address: learners share addresses behind
NATs and proxies), in `PROGRESS_RATE_LIMIT_STORAGE_URI`. A request over its limit is
answered 429 `rate_limited` with `Retry-After` and counted in `progress_rate_limited_total`.

A request without a valid token is not counted: its route answers it 401 as ever. The
storage failing never refuses a learner: the limits fail open, the storage is set aside for
PROGRESS_RATE_LIMIT_RECHECK_S (nothing waits on it meanwhile), one warning is logged per
interval, and /readyz says "degraded". The access check is not limited (its fast path in
progress/api/fast_access.py relies on that, and checks it at start).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

from flask import Flask, request
from flask_limiter import Limiter, RateLimitExceeded
from limits.errors import StorageError

from . import metrics
from .auth import identify
from .exceptions import ProgressError, RateLimited
from .extensions import register_readiness_check
from .set_aside import SetAside
from .worker import worker_state

log = logging.getLogger(__name__)
LIMITER_KEY = "progress.rate_limits"
# Each learner route's limit, by endpoint; every admin write shares the admin limit.
LEARNER_LIMITS = {
    "learner_api.complete_lesson": "PROGRESS_RATE_LIMIT_COMPLETIONS",
    "learner_api.report_lock_screen": "PROGRESS_RATE_LIMIT_REPORTS",
}
ADMIN_BLUEPRINT = "admin_api"
ADMIN_LIMIT = "PROGRESS_RATE_LIMIT_ADMIN"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# A hung Redis is waited for this long at most, then set aside (seconds).
STORAGE_TIMEOUT_S = 0.5


def learner_subject() -> str | None:
    """The token's subject, or None without a valid token (cached per token and process)."""
    try:
        return str(identify(request.headers.get("Authorization", ""), worker_state()).user_id)
    except ProgressError:
        return None


def _no_learner() -> bool:
    return learner_subject() is None


def _learner_key() -> str:
    return learner_subject() or ""  # never empty here: exempt without a learner


class LearnerLimiter(Limiter):
    """Flask-Limiter, failing open around its storage and answering in the service's own
    error shape. Its one check (the `before_request` hook and the limited views' wrappers
    both call it) is where both happen."""

    def __init__(self, outage: SetAside, **kwargs: Any) -> None:
        super().__init__(_learner_key, **kwargs)
        self.outage = outage

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and not is_limited(request.endpoint or "", request.method):
            return  # no limit here: not even the library's look-up (every request pays it)
        if not self.outage.usable():
            return  # set aside: fail open, without waiting on it
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except RateLimitExceeded:
            raise self._refusal() from None
        except StorageError as exc:
            self.outage.failed(exc.storage_error)
            return
        if self.context.view_rate_limits:  # the storage answered for this request
            self.outage.answered()

    def _refusal(self) -> RateLimited:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.rate_limited.labels(route).inc()
        limit = self.current_limit
        retry_after_s = 1  # if the storage went away between the count and this look
        if limit is not None:
            with contextlib.suppress(StorageError):
                retry_after_s = max(1, math.ceil(limit.window[0] - time.time()))
        what = f"{limit.limit}" if limit is not None else "the limit"
        return RateLimited(
            f"Too many requests: at most {what} for each learner here; retry in {retry_after_s} s.",
            retry_after_s=retry_after_s,
        )


def limited_routes(app: Flask) -> list[str]:
    """The route templates a limit applies to (the metric's `route` values)."""
    return sorted(
        {
            rule.rule
            for rule in app.url_map.iter_rules()
            if rule.endpoint in LEARNER_LIMITS
            or (
                rule.endpoint.startswith(f"{ADMIN_BLUEPRINT}.")
                and set(rule.methods or ()) & set(WRITES)
            )
        }
    )


def is_limited(endpoint: str, method: str) -> bool:
    """Whether any limit applies to `method` on `endpoint` (the access check's fast path
    asks too)."""
    return endpoint in LEARNER_LIMITS or (
        method in WRITES and endpoint.startswith(f"{ADMIN_BLUEPRINT}.")
    )


def init_app(app: Flask) -> None:
    """After the routes it limits are registered."""
    config = app.config
    uri = config["PROGRESS_RATE_LIMIT_STORAGE_URI"]
    options: dict[str, Any] = {"wrap_exceptions": True}
    if uri.startswith("redis"):
        options |= {
            "socket_timeout": STORAGE_TIMEOUT_S,
            "socket_connect_timeout": STORAGE_TIMEOUT_S,
        }
    outage = SetAside(
        config["PROGRESS_RATE_LIMIT_RECHECK_S"],
        log,
        unavailable="rate limit storage unavailable; requests pass unlimited",
        recovered="rate limit storage answers again",
        meanwhile="requests pass unlimited",
    )
    limiter = LearnerLimiter(
        outage,
        storage_uri=uri,
        storage_options=options,
        key_prefix=config["PROGRESS_RATE_LIMIT_KEY_PREFIX"],
        strategy="fixed-window",  # one counter per learner and route: one INCR a request
        headers_enabled=False,  # only a refusal says when to retry
    )
    limiter.init_app(app)
    # A refusal is counted in the metric; a log line for each would let an abuser flood it.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    for endpoint, setting in LEARNER_LIMITS.items():
        limit = limiter.limit(config[setting], exempt_when=_no_learner)
        app.view_functions[endpoint] = limit(app.view_functions[endpoint])
    limiter.limit(config[ADMIN_LIMIT], methods=list(WRITES), exempt_when=_no_learner)(
        app.blueprints[ADMIN_BLUEPRINT]
    )
    for route in limited_routes(app):
        metrics.rate_limited.labels(route)
    register_readiness_check(app, "rate_limits", outage.describe)
    app.extensions[LIMITER_KEY] = limiter
