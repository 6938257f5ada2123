"""Structured logs: one JSON object a line on stdout, with request id, learner and path; the
access log line and the request metrics share one measurement."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TextIO

import orjson
from flask import Flask, Response, g, has_request_context, request

from . import metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Attributes every LogRecord has; anything else was passed in `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if has_request_context():
            context = g._get_current_object()  # one context look-up, not three
            entry["request_id"] = context.get("request_id")
            entry["learner_id"] = context.get("learner_id")
            entry["progress_path"] = context.get("progress_path")
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


def init_app(app: Flask) -> None:
    access = logging.getLogger("progress.access")

    @app.before_request
    def start() -> None:
        context = g._get_current_object()
        incoming = request.headers.get("X-Request-ID", "")
        context.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        context.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        """One measurement per request, for the access log line and the request metrics."""
        context = g._get_current_object()  # one look-up each for g and request
        current = request._get_current_object()  # type: ignore[attr-defined]
        response.headers["X-Request-ID"] = context.get("request_id", "")
        seconds = time.perf_counter() - context.get("started", time.perf_counter())
        rule = current.url_rule
        route = rule.rule if rule else None
        metrics.observe_request(current.method, route, response.status_code, seconds)
        if access.isEnabledFor(logging.INFO):
            fields = {
                "method": current.method,
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
            }
            # access.info() without its caller lookup (a walk up the stack per request for a
            # file and line that would always be this one): the same record otherwise.
            access.handle(access.makeRecord(access.name, logging.INFO, __file__, 0, "request",
                                            (), None, "finish", fields))  # fmt: skip
        return response
