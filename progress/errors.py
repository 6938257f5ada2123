"""One JSON error shape for every error: {"error": {"code", "message"[, "field"]}}."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .extensions import db
from .guard import GuardBusy, StageNotReady
from .rollout import RolloutBusy, RolloutError
from .store import LessonLocked

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer the client should see, with the contract's error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.field)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="progress"'
        return response

    @app.errorhandler(LessonLocked)
    def lesson_locked(exc: LessonLocked) -> Response:
        return error_response(409, "lesson_locked", "Complete the previous lesson first.")

    @app.errorhandler(RolloutError)
    def flag_backend_error(exc: RolloutError) -> Response:
        log.error("flag backend error", extra={"error": str(exc)})
        return error_response(502, "flag_backend_error", str(exc))

    @app.errorhandler(RolloutBusy)
    def rollout_busy(exc: RolloutBusy) -> Response:
        return error_response(409, "rollout_busy", str(exc))

    @app.errorhandler(GuardBusy)
    def guard_busy(exc: GuardBusy) -> Response:
        return error_response(409, "guard_busy", str(exc))

    @app.errorhandler(StageNotReady)
    def stage_not_ready(exc: StageNotReady) -> Response:
        return error_response(409, "stage_not_ready", str(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(exc: RequestEntityTooLarge) -> Response:
        limit = current_app.config["PROGRESS_MAX_BODY_BYTES"]
        response = error_response(
            413, "payload_too_large", f"The request body is over {limit} bytes.", "body"
        )
        response.headers["Connection"] = "close"  # don't read the rest of it to keep alive
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.response is not None and exc.response.is_json:  # spectree's own 4xx
            return exc.response
        response = error_response(exc.code or 500, _http_code(exc), exc.description or "")
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError) -> Response:
        db.session.rollback()
        log.error("database unavailable", extra={"error": str(exc.orig)[:500]})
        return error_response(503, "database_unavailable", "The database is unavailable; retry.")

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError) -> Response:
        db.session.rollback()
        log.exception("database error")
        return error_response(500, "database_error", "A database error occurred.")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        db.session.rollback()
        log.exception("unhandled error")
        return error_response(500, "internal_error", "An unexpected error occurred.")
