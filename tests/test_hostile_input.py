"""Hostile input is turned away with the error shape, before it costs anything: deeply
nested JSON, bodies over PROGRESS_MAX_BODY_BYTES (413 before the body is read, measured
under gunicorn), a route that needs a body sent none. Unknown query parameters are
ignored (cache-busters, tracking); unknown body fields stay refused."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness.service import running_service
from progress.config import ConfigError, load_settings
from progress.extensions import db
from progress.models import GuardEvaluation, LockScreenReport, RolloutChange, RolloutPlan

from .support.apps import SECRET, build_app, dispose, migrate_and_seed
from .support.learners import AuthActions
from .support.service import service_env

ACCESS = "/api/v1/modules/basics/lessons/{}/access"
DEEP = "[" * 20_000
BODY_ROUTES = [
    ("POST", "/api/v1/events/lock-screen"),
    ("PUT", "/api/v1/admin/rollout"),
    ("PUT", "/api/v1/admin/rollout/plan"),
]


def rows(app) -> tuple[int, ...]:
    with app.app_context():
        counts = tuple(
            db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (LockScreenReport, RolloutChange, RolloutPlan, GuardEvaluation)
        )
        db.session.rollback()
        return counts


@pytest.mark.parametrize(("method", "url"), BODY_ROUTES)
def test_deeply_nested_json_is_400_malformed_json(app, client, auth, method, url):
    admin = auth.learner(admin=True)
    before = rows(app)
    response = client.open(
        url, method=method, headers=admin.headers, data=DEEP, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"
    assert response.get_json()["error"]["field"] == "body"
    assert rows(app) == before


@pytest.mark.parametrize(("method", "url"), BODY_ROUTES)
def test_a_body_over_the_limit_is_413_with_the_error_shape(app, client, auth, method, url):
    admin = auth.learner(admin=True)
    before = rows(app)
    body = '{"reason": "' + "x" * 70_000 + '"}'
    response = client.open(
        url, method=method, headers=admin.headers, data=body, content_type="application/json"
    )
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large"
    assert "65536" in error["message"]
    assert rows(app) == before


def test_a_get_with_a_large_body_is_413_too(client, auth):
    learner = auth.learner()
    response = client.get(ACCESS.format("greetings"), headers=learner.headers, data="x" * 70_000)
    assert response.status_code == 413


@pytest.mark.parametrize("url", ["/api/v1/admin/rollout/plan", "/api/v1/admin/rollout"])
def test_a_route_that_needs_a_body_refuses_none(app, client, auth, url):
    admin = auth.learner(admin=True)
    before = rows(app)
    response = client.put(url, headers=admin.headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "body"
    typed = client.put(url, headers=admin.headers, content_type="application/json")
    assert typed.status_code == 400
    form = client.put(url, headers=admin.headers, data={}, content_type="multipart/form-data")
    assert form.status_code == 400
    assert rows(app) == before


def test_unknown_query_parameters_are_ignored(client, auth):
    learner = auth.learner()
    admin = auth.learner(admin=True)
    access = client.get(
        ACCESS.format("greetings") + "?minVersion=0&_=1712345&utm_source=mail",
        headers=learner.headers,
    )
    assert access.status_code == 200
    assert access.get_json()["accessible"] is True
    progress = client.get("/api/v1/progress?cb=42", headers=learner.headers)
    assert progress.status_code == 200
    evaluations = client.get(
        "/api/v1/admin/rollout/evaluations?limit=3&fbclid=x", headers=admin.headers
    )
    assert evaluations.status_code == 200
    # known parameters are still checked
    bad = client.get(ACCESS.format("greetings") + "?minVersion=-1&x=1", headers=learner.headers)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["field"] == "minVersion"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def send_huge_body(port: int, size: int) -> tuple[bytes, int]:
    """Announce `size` bytes and stream them until the service answers; return the answer
    and how many bytes it let us send before answering."""
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"PUT /api/v1/admin/rollout HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {size}\r\n\r\n".encode()
        )
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if b"\r\n\r\n" in answer:
                    break
            except BlockingIOError:
                pass
            if sent < size:
                try:
                    sent += sock.send(chunk[: size - sent])
                except BlockingIOError:
                    time.sleep(0.01)
                except OSError:  # the service closed the connection: read the answer
                    sock.setblocking(True)
                    answer += sock.recv(65536)
                    break
            else:
                time.sleep(0.01)
    return answer, sent


@pytest.mark.slow
def test_a_100_mb_body_is_refused_before_it_is_read(pg_app, pg_database, tmp_path):
    env = service_env(pg_database, tmp_path / "metrics")
    with running_service(env, tmp_path, workers=1) as service:
        (worker,) = service.worker_pids()
        admin = AuthActions(SECRET).learner(admin=True)
        import requests

        requests.get(service.url + "/api/v1/admin/rollout", headers=admin.headers, timeout=10)
        before = rss_kib(worker)
        answer, sent = send_huge_body(service.port, 100 * 1024 * 1024)
        after = rss_kib(worker)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"payload_too_large"' in answer
        assert after - before < 10 * 1024, f"RSS grew {after - before} KiB"
        assert requests.get(service.url + "/healthz", timeout=5).status_code == 200
    print(
        f"\n100 MB body: 413 after {sent / 2**20:.1f} MiB sent; worker RSS {before / 1024:.1f} "
        f"MiB before, {after / 1024:.1f} MiB after (+{(after - before) / 1024:.1f} MiB)"
    )


# -- the Host header ----------------------------------------------------------------------------

EVIL = {"Host": "evil.example"}


def test_a_redirect_names_no_host_so_a_forged_host_goes_nowhere(client):
    """`/apidoc/swagger` redirects to `/apidoc/swagger/` on the client's own site, whatever
    Host it sent: the Location is a path."""
    answer = client.get("/apidoc/swagger", headers=EVIL)
    assert answer.status_code == 308
    assert answer.headers["Location"] == "/apidoc/swagger/"


@pytest.fixture(scope="module")
def trusting_app(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("trusted-hosts")
    app = build_app(
        f"sqlite:///{tmp / 'progress.db'}", tmp, PROGRESS_TRUSTED_HOSTS="progress.example.com"
    )
    migrate_and_seed(app)
    yield app
    dispose(app)


@pytest.mark.parametrize(
    "path", ["/apidoc/swagger", "/healthz", "/api/v1/progress", ACCESS.format("greetings")]
)
def test_with_trusted_hosts_another_host_is_400_with_the_error_shape(trusting_app, path):
    """The access check's fast path refuses it as Flask does, and nothing redirects there."""
    learner = AuthActions(SECRET).learner()
    answer = trusting_app.test_client().get(path, headers={**learner.headers, **EVIL})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_request"
    assert "Location" not in answer.headers


def test_with_trusted_hosts_a_trusted_host_is_served_port_and_all(trusting_app):
    learner = AuthActions(SECRET).learner()
    client = trusting_app.test_client()
    for host in ("progress.example.com", "progress.example.com:8443"):
        headers = {**learner.headers, "Host": host}
        assert client.get(ACCESS.format("greetings"), headers=headers).status_code == 200
        redirect = client.get("/apidoc/swagger", headers=headers)
        assert redirect.headers["Location"] == "/apidoc/swagger/"


@pytest.mark.parametrize("value", ["*", "https://progress.example.com", "a b.example"])
def test_a_malformed_trusted_host_refuses_to_start(tmp_path, value):
    env = {"PROGRESS_ENV": "test", "PROGRESS_JWT_SECRET": SECRET, "PROGRESS_TRUSTED_HOSTS": value}
    with pytest.raises(ConfigError, match="PROGRESS_TRUSTED_HOSTS"):
        load_settings(tmp_path, env)
