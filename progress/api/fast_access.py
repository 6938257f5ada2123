"""The access check without Flask's per-request machinery: every navigation pays for it.

A WSGI layer in front of the app answers the plain form of `GET .../lessons/<lessonId>/access`
(an ASCII path, at most a `minVersion` and a `minPosition` in the query, in digits, no body,
no `Origin`) itself, with the
same functions the Flask route uses: the token check, the lesson look-up, the path's answer,
the error answers, the request's tags, metrics and access log line, and the same headers.
Anything else, and any request the checks refuse (401, 403, 404, a bad query), goes to Flask,
which answers it as it always has; nothing has been done for it by then but reading the
token. Past those checks an error is answered here by the app's own error handler, so a
database that fails is waited for once.

The hooks it stands in for are listed in `MIRRORED_HOOKS`: the app refuses to start with a
hook on the route that is not, so a new hook can't be skipped on the hot route unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, got_request_exception, request_finished, request_started
from pydantic import ValidationError
from werkzeug.sansio.utils import host_is_trusted

from .. import logs, rate_limits
from ..auth import Identity, ensure_learner, identify
from ..browser_policy import EVERY_ANSWER
from ..curriculum import LessonRef
from ..errors import answer_error
from ..exceptions import ProgressError
from ..extensions import start_background_work
from ..worker import WorkerState, worker_state
from .learner import answer_access, find_lesson
from .schemas import AccessOut, AccessQuery

ENDPOINT = "learner_api.check_access"
# Each Flask hook the fast path does the work of, by module and name (see the docstring).
MIRRORED_HOOKS = frozenset(
    {
        "progress.body_limit.refuse_large_bodies",  # it takes no body
        "progress.extensions.init_background_work.<locals>.start_background",
        "progress.logs.init_app.<locals>.start",
        "progress.logs.init_app.<locals>.finish",
        "progress.logs.init_app.<locals>.forget",
        "progress.browser_policy.add_browser_headers",
        "progress.api.learner.tag_path",
        "flask_cors.extension.make_after_request_function.<locals>.cors_after_request",  # Origin
        # Flask-Limiter's hooks: no limit applies to the access check (checked in init_app).
        "progress.rate_limits.LearnerLimiter._check_request_limit",
        "flask_limiter._extension.Limiter.__inject_headers",
        "flask_limiter._extension.Limiter.__release_context",
        "progress.browser_policy.vary_on_origin",
    }
)
# A segment the fast path takes as it is: werkzeug would hand it to the view unchanged.
_SEGMENT = "([A-Za-z0-9._~-]+)"
# The query parameters it parses itself: in digits, each at most once.
_FAST_PARAMETERS = frozenset({"minVersion", "minPosition"})
_SERIALIZE = AccessOut.__pydantic_serializer__.to_json

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class AccessFastPath:
    """WSGI middleware: `app.wsgi_app = AccessFastPath(app, app.wsgi_app)`."""

    def __init__(self, app: Flask, flask_wsgi: WsgiApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi
        rule = next(rule for rule in app.url_map.iter_rules() if rule.endpoint == ENDPOINT)
        self.route = rule.rule  # the metrics' and access log's route label, as Flask's
        parts = re.split(r"<[^>]+>", rule.rule)
        self.pattern = re.compile(_SEGMENT.join(re.escape(part) for part in parts))
        self.trusted_hosts = app.config["TRUSTED_HOSTS"]
        # vary_on_origin: with origins configured, an answer without a grant still varies.
        self.vary = [("Vary", "Origin")] if app.config["PROGRESS_CORS_ORIGINS"] else []

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        plain = self.plain_request(environ)
        if plain is not None:
            with self.app.app_context():
                answer = self.answer(environ, *plain)
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
        return self.flask_wsgi(environ, start_response)

    def plain_request(
        self, environ: dict[str, Any]
    ) -> tuple[str, str, int | None, int | None] | None:
        """(moduleId, lessonId, minVersion, minPosition; None if not sent) of a request this
        layer answers, else None."""
        if (
            environ["REQUEST_METHOD"] != "GET"
            or "HTTP_ORIGIN" in environ  # CORS is flask-cors's
            or environ.get("CONTENT_LENGTH", "") not in ("", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        if self.trusted_hosts and not host_is_trusted(
            environ.get("HTTP_HOST", ""), self.trusted_hosts
        ):
            return None  # Flask refuses it
        match = self.pattern.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        query = environ.get("QUERY_STRING", "")
        if not query:
            return match[1], match[2], None, None
        sent: dict[str, str] = {}
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name not in _FAST_PARAMETERS or name in sent:
                return None  # other parameters or encodings: Flask's parsing, as ever
            if not (value.isascii() and value.isdigit()):
                return None
            sent[name] = value
        try:
            checked = AccessQuery.model_validate(sent)
        except ValidationError:
            return None  # out of range: Flask answers the contract's 400
        version = checked.min_version if "minVersion" in sent else None
        return match[1], match[2], version, checked.min_position

    def answer(
        self,
        environ: dict[str, Any],
        module_id: str,
        lesson_id: str,
        min_version: int | None,
        min_position: int | None,
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """The answer (status line, headers, body), or None when Flask should answer."""
        logs.begin_request(environ.get("HTTP_X_REQUEST_ID", ""))
        try:
            try:
                start_background_work(self.app, ENDPOINT)
                state = worker_state()
                checked = self.checked(environ, module_id, lesson_id, state)
                if checked is None:
                    return None  # a refusal: Flask's, with nothing done yet
                identity, lesson = checked
                ensure_learner(identity, state)
                body = _SERIALIZE(answer_access(identity, lesson, min_version, min_position))
                status, status_line = 200, "200 OK"
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            except Exception as exc:
                response = answer_error(exc)
                status, status_line = response.status_code, response.status
                headers, body = response.headers.to_wsgi_list(), response.get_data()
            return status_line, self.finish(headers, status), body
        finally:
            logs.forget_request()

    @staticmethod
    def checked(
        environ: dict[str, Any], module_id: str, lesson_id: str, state: WorkerState
    ) -> tuple[Identity, LessonRef] | None:
        """The token's identity and the lesson, or None if either check refuses them."""
        try:
            identity = identify(environ.get("HTTP_AUTHORIZATION", ""), state)
            return identity, find_lesson(module_id, lesson_id)
        except ProgressError:
            return None

    def finish(self, headers: list[tuple[str, str]], status: int) -> list[tuple[str, str]]:
        """The after-request hooks' headers, in their order, and the request's measurement."""
        path = logs.bound_path()
        if path is not None:
            headers.append(("X-Progress-Path", path))  # tag_path
        present = {name.lower() for name, _value in headers}
        headers.extend(header for header in EVERY_ANSWER if header[0].lower() not in present)
        headers.append(("X-Request-ID", logs.end_request("GET", self.route, status)))
        headers.extend(self.vary)  # vary_on_origin runs last: registered first, with CORS
        return headers


def unmirrored_hooks(app: Flask) -> list[str]:
    """The request hooks and signal receivers on the access route that the fast path does
    not stand in for, by module and name."""
    blueprints = (None, ENDPOINT.partition(".")[0])
    hooks = [
        hook
        for registry in (
            app.before_request_funcs,
            app.after_request_funcs,
            app.teardown_request_funcs,
            app.url_value_preprocessors,
        )
        for blueprint in blueprints
        for hook in registry.get(blueprint, ())
    ]
    hooks += [
        receiver
        for signal in (request_started, request_finished, got_request_exception)
        for receiver in signal.receivers_for(app)
    ]
    hooks = [getattr(hook, "func", hook) for hook in hooks]  # a partial: what it calls
    names = (f"{hook.__module__}.{hook.__qualname__}" for hook in hooks)
    return [name for name in names if name not in MIRRORED_HOOKS]


def init_app(app: Flask) -> None:
    """Last, once every route and hook is registered; refuses an app with a hook on the
    route that the fast path would skip."""
    unknown = unmirrored_hooks(app)
    if rate_limits.is_limited(ENDPOINT, "GET"):
        unknown.append("a rate limit")
    if unknown:
        raise RuntimeError(f"the access check's fast path does not do the work of {unknown}")
    app.wsgi_app = AccessFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
