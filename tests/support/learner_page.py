"""The learner page driven in a browser: signing in, completing lessons in a row by
keyboard, and the lock screens it showed (counted as they appear)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from flask import Flask
from playwright.sync_api import Page, expect

from harness.service import RunningService, running_service

from .apps import set_rollout
from .learners import Learner
from .service import service_env

ROW = 5  # lessons completed in a row

# Counts every lock screen that appears, whatever happens to it afterwards.
WATCH_LOCK_SCREENS = """
window.__lockScreens = [];
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const found = node.matches(".lock-screen") ? [node] : node.querySelectorAll(".lock-screen");
      found.forEach((screen) => window.__lockScreens.push(screen.dataset.lesson || "?"));
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


@contextlib.contextmanager
def serve(
    pg_app: Flask, pg_database: str, tmp_path: Path, rollout: int, **env: str
) -> Iterator[RunningService]:
    """gunicorn, 2 workers, on the session's test database (migrated and seeded by pg_app,
    emptied after each test), with the rollout set before it starts."""
    set_rollout(pg_app, rollout)
    settings = service_env(
        pg_database,
        tmp_path / "metrics",
        **{
            "PROGRESS_FAULTS": "",
            "PROGRESS_GUARD_INTERVAL_S": "0",  # only the test moves the rollout
            **env,
        },
    )
    with running_service(settings, tmp_path, workers=2) as service:
        wait_until_both_workers_listen(service)
        yield service


def wait_until_both_workers_listen(service: RunningService) -> None:
    """Each worker clears its cache when its LISTEN connection first connects; let that
    happen before the browser fills the caches. New connections spread over the workers."""
    deadline = time.monotonic() + 10
    in_a_row = 0
    while in_a_row < 8:
        checks = requests.get(service.url + "/readyz", timeout=5).json()["checks"]
        in_a_row = in_a_row + 1 if checks.get("invalidation", "").endswith("(listening)") else 0
        assert time.monotonic() < deadline, f"workers not listening: {checks}"
        time.sleep(0.05 if in_a_row else 0.2)


def course_order(service: RunningService) -> list[tuple[str, str]]:
    modules = requests.get(service.url + "/api/v1/curriculum", timeout=5).json()["modules"]
    return [(m["id"], lesson["id"]) for m in modules for lesson in m["lessons"]]


def sign_in(page: Page, service: RunningService, learner: Learner) -> None:
    """Open the page and sign in; a tab of a browser that keeps this learner's token (another
    tab signed in) is signed in already."""
    page.goto(service.url + "/")
    page.wait_for_selector("body[data-view]")
    if page.locator("body").get_attribute("data-view") != "signin":
        expect(page.locator("#who")).to_have_text(f"Signed in as {learner.email}.")
        return
    page.get_by_label("Paste your access token").fill(learner.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#map li.lesson").first).to_be_visible()


def lock_screens(page: Page) -> list[str]:
    return page.evaluate("window.__lockScreens")


def served_path(page: Page) -> str | None:
    return page.evaluate("document.body.dataset.progressPath || null")


def complete_in_a_row(page: Page, order: list[tuple[str, str]]) -> list[str]:
    """From the map: open the first lesson, then Mark complete → (completion view) Continue,
    ROW times, by keyboard and as fast as the page allows. Stops at the first lock screen.
    Returns the path that served each step."""
    paths = []
    page.locator(f'li[data-lesson="{order[0][1]}"] a').click()
    for (_, lesson), (_, following) in itertools.pairwise(order[: ROW + 1]):
        view = page.locator(f'.lesson-view[data-lesson="{lesson}"]')
        expect(view.locator("h2")).to_be_focused()  # focus follows navigation
        page.keyboard.press("Tab")
        expect(page.locator("#complete")).to_be_focused()
        page.keyboard.press("Enter")
        # The completion view (the seed's LessonRunner) before the learner moves on.
        expect(page.locator(f'.completion-view[data-lesson="{lesson}"]')).to_be_visible()
        paths.append(served_path(page))
        expect(page.locator("#next")).to_be_focused()
        page.keyboard.press("Enter")
        arrived = page.locator(
            f'.lesson-view[data-lesson="{following}"], .lock-screen[data-lesson="{following}"]'
        )
        expect(arrived).to_be_visible()
        paths.append(served_path(page))
        if page.locator(".lock-screen").count():
            break
    return paths
