"""The pictures in docs/demo/: the rollout page and the learner page while `make demo` runs.

Start the demo first (`make demo PORT=8733 > demo.log`), then, within two minutes of the
learners starting:

    .venv/bin/python -m devtools.demo_screenshots --log demo.log --url http://127.0.0.1:8733

It reads the tokens the demo printed, signs the rollout page in with the admin token and the
learner page with the learner token, and takes first-screen and section pictures at 1280x800
and 390x844 with Playwright driving Debian's Chromium (never `playwright install`). Each PNG
is reduced to 256 colours so it stays small. It prints what it saw (the guard's status and
estimate, the figures) so a missing part is noticed, not pictured as if it were there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from harness.browser import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MARGIN = 16  # px around a section's picture


def tokens_from(log: Path) -> dict[str, str]:
    """The demo's `flask users demo` lines: `admin    email  id` then `token: ...`."""
    found: dict[str, str] = {}
    role = None
    for line in log.read_text().splitlines():
        words = line.split()
        if words and words[0] in {"admin", "learner"}:
            role = words[0]
        elif role and words[:1] == ["token:"]:
            found[role] = words[1]
            role = None
    missing = {"admin", "learner"} - found.keys()
    if missing:
        raise SystemExit(f"{log}: no token for {', '.join(sorted(missing))} yet")
    return found


def small(path: Path) -> None:
    """256 colours: a page's flat colours survive, the file shrinks several times."""
    with Image.open(path) as picture:
        reduced = picture.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)
    print(f"  {path}  {path.stat().st_size // 1024} KB", flush=True)


def shoot(page: Page, path: Path, *, full_page: bool = False, selector: str | None = None) -> None:
    """The first screen (from the top), the whole page, or one section with a margin."""
    if selector:
        box = page.locator(selector).bounding_box()
        assert box, f"{selector} is not on the page"
        scroll = page.evaluate("[window.scrollX, window.scrollY]")
        clip = {
            "x": max(box["x"] + scroll[0] - MARGIN, 0),
            "y": max(box["y"] + scroll[1] - MARGIN, 0),
            "width": box["width"] + 2 * MARGIN,
            "height": box["height"] + 2 * MARGIN,
        }
        page.screenshot(path=path, clip=clip, full_page=True)
    else:
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(200)
        page.screenshot(path=path, full_page=full_page)
    small(path)


def signed_in_rollout(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/admin/rollout")
    page.fill("#token", token)
    page.get_by_role("button", name="Use token").click()
    page.wait_for_selector("body[data-charts-ready]", timeout=30_000)
    try:
        page.wait_for_selector("#guard-eta:not([hidden])", timeout=20_000)
    except PlaywrightTimeout:  # said, not pictured as if it were there
        print("  the estimate (#guard-eta) did not show within 20 s", flush=True)
    page.wait_for_timeout(500)  # the charts finish drawing


def report(page: Page, started: float) -> None:
    """What a person sees, in words: so the report says what the pictures show."""
    print(f"  at {time.time() - started:.0f} s after the learners started:", flush=True)
    for selector in ("#percentage", "#guard-status", "#guard-eta", "#guard-latest"):
        text = page.locator(selector).inner_text().strip().replace("\n", " | ")
        print(f"    {selector}: {text[:400]}", flush=True)
    print(f"    earlier evaluations: {page.locator('#guard-earlier > li').count()}", flush=True)
    rows = page.locator("#figures tbody tr").all_inner_texts()
    for row in rows:
        print(f"    figure: {row.strip()}".replace("\t", " | "), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="the demo's output")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "demo")
    parser.add_argument(
        "--started",
        type=float,
        default=None,
        help="epoch seconds the learners started (default: the log file's first write)",
    )
    options = parser.parse_args()
    tokens = tokens_from(options.log)
    started = options.started or options.log.stat().st_ctime
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    url = options.url.rstrip("/")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=DESKTOP)
            page = context.new_page()
            signed_in_rollout(page, url, tokens["admin"])
            report(page, started)
            shoot(page, out / "rollout-desktop.png")
            shoot(page, out / "rollout-desktop-full.png", full_page=True)
            shoot(page, out / "rollout-charts.png", selector="#charts-section")
            shoot(page, out / "rollout-evaluations.png", selector="#guard")
            shoot(page, out / "rollout-figures.png", selector="section[aria-labelledby=figures-h]")
            page.set_viewport_size(PHONE)
            page.wait_for_timeout(500)  # the charts redraw to the new width
            shoot(page, out / "rollout-phone.png")
            shoot(page, out / "rollout-phone-full.png", full_page=True)
            context.close()

            for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
                context = browser.new_context(viewport=viewport)
                page = context.new_page()
                page.goto(f"{url}/")
                page.fill("#token", tokens["learner"])
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_selector("#map:not([hidden])")
                page.wait_for_timeout(500)
                shoot(page, out / f"learner-{name}.png")
                context.close()
        finally:
            browser.close()
    print(f"done at {time.time() - started:.0f} s after the learners started", flush=True)


if __name__ == "__main__":
    main()
