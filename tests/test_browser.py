"""The learner page, the reference client and the admin page in a real browser.

Debian's Chromium (/usr/bin/chromium, never a downloaded one) driven by Playwright for
Python, against the service as production runs it: gunicorn with two workers on the
session's migrated PostgreSQL database. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from prometheus_client.parser import text_string_to_metric_families

from harness.service import RunningService
from progress.auth import decode_token
from progress.flags import flag_gate
from tests.support.admin_page import open_admin_page
from tests.support.apps import SECRET, build_app, dispose, set_rollout
from tests.support.browser import SCREENSHOTS
from tests.support.learner_page import (
    ROW,
    WATCH_LOCK_SCREENS,
    complete_in_a_row,
    course_order,
    lock_screens,
    serve,
    sign_in,
)
from tests.support.learners import AuthActions, Learner
from tests.support.tokens import token_minter


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(10_000)
    context.add_init_script(WATCH_LOCK_SCREENS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def false_lock_screens(service: RunningService, path: str, detected_by: str) -> float:
    text = requests.get(service.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "progress_false_lock_screens":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {
                    "path": path,
                    "detected_by": detected_by,
                }:
                    return sample.value
    raise AssertionError("progress_false_lock_screens_total is missing from /metrics")


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.slow
def test_verified_path_completes_five_lessons_in_a_row_without_a_lock_screen(
    pg_app: Flask, pg_database: str, tmp_path: Path, page: Page
):
    learner = AuthActions(SECRET).learner()
    with serve(pg_app, pg_database, tmp_path, rollout=100) as service:
        order = course_order(service)
        sign_in(page, service, learner)
        expect(page.locator("#new-learner")).to_have_count(0)  # the embedded demo's only
        screenshot(page, "learner-map-start.png")
        paths = complete_in_a_row(page, order)

        assert lock_screens(page) == [], "a lock screen showed on the verified path"
        assert len(paths) == 2 * ROW
        assert set(paths) == {"verified"}
        expect(page.locator(f'.lesson-view[data-lesson="{order[ROW][1]}"]')).to_be_visible()
        screenshot(page, "learner-lesson.png")

        page.get_by_role("link", name="Back to the lesson map").click()
        expect(page.locator("#map-h")).to_be_focused()
        done = page.locator('#map li.lesson[data-state="complete"]')
        expect(done).to_have_count(ROW)
        # The state is text in each lesson's accessible name, not only a colour.
        first = page.locator(f'li[data-lesson="{order[0][1]}"] a')
        expect(first).to_have_accessible_name(re.compile(r", complete$"))
        current = page.locator(f'li[data-lesson="{order[ROW][1]}"]')
        expect(current).to_have_attribute("aria-current", "step")  # highlighted: up next
        expect(current.locator("a")).to_have_accessible_name(re.compile(r", up next$"))
        locked = page.locator(f'li[data-lesson="{order[ROW + 1][1]}"]')
        expect(locked.locator("a")).to_have_count(0)  # a locked lesson is not a link
        expect(locked).to_contain_text(re.compile(r", locked"))
        expect(page.locator(".module").first.locator(".count")).to_contain_text(" of ")
        screenshot(page, "learner-map.png")
        assert lock_screens(page) == []


@pytest.mark.slow
def test_legacy_path_with_a_slow_cache_update_shows_a_false_lock_and_counts_it(
    pg_app: Flask, pg_database: str, tmp_path: Path, page: Page
):
    learner = AuthActions(SECRET).learner()
    admin = AuthActions(SECRET).learner(admin=True)
    faults = {"PROGRESS_FAULTS": "cache_update_delay_ms=1500"}
    with serve(pg_app, pg_database, tmp_path, rollout=0, **faults) as service:
        order = course_order(service)
        before = false_lock_screens(service, "legacy", "client_report")
        sign_in(page, service, learner)  # its progress call fills a worker's cache
        paths = complete_in_a_row(page, order)

        assert set(paths) == {"legacy"}
        assert lock_screens(page), "the legacy path never showed a false lock screen"
        screen = page.locator(".lock-screen")
        expect(screen).to_have_attribute("role", "alert")
        # The page reported it; the primary says the lesson was open all along.
        expect(screen).to_have_attribute("data-false-lock", "true")
        expect(screen).to_contain_text("Our mistake")
        screenshot(page, "learner-false-lock-legacy.png")

        assert false_lock_screens(service, "legacy", "client_report") >= before + 1
        figures = requests.get(
            service.url + "/api/v1/admin/paths", headers=admin.headers, timeout=5
        ).json()
        assert figures["legacy"]["falseLockScreens"] >= 1
        assert false_lock_screens(service, "verified", "client_report") == 0


def learners_either_side_of_ten_percent(pg_app: Flask) -> tuple[Learner, Learner]:
    """One learner the flag puts on the verified path at 10%, one it leaves on legacy, as
    progress.flags evaluates them."""
    set_rollout(pg_app, 10)
    inside = outside = None
    with pg_app.app_context():
        gate = flag_gate()
        while inside is None or outside is None:
            user_id = uuid.uuid4()
            if gate.verified_for(user_id):
                inside = inside or user_id
            else:
                outside = outside or user_id
    return tuple(  # type: ignore[return-value]
        Learner(uid, f"{uid.hex[:8]}@example.com", token(uid)) for uid in (inside, outside)
    )


def token(user_id: uuid.UUID) -> str:
    return token_minter(SECRET).mint(user_id, f"{user_id.hex[:8]}@example.com")


def wait_for_path(service: RunningService, learner: Learner, expected: str) -> None:
    """Every worker serves the learner on `expected` (each picks a change up within its
    flag refresh interval); new connections spread the checks over the workers."""
    url = service.url + "/api/v1/modules/basics/lessons/greetings/access"
    deadline = time.monotonic() + 10
    in_a_row, seen = 0, None
    while in_a_row < 8:
        seen = requests.get(url, headers=learner.headers, timeout=5).headers["X-Progress-Path"]
        in_a_row = in_a_row + 1 if seen == expected else 0
        assert time.monotonic() < deadline, f"{learner.id} still on {seen}, not {expected}"
        time.sleep(0.05 if in_a_row else 0.25)


@pytest.mark.slow
def test_product_moves_the_rollout_on_the_admin_page_and_learners_follow(
    pg_app: Flask, pg_database: str, tmp_path: Path, page: Page
):
    inside, outside = learners_either_side_of_ten_percent(pg_app)
    admin = AuthActions(SECRET).learner(admin=True)
    with serve(pg_app, pg_database, tmp_path, rollout=0) as service:
        wait_for_path(service, inside, "legacy")
        wait_for_path(service, outside, "legacy")

        open_admin_page(page, service.url, admin.token)
        expect(page.locator("#percentage")).to_have_text("0")

        for stage, reason in ((10, "stage 1: 10% of learners"), (100, "stage 2: everyone")):
            page.get_by_label("Reason (kept in the history)").fill(reason)
            page.get_by_role("button", name=f"{stage}%", exact=True).click()
            expect(page.locator("#percentage")).to_have_text(str(stage))
            expect(page.locator(f'[data-stage="{stage}"]')).to_have_attribute(
                "aria-pressed", "true"
            )
            expect(page.locator("#history tbody tr").first).to_contain_text(reason)
            wait_for_path(service, inside, "verified")
            wait_for_path(service, outside, "verified" if stage == 100 else "legacy")

        # Enter in the reason field must not press the first stage button (0%).
        page.get_by_label("Reason (kept in the history)").fill("a slip of the finger")
        page.get_by_label("Reason (kept in the history)").press("Enter")
        expect(page.locator("#message")).to_contain_text("Enter a whole number")
        expect(page.locator("#percentage")).to_have_text("100")
        page.reload()  # the figures table filled from a fresh load, token from the session
        expect(page.locator("#figures tbody tr")).to_have_count(7)
        screenshot(page, "admin-rollout.png")


@pytest.mark.slow
def test_the_reference_client_retries_a_failed_completion_once_and_guards_navigation(
    pg_app: Flask, pg_database: str, tmp_path: Path, page: Page
):
    learner = AuthActions(SECRET).learner()
    with serve(pg_app, pg_database, tmp_path, rollout=100) as service:
        page.goto(service.url + "/")
        calls: list[str] = []

        def fail_first_completion(route):
            calls.append(route.request.url)
            if len(calls) == 1:
                route.fulfill(status=503, json={"error": {"code": "x", "message": "busy"}})
            else:
                route.continue_()

        page.route("**/lessons/greetings/complete", fail_first_completion)
        page.route("**/lessons/introductions/complete", lambda route: route.abort())
        accesses: list[str] = []
        page.on("request", lambda r: accesses.append(r.url) if "/access" in r.url else None)
        reports: list[dict] = []
        page.on(
            "request",
            lambda r: reports.append(r.post_data_json) if "/lock-screen" in r.url else None,
        )

        outcome = page.evaluate(
            """async (token) => {
              const client = new ProgressClient({ token });
              const outcome = {};
              const started = performance.now();
              outcome.completed = await client.complete("basics", "greetings");
              outcome.retryMs = performance.now() - started;
              outcome.version = client.version;
              outcome.access = await client.access("basics", "introductions");
              const failure = async (call) => {
                const t0 = performance.now();
                try {
                  await call();
                  return null;
                } catch (e) {
                  const ms = performance.now() - t0;
                  return { status: e.status, code: e.code, message: e.message, ms };
                }
              };
              outcome.lockAnswer = await client.access("basics", "colours");
              outcome.report = await client.reportLockScreen(
                "basics", "colours", outcome.lockAnswer.lockReceipt
              );
              outcome.locked = await failure(() => client.complete("basics", "colours"));
              outcome.network = await failure(() => client.complete("basics", "introductions"));
              outcome.lastPath = client.lastPath;
              return outcome;
            }""",
            learner.token,
        )
    # A 503, then one retry a second later that succeeds.
    assert len(calls) == 2
    assert outcome["retryMs"] >= 1000
    assert outcome["completed"]["success"] is True
    assert outcome["version"] == outcome["completed"]["version"] >= 1
    # The next access carries the version it saw.
    assert any(f"minVersion={outcome['version']}" in url for url in accesses)
    assert outcome["access"]["accessible"] is True
    assert outcome["access"]["lockReceipt"] is None
    # A locked answer's receipt goes back with the lock-screen report: a true lock here.
    assert outcome["lockAnswer"]["accessible"] is False
    assert reports == [
        {
            "moduleId": "basics",
            "lessonId": "colours",
            "lockReceipt": outcome["lockAnswer"]["lockReceipt"],
        }
    ]
    assert outcome["report"] == {"falseLock": False}
    # A 4xx is not retried: at once, with the API's code.
    assert outcome["locked"]["status"] == 409
    assert outcome["locked"]["code"] == "lesson_locked"
    assert outcome["locked"]["ms"] < 900
    # The network failing twice: one retry, then a clear message.
    assert outcome["network"]["status"] == 0
    assert outcome["network"]["ms"] >= 1000
    assert "tried twice" in outcome["network"]["message"]
    assert outcome["lastPath"] == "verified"


def test_the_new_learner_token_route_exists_only_in_development(pg_app: Flask, tmp_path: Path):
    assert pg_app.test_client().post("/dev/learner-token").status_code == 404  # PROGRESS_ENV=test
    # The demo's button signs with the development secret: HS256 in either test mode.
    hs256 = {"PROGRESS_JWT_JWKS_URL": "", "PROGRESS_JWT_ISSUER": ""}
    dev = build_app(
        f"sqlite:///{tmp_path / 'dev.db'}", tmp_path, PROGRESS_ENV="development", **hs256
    )
    try:
        answer = dev.test_client().post("/dev/learner-token")
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["email"] == f"learner-{uuid.UUID(body['id']).hex[:12]}@example.com"
        identity = decode_token(body["token"], SECRET)
        assert (str(identity.user_id), identity.email) == (body["id"], body["email"])
        assert identity.email_verified
        assert not identity.is_admin
    finally:
        dispose(dev)
