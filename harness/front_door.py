"""The front door: Debian's nginx in front of gunicorn, which listens on a unix socket.

The config is nginx/progress.conf.j2, rendered at start from the service's own settings:
the body limit is PROGRESS_MAX_BODY_BYTES, the upstream timeout PROGRESS_DB_TIMEOUT_MS plus
UPSTREAM_MARGIN_MS. Every path nginx writes is under one run directory, so no root is needed.
`make serve` runs it (devtools/serve.py); the tests start it through `running_front_door`.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from werkzeug.exceptions import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
    RequestURITooLarge,
)

from progress.browser_policy import EVERY_ANSWER
from progress.config import Settings
from progress.errors import body_too_large, http_code

from .processes import REPO, free_port, run_to_end, stop_group, tail, wait_until_ready
from .service import RunningService, start_service

TEMPLATE = REPO / "nginx" / "progress.conf.j2"
STATIC_DIR = REPO / "progress" / "static"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MIME_TYPES = Path("/etc/nginx/mime.types")  # Debian's nginx-common

# The whole request is bounded by the database deadline plus this: room for the work
# around the database calls (the token, the answer), not for a second full wait.
UPSTREAM_MARGIN_MS = 1000
# Without a database deadline (PROGRESS_DB_TIMEOUT_MS=0) the bound is gunicorn's own.
UNBOUNDED_UPSTREAM_MS = 30_000
# Slow clients: a request line and headers get 5 s, each read of a body or write of an
# answer 10 s; an idle kept-alive connection 15 s. All held by nginx, none by gunicorn.
CLIENT_HEADER_TIMEOUT_S = 5
CLIENT_BODY_TIMEOUT_S = 10
SEND_TIMEOUT_S = 10
KEEPALIVE_TIMEOUT_S = 15
UPSTREAM_CONNECT_TIMEOUT_S = 1  # a local socket: a connect that takes longer is refused


def service_limits(env: Mapping[str, str]) -> dict[str, int]:
    """The settings nginx's config follows, from the service's environment (unset or empty:
    the service's default)."""
    limits = {}
    for key, name in (
        ("max_body_bytes", "PROGRESS_MAX_BODY_BYTES"),
        ("db_timeout_ms", "PROGRESS_DB_TIMEOUT_MS"),
    ):
        raw = env.get(name, "")
        limits[key] = int(raw) if raw else Settings.model_fields[name].default
    return limits


def upstream_timeout_ms(db_timeout_ms: int) -> int:
    """How long nginx waits for gunicorn's answer, queueing included."""
    return db_timeout_ms + UPSTREAM_MARGIN_MS if db_timeout_ms else UNBOUNDED_UPSTREAM_MS


def _error(exc: type[HTTPException], message: str, field: str | None = None) -> tuple:
    error = exc()
    return error.code, http_code(error), message, field


def error_body(code: str, message: str, field: str | None) -> str:
    """The service's error shape (progress/errors.py), as nginx returns it in single quotes."""
    body = {"code": code, "message": message, **({"field": field} if field else {})}
    text = json.dumps({"error": body}, separators=(",", ":"))
    if "'" in text or "\\" in text:
        raise ValueError(f"{text} can't be quoted in nginx's config")
    return text


def _launching_user() -> str | None:
    """`user group` for nginx's `user` directive when run by root (it matters only then)."""
    if os.geteuid() != 0:
        return None
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def render_config(
    *,
    listen: str,
    socket: Path,
    run_dir: Path,
    max_body_bytes: int,
    db_timeout_ms: int,
    static_dir: Path = STATIC_DIR,
) -> str:
    """nginx's config for the front door on `listen` (host:port) before gunicorn on `socket`."""
    errors = {
        "bad_request": _error(BadRequest, "The request is malformed."),
        "not_found": _error(NotFound, "Nothing is at this URL."),
        "method_not_allowed": _error(MethodNotAllowed, "Static files are only read."),
        "payload_too_large": (RequestEntityTooLarge.code, *body_too_large(max_body_bytes)),
        "uri_too_long": _error(RequestURITooLarge, "The request URL is too long.", "url"),
        "headers_too_large": _error(
            RequestHeaderFieldsTooLarge, "A request header is too large.", "headers"
        ),
        "bad_gateway": _error(BadGateway, "The service is not answering; retry."),
        "gateway_timeout": _error(
            GatewayTimeout,
            f"The service did not answer within {upstream_timeout_ms(db_timeout_ms)} ms; retry.",
        ),
    }
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - an nginx config, not HTML
    )
    return environment.get_template(TEMPLATE.name).render(
        listen=listen,
        user=_launching_user(),
        socket=socket,
        run_dir=run_dir,
        static_dir=static_dir,
        mime_types=MIME_TYPES,
        max_body_bytes=max_body_bytes,
        upstream_timeout_ms=upstream_timeout_ms(db_timeout_ms),
        upstream_connect_timeout_s=UPSTREAM_CONNECT_TIMEOUT_S,
        client_header_timeout_s=CLIENT_HEADER_TIMEOUT_S,
        client_body_timeout_s=CLIENT_BODY_TIMEOUT_S,
        send_timeout_s=SEND_TIMEOUT_S,
        keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
        browser_headers=EVERY_ANSWER,
        errors=errors,
        error_body=error_body,
    )


def write_config(run_dir: Path, **settings: object) -> Path:
    """Render the config into `run_dir` and have nginx check it (RuntimeError if it refuses)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "nginx.conf"
    path.write_text(render_config(run_dir=run_dir, **settings))  # type: ignore[arg-type]
    run_to_end(nginx_command(path, run_dir, "-t", "-q"), cwd=run_dir, timeout=30)
    return path


def wait_for_socket(path: Path, process: subprocess.Popen, timeout: float = 30) -> None:
    """Until gunicorn's socket exists (nginx started sooner would log each refused try);
    RuntimeError if gunicorn exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited at start ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn made no socket at {path} in {timeout:g}s")
        time.sleep(0.1)


def nginx_command(config: Path, run_dir: Path, *extra: str) -> list[str]:
    """nginx in the foreground (the config says `daemon off`), its prefix and early error
    log its own, so it needs nothing under /var."""
    return [NGINX, "-p", str(run_dir), "-c", str(config), "-e", "stderr", *extra]


def start_nginx(config: Path, run_dir: Path, log_path: Path | None) -> subprocess.Popen:
    """nginx in a process group of its own; its output to `log_path` (None: this one's)."""
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(  # noqa: S603 - Debian's nginx, fixed arguments
            nginx_command(config, run_dir),
            cwd=run_dir,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
        )
    finally:
        if log:
            log.close()


@dataclass
class RunningFrontDoor:
    url: str
    port: int
    nginx: subprocess.Popen
    gunicorn: RunningService
    nginx_log: Path

    def log_tail(self, lines: int = 40) -> str:
        return f"nginx:\n{tail(self.nginx_log, lines)}\ngunicorn:\n{self.gunicorn.log_tail(lines)}"

    def stop(self) -> None:
        stop_group(self.nginx)
        self.gunicorn.stop()


@contextlib.contextmanager
def running_front_door(
    env: Mapping[str, str],
    tmp: Path,
    workers: int = 1,
    threads: int = 8,
    timeout: float = 30,
) -> Iterator[RunningFrontDoor]:
    """nginx on a free port before gunicorn (`workers` x `threads`) on a unix socket, ready;
    both stopped on the way out. `env` is the service's; its body limit and database
    deadline shape nginx's config as they do in `make serve`."""
    port = free_port()
    run_dir = tmp / f"front-door-{port}"
    socket = run_dir / "gunicorn.sock"
    config = write_config(
        run_dir,
        listen=f"127.0.0.1:{port}",
        socket=socket,
        **service_limits(env),
    )
    gunicorn = start_service({**env, "BIND": f"unix:{socket}"}, tmp, workers, threads, port=port)
    try:
        wait_for_socket(socket, gunicorn.process, timeout)
    except RuntimeError as error:
        gunicorn.stop()
        raise RuntimeError(f"{error}:\n{gunicorn.log_tail()}") from None
    nginx = start_nginx(config, run_dir, run_dir / "nginx.log")
    front = RunningFrontDoor(
        f"http://127.0.0.1:{port}", port, nginx, gunicorn, run_dir / "nginx.log"
    )
    try:
        try:
            wait_until_ready(front.url + "/readyz", nginx, timeout, front.nginx_log, "nginx")
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n{front.log_tail()}") from None
        yield front
    finally:
        front.stop()
