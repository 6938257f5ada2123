"""The seed's test matrix rows that only a browser shows, in Debian's Chromium: page refresh,
tab switch across two service instances, a slow (3G) network, a cache updater that never
works, a frontend on another origin (CORS), and every view of the learner page at desktop
and phone width (screenshots in test-artifacts/screenshots/).

The service runs as production runs it (gunicorn on the session's PostgreSQL database); the
browser talks to it only through the reference client, as the learner page does.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from flask import Flask
from playwright.sync_api import Browser, Page, Route, expect
from prometheus_client.parser import text_string_to_metric_families

from harness.service import RunningService, running_service
from tests.support.apps import SECRET, set_rollout
from tests.support.browser import SCREENSHOTS
from tests.support.learner_page import (
    ROW,
    WATCH_LOCK_SCREENS,
    complete_in_a_row,
    course_order,
    lock_screens,
    served_path,
    sign_in,
    wait_until_both_workers_listen,
)
from tests.support.learners import AuthActions, Learner
from tests.support.service import service_env
from tests.support.tokens import MODE as TOKEN_MODE

DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 390, "height": 844}
# Chromium's "Regular 3G"-like profile the issue names: about 400 ms and 400 kbit/s.
THREE_G = {
    "offline": False,
    "latency": 400,
    "downloadThroughput": 400 * 1024 / 8,
    "uploadThroughput": 400 * 1024 / 8,
}


@contextlib.contextmanager
def instance(
    pg_database: str, tmp_path: Path, name: str, workers: int = 2, **env: str
) -> Iterator[RunningService]:
    """One service instance (gunicorn) on the session's test database."""
    tmp = tmp_path / name
    tmp.mkdir()
    settings = service_env(
        pg_database,
        tmp / "metrics",
        **{"PROGRESS_FAULTS": "", "PROGRESS_GUARD_INTERVAL_S": "0", **env},
    )
    with running_service(settings, tmp, workers=workers) as service:
        wait_until_both_workers_listen(service)
        yield service


@contextlib.contextmanager
def tab(browser: Browser, viewport: dict | None = None) -> Iterator[Page]:
    """A fresh browser window (its own storage), watching for lock screens and JS errors."""
    context = browser.new_context(viewport=viewport or DESKTOP)
    context.set_default_timeout(10_000)
    context.add_init_script(WATCH_LOCK_SCREENS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def requests_to(page: Page, fragment: str) -> list[str]:
    """Every URL the page asks for that contains `fragment`, as it asks."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if fragment in r.url else None)
    return seen


def min_version(url: str) -> int:
    found = re.search(r"minVersion=(\d+)", url)
    assert found, f"no minVersion in {url}"
    return int(found.group(1))


def access_checks(service: RunningService) -> float:
    """How many access checks this instance answered (its /metrics, all workers)."""
    text = requests.get(service.url + "/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "progress_access_checks"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def stored_version(page: Page, learner: Learner) -> int:
    return int(page.evaluate(f"localStorage.getItem('progress.version.{learner.id}') || '0'"))


def complete_current_lesson(page: Page, lesson: str) -> None:
    page.locator(f'.lesson-view[data-lesson="{lesson}"] #complete').click()
    expect(page.locator(f'.completion-view[data-lesson="{lesson}"]')).to_be_visible()


def lesson_words(service: RunningService) -> dict[str, list[str]]:
    """Each lesson's words (terms) as the curriculum route gives them, by lesson id."""
    modules = requests.get(service.url + "/api/v1/curriculum", timeout=5).json()["modules"]
    return {
        lesson["id"]: [word["term"] for word in lesson["words"]]
        for module in modules
        for lesson in module["lessons"]
    }


def open_review(page: Page) -> list[str]:
    """Open the Review view at once (by its URL) and read the terms it lists."""
    page.evaluate("location.hash = '#/review'")
    view = page.locator("#review")
    expect(view).to_be_visible()
    return page.locator("#review .review-term").all_text_contents()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


@pytest.mark.slow
def test_page_refresh_right_after_a_completion_keeps_the_next_lesson_open(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """Seed matrix "Page refresh": the version survives the reload (localStorage), so the
    first calls after it already carry minVersion (and the completion's position as
    minPosition), and the next lesson opens."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    with instance(pg_database, tmp_path, "a") as service, tab(browser) as page:
        order = course_order(service)
        sign_in(page, service, learner)
        page.locator(f'li[data-lesson="{order[0][1]}"] a').click()
        complete_current_lesson(page, order[0][1])
        written = stored_version(page, learner)
        assert written >= 1
        kept = page.evaluate(f"localStorage.getItem('progress.position.{learner.id}')")
        version, _, position = kept.partition(":")
        assert int(version) == written  # the completion's position, beside its version
        assert int(position) > 0

        after_reload = requests_to(page, "minVersion=")
        page.reload()  # at once: the token and the version are in localStorage
        expect(page.locator(f'.lesson-view[data-lesson="{order[0][1]}"]')).to_be_visible()
        assert after_reload, "no progress or access call after the reload"
        assert all(min_version(url) >= written for url in after_reload), after_reload
        assert all(f"minPosition={position}" in url for url in after_reload), after_reload

        page.locator("#next").click()
        expect(page.locator(f'.lesson-view[data-lesson="{order[1][1]}"]')).to_be_visible()
        assert lock_screens(page) == []
        assert served_path(page) == "verified"


@pytest.mark.slow
def test_a_completion_in_one_tab_is_honoured_at_once_by_another_tab_on_another_instance(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """Seed matrix "Browser tab switch": tabs A and B of one learner share localStorage; A's
    calls reach instance A, B's reach instance B (as behind a load balancer), and B's copy
    of the learner's progress is older. B honours A's completion at once: its next call
    carries A's version, and its map follows A without a reload (the storage event). The
    review set too, in both orders: completed on A, reviewed on B at once, and completed on
    B, reviewed on A at once, every word is there; each completion view shows its XP."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    with (
        instance(pg_database, tmp_path, "a", workers=1) as a,
        instance(pg_database, tmp_path, "b", workers=1) as b,
    ):
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(10_000)
        context.add_init_script(WATCH_LOCK_SCREENS)
        try:
            order = course_order(a)
            tab_a, tab_b = context.new_page(), context.new_page()
            reached_b = route_api_to(tab_b, a, b)
            sign_in(tab_a, a, learner)
            sign_in(tab_b, a, learner)  # instance B now holds the learner's progress, version 0
            assert reached_b, "tab B's calls did not go to instance B"

            words = lesson_words(a)
            assert open_review(tab_b) == []  # instance B now derives it from version 0
            tab_b.get_by_role("link", name="Back to the lesson map").click()
            tab_a.locator(f'li[data-lesson="{order[0][1]}"] a').click()
            complete_current_lesson(tab_a, order[0][1])
            expect(tab_a.locator("#xp-earned")).to_contain_text("+10 XP")
            written = stored_version(tab_a, learner)
            # Completed on A, review opened on B at once: the words are there.
            b_review = requests_to(tab_b, "/review")
            assert open_review(tab_b) == words[order[0][1]]
            assert [min_version(url) for url in b_review] == [written]
            tab_b.get_by_role("link", name="Back to the lesson map").click()

            b_access = requests_to(tab_b, "/access")
            checks_before = access_checks(a), access_checks(b)
            tab_b.bring_to_front()
            tab_b.evaluate(f"location.hash = '#/lesson/{order[1][0]}/{order[1][1]}'")
            expect(tab_b.locator(f'.lesson-view[data-lesson="{order[1][1]}"]')).to_be_visible()
            assert [min_version(url) for url in b_access] == [written]
            # Instance B answered it, not A.
            assert (access_checks(a), access_checks(b)) == (checks_before[0], checks_before[1] + 1)
            assert lock_screens(tab_b) == []
            assert served_path(tab_b) == "verified"

            # B on its map; A completes the next lesson: B's map opens the one after, unasked.
            tab_b.get_by_role("link", name="Back to the lesson map").click()
            after = tab_b.locator(f'li[data-lesson="{order[2][1]}"]')
            expect(after).to_have_attribute("data-state", "locked")
            tab_a.locator("#next").click()
            complete_current_lesson(tab_a, order[1][1])
            expect(after).to_have_attribute("data-state", "open")
            expect(after).to_have_attribute("aria-current", "step")

            # The other order: completed on B, review opened on A at once.
            tab_b.locator(f'li[data-lesson="{order[2][1]}"] a').click()
            complete_current_lesson(tab_b, order[2][1])
            expect(tab_b.locator("#xp-earned")).to_contain_text("+10 XP")
            expect(tab_b.locator("#xp-earned")).to_contain_text("30 XP in all")
            assert open_review(tab_a) == [t for _, lesson in order[:3] for t in words[lesson]]
            assert lock_screens(tab_a) == lock_screens(tab_b) == []
        finally:
            context.close()


@pytest.mark.slow
def test_on_the_legacy_path_the_other_instance_still_shows_its_false_lock(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """The baseline of the tab switch: the legacy path believes instance B's older copy
    (a delayed cache update, no invalidation), whatever version the tab sends: its lock
    screen, and a review set without the words of the lesson just completed."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 0)
    slow = {"PROGRESS_FAULTS": "cache_update_delay_ms=1500"}
    with (
        instance(pg_database, tmp_path, "a", workers=1, **slow) as a,
        instance(pg_database, tmp_path, "b", workers=1, **slow) as b,
    ):
        context = browser.new_context(viewport=DESKTOP)
        context.set_default_timeout(10_000)
        context.add_init_script(WATCH_LOCK_SCREENS)
        try:
            order = course_order(a)
            tab_a, tab_b = context.new_page(), context.new_page()
            route_api_to(tab_b, a, b)
            sign_in(tab_a, a, learner)
            sign_in(tab_b, a, learner)
            assert open_review(tab_b) == []  # instance B's review cache keeps version 0
            tab_b.get_by_role("link", name="Back to the lesson map").click()
            tab_a.locator(f'li[data-lesson="{order[0][1]}"] a').click()
            complete_current_lesson(tab_a, order[0][1])
            # Nothing clears B's review cache: its old set is what the learner sees.
            assert open_review(tab_b) == []

            checks_on_a = access_checks(a)
            tab_b.evaluate(f"location.hash = '#/lesson/{order[1][0]}/{order[1][1]}'")
            screen = tab_b.locator(f'.lock-screen[data-lesson="{order[1][1]}"]')
            expect(screen).to_be_visible()
            assert access_checks(a) == checks_on_a  # instance B's older copy locked it
            expect(screen).to_have_attribute("data-false-lock", "true")  # reported and judged
            assert served_path(tab_b) == "legacy"
        finally:
            context.close()


def route_api_to(page: Page, origin: RunningService, other: RunningService) -> list[str]:
    """The page's API calls go to `other` instead (a load balancer that picked another
    instance); the page and its storage stay on `origin`. Returns the calls rerouted."""
    rerouted: list[str] = []

    def reroute(route: Route) -> None:
        url = route.request.url.replace(origin.url, other.url, 1)
        rerouted.append(url)
        route.continue_(url=url)

    page.route(f"{origin.url}/api/v1/**", reroute)
    return rerouted


@pytest.mark.slow
def test_on_a_3g_network_five_lessons_in_a_row_and_a_clear_timeout(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """Seed matrix "Slow network (3G)": Chromium's own network emulation. Five completions
    in a row never meet a lock screen; a completion that gets no answer ends, after the
    client's timeout and its one retry, in a clear alert with "Try again", and no move."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    timeout = {"PROGRESS_PAGE_TIMEOUT_MS": "4000"}
    with instance(pg_database, tmp_path, "a", **timeout) as service, tab(browser) as page:
        order = course_order(service)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", THREE_G)
        sign_in(page, service, learner)
        started = page.evaluate("performance.now()")
        paths = complete_in_a_row(page, order)
        took_ms = page.evaluate("performance.now()") - started
        assert lock_screens(page) == []
        assert set(paths) == {"verified"}
        # The emulation was real: at least one 400 ms round trip per call (2 per lesson). A
        # lower bound the emulation itself guarantees, so a busy machine only adds to it.
        assert took_ms >= 2 * ROW * 400, took_ms

        # Lesson ROW+1 is open; its completion never gets an answer.
        held: list[Route] = []
        page.route("**/complete", lambda route: held.append(route))  # never answered
        lesson = order[ROW][1]
        hash_before = page.evaluate("location.hash")
        page.locator("#complete").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Your progress was not saved", timeout=15_000)
        expect(alert).to_contain_text("did not answer in time")
        expect(page.get_by_role("button", name="Try again")).to_be_focused()
        assert len(held) == 2  # the client's one retry
        assert page.evaluate("location.hash") == hash_before  # no navigation
        expect(page.locator(f'.lesson-view[data-lesson="{lesson}"]')).to_be_visible()
        expect(page.locator(".completion-view")).to_have_count(0)
        shoot(page, "learner-save-failed-3g.png")

        page.unroute("**/complete")
        page.get_by_role("button", name="Try again").click()
        expect(page.locator(f'.completion-view[data-lesson="{lesson}"]')).to_be_visible()
        assert lock_screens(page) == []


@pytest.mark.slow
def test_with_the_cache_updater_always_failing_the_verified_path_shows_no_false_lock(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """Seed matrix "Cache updater NULL": every cache update fails (fault injection); the
    completions still succeed, say so (cacheUpdated false), and no lock screen shows."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    broken = {"PROGRESS_FAULTS": "cache_update_failure_rate=1"}
    with instance(pg_database, tmp_path, "a", **broken) as service, tab(browser) as page:
        order = course_order(service)
        completions: list[dict] = []
        page.on(
            "response",
            lambda r: completions.append(r.json()) if r.url.endswith("/complete") else None,
        )
        sign_in(page, service, learner)
        paths = complete_in_a_row(page, order)
        assert lock_screens(page) == []
        assert set(paths) == {"verified"}
        assert len(completions) == ROW
        assert all(c["success"] and c["dbUpdated"] for c in completions)
        assert not any(c["cacheUpdated"] for c in completions)  # the fault was real


class _OtherOrigin(SimpleHTTPRequestHandler):
    """A frontend on another origin: one empty page, nothing else."""

    def do_GET(self) -> None:
        body = b"<!doctype html><html><head><title>Another app</title></head><body></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def other_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OtherOrigin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


USE_THE_API = """async ([baseUrl, token]) => {
  const client = new ProgressClient({ baseUrl, token });
  const out = {};
  try {
    out.modules = (await client.curriculum()).length;
    const first = await client.complete("basics", "greetings");
    out.version = first.version;
    out.next = await client.access("basics", "introductions");
    out.locked = await client.access("basics", "colours");
    out.report = await client.reportLockScreen("basics", "colours");
    out.lastPath = client.lastPath;
  } catch (error) {
    out.error = { status: error.status, code: error.code, message: error.message };
  }
  return out;
}"""


@pytest.mark.slow
def test_a_page_on_an_allowed_origin_uses_the_api_and_another_origin_is_refused(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """CORS: with PROGRESS_CORS_ORIGINS naming the frontend's origin, a page there uses the
    API with a bearer token (preflights, the exposed X-Progress-Path); a page on any other
    origin gets no grant, so the browser refuses it the answers."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    with other_origin() as allowed, other_origin() as refused:
        cors = {"PROGRESS_CORS_ORIGINS": allowed}
        with instance(pg_database, tmp_path, "a", **cors) as service, tab(browser) as page:
            client_js = service.url + "/static/progress-client.js"

            page.goto(allowed + "/")
            page.add_script_tag(url=client_js)
            out = page.evaluate(USE_THE_API, [service.url, learner.token])
            assert "error" not in out, out
            assert out["modules"] >= 2
            assert out["next"]["accessible"] is True
            assert out["locked"]["accessible"] is False
            assert out["report"] == {"falseLock": False}
            assert out["lastPath"] == "verified"  # X-Progress-Path is exposed

            page.goto(refused + "/")
            page.add_script_tag(url=client_js)
            out = page.evaluate(USE_THE_API, [service.url, learner.token])
            assert out["error"]["status"] == 0
            assert out["error"]["code"] == "network_error"

            # The allowed page's completion landed (the refused one never got past its preflight).
            progress = requests.get(
                service.url + "/api/v1/progress", headers=learner.headers, timeout=5
            ).json()
            assert [c["lessonId"] for c in progress["completed"]] == ["greetings"]


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "390px"])
def test_every_view_of_the_learner_page_fits_and_is_reachable_by_keyboard(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
    viewport: dict,
):
    """Each view at desktop and phone width: nothing wider than the screen, the heading or
    the next control focused, and a screenshot of it (test-artifacts/screenshots/)."""
    learner = AuthActions(SECRET).learner()
    set_rollout(pg_app, 100)
    width = "desktop" if viewport is DESKTOP else "390"
    with instance(pg_database, tmp_path, "a") as service, tab(browser, viewport) as page:
        order = course_order(service)
        seen: dict[str, str] = {}

        def view(name: str) -> None:
            expect(page.locator("body")).to_have_attribute("data-view", name.split("-")[0])
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} is {overflow} px wider than the {width} screen"
            path = f"learner-{name}-{width}.png"
            shoot(page, path)
            seen[name] = path

        page.goto(service.url + "/")
        expect(page.get_by_label("Paste your access token")).to_be_visible()
        view("signin")

        sign_in(page, service, learner)
        view("map")

        page.locator(f'li[data-lesson="{order[0][1]}"] a').focus()
        page.keyboard.press("Enter")
        expect(page.locator(".lesson-view h2")).to_be_focused()
        view("lesson")

        page.route("**/complete", lambda route: route.abort())
        page.locator("#complete").click()
        expect(page.get_by_role("button", name="Try again")).to_be_focused(timeout=5_000)
        page.evaluate("document.activeElement.blur()")  # the screenshot without the focus ring
        view("lesson-save-failed")
        page.unroute("**/complete")

        page.get_by_role("button", name="Try again").click()
        expect(page.locator("#next")).to_be_focused()
        expect(page.locator(".completion-view")).to_contain_text("Next up:")
        view("done")

        # A lesson two steps ahead is really locked: the lock screen, focused on its heading.
        page.evaluate(f"location.hash = '#/lesson/{order[2][0]}/{order[2][1]}'")
        expect(page.locator(".lock-screen h2")).to_be_focused()
        expect(page.locator(".lock-screen")).to_have_attribute("data-false-lock", "false")
        view("lock")

        page.get_by_role("link", name="Back to the lesson map").click()
        expect(page.locator(f'li[data-lesson="{order[1][1]}"]')).to_have_attribute(
            "aria-current", "step"
        )
        view("map-after")
    assert set(seen) == {
        "signin",
        "map",
        "lesson",
        "lesson-save-failed",
        "done",
        "lock",
        "map-after",
    }


def visible_focus_ring(page: Page) -> str | None:
    """The focused element's description if it draws a focus outline, else None."""
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          if (!el || el === document.body) return null;
          const style = getComputedStyle(el);
          if (style.outlineStyle === "none" || parseFloat(style.outlineWidth) === 0) return null;
          return el.tagName + "#" + el.id + " " + el.textContent.slice(0, 40);
        }"""
    )


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "390px"])
def test_the_learner_pages_manners_signin_status_tabs_reload_and_admin_link(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
    viewport: dict,
):
    """Sign-in screen: a skip link first, no "Sign out" to see or reach, no admin link. Signed
    in: the status line is empty on the completion view and after navigating; a second tab
    opened by URL is the same learner; a reload leaves no focus ring; signing out in one tab
    signs out the other; only an admin's token shows the rollout link."""
    learner = AuthActions(SECRET).learner()
    admin = AuthActions(SECRET).learner(admin=True)
    set_rollout(pg_app, 100)
    with instance(pg_database, tmp_path, "a") as service:
        order = course_order(service)
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(10_000)
        try:
            page = context.new_page()
            page.goto(service.url + "/")
            expect(page.locator("body")).to_have_attribute("data-view", "signin")
            expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
            expect(page.get_by_role("link", name="Rollout")).to_be_hidden()
            # The first Tab reaches the skip link, which moves focus past the header.
            page.keyboard.press("Tab")
            expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("main")).to_be_focused()
            focused = []
            for _ in range(12):  # every stop of the sign-in screen, never "Sign out"
                page.keyboard.press("Tab")
                focused.append(page.evaluate("document.activeElement.id"))
            assert "sign-out" not in focused, focused
            assert "token" in focused, focused

            sign_in(page, service, learner)
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            expect(page.get_by_role("link", name="Rollout")).to_be_hidden()  # not an admin
            page.locator(f'li[data-lesson="{order[0][1]}"] a').click()
            complete_current_lesson(page, order[0][1])
            expect(page.locator(".completion-view h2")).to_contain_text("Lesson complete")
            expect(page.locator("#status")).to_have_text("")  # the heading says it already
            page.get_by_role("link", name="Back to the lesson map").click()
            expect(page.locator("body")).to_have_attribute("data-view", "map")
            expect(page.locator("#status")).to_have_text("")
            page.evaluate("location.hash = '#/lesson/nowhere/none'")
            expect(page.locator("#status")).to_have_text("There is no such lesson.")
            page.evaluate(f"location.hash = '#/lesson/{order[1][0]}/{order[1][1]}'")
            expect(page.locator(f'.lesson-view[data-lesson="{order[1][1]}"]')).to_be_visible()
            expect(page.locator("#status")).to_have_text("")  # cleared by the navigation

            # A second tab opened by URL: the same learner, on that lesson, progress kept.
            other = context.new_page()
            other.goto(f"{service.url}/#/lesson/{order[1][0]}/{order[1][1]}")
            expect(other.locator(f'.lesson-view[data-lesson="{order[1][1]}"]')).to_be_visible()
            expect(other.locator("#who")).to_have_text(f"Signed in as {learner.email}.")
            expect(other.get_by_role("button", name="Sign out")).to_be_visible()
            other.get_by_role("link", name="Back to the lesson map").click()
            expect(other.locator(f'li[data-lesson="{order[0][1]}"]')).to_have_attribute(
                "data-state", "complete"
            )

            # A reload on a lesson: the lesson again, and no focus ring anywhere.
            page.reload()
            expect(page.locator(f'.lesson-view[data-lesson="{order[1][1]}"]')).to_be_visible()
            assert visible_focus_ring(page) is None
            shoot(page, f"learner-after-reload-{'desktop' if viewport is DESKTOP else '390'}.png")

            # Signing out in one tab signs out the other: no tab shows a learner it can't act for.
            other.get_by_role("button", name="Sign out").click()
            expect(page.locator("body")).to_have_attribute("data-view", "signin")
            expect(page.locator("#status")).to_have_text("Signed out in another tab.")
            expect(page.get_by_role("button", name="Sign out")).to_be_hidden()

            # Signing in as an admin in one tab: both follow, and both show the rollout link.
            sign_in(page, service, admin)
            expect(page.get_by_role("link", name="Rollout")).to_be_visible()
            expect(other.locator("#who")).to_have_text(f"Signed in as {admin.email}.")
            expect(other.get_by_role("link", name="Rollout")).to_be_visible()
        finally:
            context.close()


@pytest.mark.slow
def test_start_as_a_new_learner_never_shows_over_a_learner_this_browser_keeps(
    pg_app: Flask,
    pg_database: str,
    tmp_path: Path,
    browser: Browser,
):
    """Embedded demo (development): a tab started as a new learner completes a lesson; a
    second tab opened by URL is that learner with that progress, and offers no "Start as a new
    learner"; a tab still on the sign-in form follows the sign-in instead of starting anew."""
    set_rollout(pg_app, 100)
    # The button signs the service's own HS256 tokens: with the suite's tokens from a JWKS,
    # the service accepts them beside the provider's, as a project moving off its secret does.
    own_tokens = {"PROGRESS_JWT_ALGORITHMS": "ES256,RS256,HS256"} if TOKEN_MODE == "jwks" else {}
    with instance(
        pg_database, tmp_path, "dev", workers=1, PROGRESS_ENV="development", **own_tokens
    ) as service:
        order = course_order(service)
        context = browser.new_context(viewport=PHONE)
        context.set_default_timeout(10_000)
        try:
            waiting = context.new_page()  # opened before anyone signed in: the sign-in form
            waiting.goto(service.url + "/")
            expect(waiting.get_by_role("button", name="Start as a new learner")).to_be_visible()

            first = context.new_page()
            first.goto(service.url + "/")
            first.get_by_role("button", name="Start as a new learner").click()
            expect(first.locator("#who")).to_contain_text("Signed in as learner-")
            who = first.locator("#who").text_content()
            first.locator(f'li[data-lesson="{order[0][1]}"] a').click()
            complete_current_lesson(first, order[0][1])

            # The tab that showed the form follows: no new learner can be started over it.
            expect(waiting.locator("#who")).to_have_text(who)
            expect(waiting.get_by_role("button", name="Start as a new learner")).to_be_hidden()
            expect(waiting.locator(f'li[data-lesson="{order[0][1]}"]')).to_have_attribute(
                "data-state", "complete"
            )

            second = context.new_page()
            second.goto(service.url + "/")
            expect(second.locator("#who")).to_have_text(who)
            expect(second.get_by_role("button", name="Start as a new learner")).to_be_hidden()
            expect(second.locator(f'li[data-lesson="{order[0][1]}"]')).to_have_attribute(
                "data-state", "complete"
            )
        finally:
            context.close()
