"""Debian's Chromium (never a downloaded one) driven by Playwright for Python."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from harness.browser import CHROMIUM, CHROMIUM_ARGS
from harness.processes import REPO

from .availability import unavailable

try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError:  # only a dev dependency: skip locally, fail under CI
    sync_playwright = None
else:
    # How long expect() waits for the page: a bound, not a figure (a page answers in well under
    # a second on a quiet machine); Playwright's default 5 s leaves a busy machine little room.
    expect.set_options(timeout=15_000)

SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium, closed on the way out; skipped (failed under CI) without it."""
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
