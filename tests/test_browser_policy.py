"""Browser-facing headers on every answer, a Content-Security-Policy without inline scripts
on every page, and the interactive API docs working offline under it in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from tests.support.apps import SECRET
from tests.support.learner_page import serve
from tests.support.learners import AuthActions

PAGES = ["/", "/admin/rollout", "/apidoc/swagger/", "/apidoc/redoc/"]


def test_every_answer_says_nosniff_and_a_referrer_policy(client):
    learner = AuthActions(SECRET).learner()
    answers = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/metrics"),
        client.get("/api/v1/curriculum"),
        client.get("/api/v1/openapi.json"),
        client.get("/api/v1/progress"),  # 401
        client.get("/api/v1/progress", headers=learner.headers),
        client.get("/nowhere"),  # 404
        client.get("/static/progress-client.js"),
        client.get("/apidoc/assets/swagger_bundle.js"),
        *(client.get(page) for page in PAGES),
    ]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.request.path
        assert answer.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        answer.close()  # static files are streamed from an open file


@pytest.mark.parametrize("page", PAGES)
def test_pages_forbid_inline_scripts_and_framing(client, page):
    answer = client.get(page)
    assert answer.status_code == 200
    policy = dict(
        part.strip().split(" ", 1) for part in answer.headers["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert answer.headers["X-Frame-Options"] == "DENY"
    html = answer.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL)
    assert scripts, "the page has no script at all"
    assert all(not code.strip() for code in scripts), scripts  # no inline script
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handler
    assert "https://" not in html  # nothing from elsewhere


def test_json_answers_carry_no_page_policy(client):
    assert "Content-Security-Policy" not in client.get("/api/v1/curriculum").headers


@pytest.mark.slow
def test_the_api_docs_work_offline_under_the_policy(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser,
):
    """Chromium with every request off the service's origin refused: each docs page renders
    the API's title and the operations, asks no other host for anything (not even an image
    the policy would refuse), and the browser reports no policy violation."""
    with serve(pg_app, pg_database, tmp_path, rollout=0) as service:
        context = browser.new_context()
        elsewhere: list[str] = []

        def only_the_service(route):
            if route.request.url.startswith(service.url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_service)
        page = context.new_page()
        # A request the policy refuses never reaches the router: the browser says so instead.
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        # Each page: the API's title, then one of its operations, as that tool shows it.
        checks = {
            "/apidoc/swagger/": (
                ".swagger-ui .info .title",
                '[data-path="/api/v1/events/lock-screen"]',
            ),
            "/apidoc/redoc/": ("h1", 'text="/api/v1/events/lock-screen"'),
        }
        for path, (title, operation) in checks.items():
            page.goto(service.url + path)
            heading = page.locator(title).filter(has_text="Lesson progress service").first
            heading.wait_for(timeout=20_000)
            page.locator(operation).first.wait_for(state="attached", timeout=20_000)
            page.wait_for_load_state("networkidle")
        for path in ("/", "/admin/rollout"):
            page.goto(service.url + path)
            page.wait_for_load_state("networkidle")
        context.close()
    assert elsewhere == []
    assert violations == []


def test_two_documentation_uis_are_served_and_scalar_is_not(client):
    """Swagger UI and Redoc answer; Scalar, whose bundle reaches for its own services, is gone."""
    assert client.get("/apidoc/swagger/").status_code == 200
    assert client.get("/apidoc/redoc/").status_code == 200
    assert client.get("/apidoc/scalar/").status_code == 404
    assert client.get("/apidoc/assets/scalar.js").status_code == 404


def test_redocs_script_names_no_logo_on_another_host(client):
    """Redoc's script points its sidebar logo at the service, which serves it."""
    script = client.get("/apidoc/assets/redoc.js").get_data(as_text=True)
    assert "cdn.redoc.ly" not in script
    assert "/apidoc/assets/redoc-logo.svg" in script
    logo = client.get("/apidoc/assets/redoc-logo.svg")
    assert (logo.status_code, logo.mimetype) == (200, "image/svg+xml")
