"""Headers that tell browsers how to treat the service's answers: never sniff a content
type, send no referrer off the origin, and on pages a Content-Security-Policy that runs
scripts from the service only (none inline) and forbids framing."""

from __future__ import annotations

from flask import Flask, Response, request

# Styles may be inline: the API docs (Swagger UI, Redoc) set styles from their scripts.
PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


# On every answer (the API's JSON too), unless the answer set its own.
EVERY_ANSWER = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


# Browsers on PROGRESS_CORS_ORIGINS may call the routes under this prefix.
CROSS_ORIGIN_PREFIX = "/api/v1/"


def vary_on_origin(response: Response) -> Response:
    """With origins configured, a cross-origin route's answer depends on the request's Origin
    (a grant or none), so each says so, those to requests without one too: a shared cache
    must not hand one origin's answer to another."""
    if request.path.startswith(CROSS_ORIGIN_PREFIX):
        response.vary.add("Origin")
    return response


def add_browser_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in EVERY_ANSWER:
        headers.setdefault(name, value)
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_browser_headers)
