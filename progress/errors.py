"""One JSON error shape for every error: {"error": {"code", "message"[, "field"]}}.

Every error a client may see is a ProgressError (progress.exceptions), raised where it
happens with its status and code; one handler here answers all of them."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .exceptions import ProgressError
from .extensions import db

log = logging.getLogger(__name__)


class ApiError(ProgressError):
    """An error whose status and code are named where it is raised (auth, request checks)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field=field, status=status, code=code)


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = status
    return response


def body_too_large(limit: int) -> tuple[str, str, str]:
    """413's code, message and field: the app's, and the front door's (nginx's config)."""
    return "payload_too_large", f"The request body is over {limit} bytes.", "body"


def http_code(exc: HTTPException) -> str:
    """The error code for an HTTP status answered without a code of our own: its name,
    snake-cased (`Request Header Fields Too Large`: `request_header_fields_too_large`)."""
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def answer_error(exc: Exception) -> Response:
    """The answer to anything a request raised: the one handler the app registers, and the
    access check's fast path calls it too (progress/api/fast_access.py)."""
    if isinstance(exc, ProgressError):
        if exc.status >= 500:  # a backend failed us, not the client: e.g. "flag backend error"
            log.error(exc.code.replace("_", " "), extra={"error": exc.message})
        response = error_response(exc.status, exc.code, exc.message, exc.field)
        response.headers.update(exc.headers())
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="progress"'
        return response
    if isinstance(exc, RequestEntityTooLarge):
        response = error_response(
            413, *body_too_large(current_app.config["PROGRESS_MAX_BODY_BYTES"])
        )
        response.headers["Connection"] = "close"  # don't read the rest of it to keep alive
        return response
    if isinstance(exc, HTTPException):
        if exc.response is not None and exc.response.is_json:  # spectree's own 4xx
            return exc.response
        response = error_response(exc.code or 500, http_code(exc), exc.description or "")
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response
    db.session.rollback()
    if isinstance(exc, OperationalError):
        log.error("database unavailable", extra={"error": str(exc.orig)[:500]})
        return error_response(503, "database_unavailable", "The database is unavailable; retry.")
    if isinstance(exc, SQLAlchemyError):
        log.exception("database error")
        return error_response(500, "database_error", "A database error occurred.")
    log.exception("unhandled error")
    return error_response(500, "internal_error", "An unexpected error occurred.")


def register_errorhandlers(app: Flask) -> None:
    # Flask looks an HTTPException's handler up by its class too, so this one sees them all.
    app.register_error_handler(Exception, answer_error)
