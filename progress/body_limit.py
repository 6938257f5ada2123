"""Bodies over PROGRESS_MAX_BODY_BYTES are refused with 413 before any of them is read:
from the announced length at once, and (through MAX_CONTENT_LENGTH) while a body without
one is streamed in."""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge


def refuse_large_bodies() -> None:
    limit = current_app.config["PROGRESS_MAX_BODY_BYTES"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = app.config["PROGRESS_MAX_BODY_BYTES"]
    app.before_request(refuse_large_bodies)  # first: before auth, flags or the database
