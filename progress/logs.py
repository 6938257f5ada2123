"""Structured logs: one JSON object a line on stdout, with request id, learner and path; the
access log line and the request metrics share one measurement.

The request's id, learner and path live in a context variable, not in Flask's request
context, so that work handed to a thread pool in a copy of the context
(`contextvars.copy_context().run`, as the worker's `submit` does) logs them too."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import orjson
from flask import Flask, Response, request

from . import metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Attributes every LogRecord has; anything else was passed in `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@dataclass(slots=True)
class RequestTags:
    """One request's tags, on each of its log lines and in its response headers. Mutable:
    a copied context shares the object, so the learner and path found later still show."""

    request_id: str
    started: float
    learner_id: str | None = None
    progress_path: str | None = None


_tags: ContextVar[RequestTags | None] = ContextVar("progress_request_tags", default=None)
_access = logging.getLogger("progress.access")


def bind_learner(learner_id: str) -> None:
    """Tag the current request's log lines with the learner it acts for."""
    tags = _tags.get()
    if tags is not None:
        tags.learner_id = learner_id


def bind_path(path: str) -> None:
    """Tag the current request with the progress path serving it (and X-Progress-Path)."""
    tags = _tags.get()
    if tags is not None:
        tags.progress_path = path


def bound_path() -> str | None:
    """The progress path that served the current request, if one did."""
    tags = _tags.get()
    return None if tags is None else tags.progress_path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        tags = _tags.get()
        if tags is not None:
            entry["request_id"] = tags.request_id
            entry["learner_id"] = tags.learner_id
            entry["progress_path"] = tags.progress_path
        fields = vars(record)
        for key in fields.keys() - _STANDARD:
            if not key.startswith("_"):
                entry[key] = fields[key]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return dumps(entry)


def dumps(entry: dict[str, object]) -> str:
    """One JSON line: orjson (several times faster), the standard library for what orjson
    refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(entry, default=str)


class _StandardStream(logging.StreamHandler):
    """sys.stdout or sys.stderr as they are at each record (test runners swap them)."""

    def __init__(self, name: str) -> None:
        self._which = name
        super().__init__()

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return getattr(sys, self._which)

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(level: str, stream: str = "stdout") -> None:
    """One JSON line a record on stdout (the service's log), or on stderr."""
    handler = _StandardStream(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    # Replace only our own handler, so calling the factory twice doesn't double lines.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h.formatter, JsonFormatter)]
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel("WARNING")  # our access log replaces its lines


def log_to_stderr() -> None:
    """For command-line verbs: stdout carries their answer (`| jq`), so every library's log
    line (the flag client's scheduler, say) goes to stderr."""
    configure_logging(logging.getLevelName(logging.getLogger().level), "stderr")


def begin_request(incoming_id: str) -> None:
    """Start one request's tags and clock; `incoming_id` is the client's X-Request-ID, used
    when it is a sensible id (a new one otherwise)."""
    if _REQUEST_ID.match(incoming_id):
        request_id = incoming_id
    else:  # 128 random bits as uuid4().hex, without its system call (reseeded after fork)
        request_id = f"{random.getrandbits(128):032x}"
    _tags.set(RequestTags(request_id, time.perf_counter()))


def end_request(method: str, route: str | None, status: int) -> str:
    """One measurement per answered request, for the access log line and the request
    metrics; returns the id for the X-Request-ID header."""
    tags = _tags.get()
    seconds = 0.0 if tags is None else time.perf_counter() - tags.started
    metrics.observe_request(method, route, status, seconds)
    if _access.isEnabledFor(logging.INFO):
        fields = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        # access.info() without its caller lookup (a walk up the stack per request for a
        # file and line that would always be this one): the same record otherwise.
        _access.handle(_access.makeRecord(_access.name, logging.INFO, __file__, 0, "request",
                                          (), None, "finish", fields))  # fmt: skip
    return "" if tags is None else tags.request_id


def forget_request() -> None:
    """The thread serves other requests next, and may log between them."""
    _tags.set(None)


def init_app(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        begin_request(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def finish(response: Response) -> Response:
        current = request._get_current_object()  # type: ignore[attr-defined]  # one look-up
        rule = current.url_rule
        route = rule.rule if rule else None
        response.headers["X-Request-ID"] = end_request(current.method, route, response.status_code)
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        forget_request()
