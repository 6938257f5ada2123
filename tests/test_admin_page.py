"""The admin rollout page for product, in Debian's Chromium against the real service: at 0%,
at 10% with traffic on both paths (charts from a real Prometheus, a confirmation before
skipping a stage), after a real guard rollback, and the page as people read it (token errors,
the first two screens, the latest evaluation in full, runs of earlier ones, the bound in
points, a one-step roll back, a reason to advance). Every state fits a 390 px phone without
sideways scrolling. Screenshots go to test-artifacts/screenshots/ (desktop and phone)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect

from harness.prometheus import prometheus_installed
from harness.service import running_service
from progress import guard, rollout
from progress.extensions import db
from progress.models import GuardEvaluation, RolloutChange, utcnow
from progress.paths import path_for_learner

from .support.admin_page import open_admin_page
from .support.apps import SECRET, set_rollout
from .support.availability import unavailable
from .support.browser import SCREENSHOTS
from .support.guard import guarded_services
from .support.learners import AuthActions
from .support.service import service_env
from .support.waiting import wait_until

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BASE = "/api/v1/modules/basics/lessons/"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    if not prometheus_installed():  # every test here charts from a real Prometheus
        unavailable("prometheus is not installed (apt-get install -y prometheus)")
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The page runs under the service's Content-Security-Policy: nothing it loads is refused.
    page.on(
        "console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None
    )
    yield page
    context.close()
    assert not errors, f"errors on the page: {errors}"


def screenshots(page: Page, name: str) -> None:
    """Desktop and phone; at 390 px nothing may widen the page beyond the screen."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)  # the charts redraw to the new width
    widest = page.evaluate("document.documentElement.scrollWidth")
    assert widest <= PHONE["width"], f"{name}: the page is {widest} px wide at 390 px"
    page.screenshot(path=SCREENSHOTS / f"{name}-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def charts_loaded(page: Page) -> None:
    page.evaluate("delete document.body.dataset.chartsReady")
    page.get_by_role("button", name="This stage").click()
    page.wait_for_selector("body[data-charts-ready]")


def two_instances(tmp_path, pg_database):
    """Prometheus and two gunicorn instances it scrapes (their charts come from it). The
    guard runs only when the test runs it. The faults let one instance keep an old copy."""
    return guarded_services(
        tmp_path,
        pg_database,
        instances=2,
        PROGRESS_GUARD_INTERVAL_S="0",
        PROGRESS_GUARD_MIN_WINDOW_S="60",
        PROGRESS_FLAG_REFRESH_S="1",
        PROGRESS_FAULTS="disable_double_check=1,drop_notifications=1",
        # One machine's clock: a lock read after the acknowledgement is false however soon.
        PROGRESS_CLOCK_SKEW_MS="0",
    )


def scraped_twice(prometheus) -> None:
    """rate() and increase() need two samples after the traffic."""
    for _ in range(2):
        prometheus.wait_for_scrape("lesson-progress", after=time.time() + 1.2)


def learners_by_path(app, wanted: dict[str, int]) -> dict[str, list]:
    chosen: dict[str, list] = {path: [] for path in wanted}
    with app.app_context():
        while any(len(chosen[p]) < n for p, n in wanted.items()):
            learner = AuthActions(SECRET).learner()
            path = path_for_learner(learner.id)
            if path in wanted and len(chosen[path]) < wanted[path]:
                chosen[path].append(learner)
    return chosen


def walk(url: str, learner, lessons=("greetings", "introductions", "numbers-1-10")) -> None:
    session = requests.Session()
    session.headers.update(learner.headers)
    for lesson in lessons:
        assert session.get(url + BASE + lesson + "/access", timeout=10).status_code == 200
        assert session.post(url + BASE + lesson + "/complete", timeout=10).json()["success"]


def show_a_false_lock(x, y, learner) -> None:
    """X caches lesson 2 as locked; the learner completes lesson 1 on Y; X never hears of it
    (notifications dropped) and, with the double check off, says "locked"; the learner's
    client reports the lock screen it showed."""
    h = learner.headers
    assert (
        requests.get(x.url + BASE + "introductions/access", headers=h, timeout=10).json()[
            "accessible"
        ]
        is False
    )
    assert requests.post(y.url + BASE + "greetings/complete", headers=h, timeout=10).ok
    answer = requests.get(x.url + BASE + "introductions/access", headers=h, timeout=10).json()
    assert answer["accessible"] is False, "the faults did not make a false lock screen"
    body = {"moduleId": "basics", "lessonId": "introductions"}
    if "lockReceipt" in answer:
        body["lockReceipt"] = answer["lockReceipt"]
    report = requests.post(x.url + "/api/v1/events/lock-screen", headers=h, json=body, timeout=10)
    assert report.json() == {"falseLock": True}


@pytest.mark.slow
def test_the_admin_page_at_0_then_10_percent_then_after_a_guard_rollback(
    page, pg_app, pg_database, tmp_path, make_pg_app
):
    set_rollout(pg_app, 0)  # the flag exists at 0%, as on a fresh install; nothing changed yet
    with pg_app.app_context():
        db.session.execute(sa.delete(RolloutChange))
        # A sample far beyond this test's traffic: only a false lock makes the guard act.
        guard.update_plan({"min_stage_seconds": 600, "min_completions": 500, "enabled": True}, "t")
    admin = AuthActions(SECRET).learner(admin=True)
    with two_instances(tmp_path, pg_database) as (prometheus, (x, y)):
        # -- 0%: nothing has happened yet, and the page says so --------------------------------
        open_admin_page(page, x.url, admin.token)
        expect(page.locator("#percentage")).to_have_text("0")
        expect(page.locator("#stage-now")).to_contain_text("Stage 1 of 3 (0%)")
        expect(page.locator("#history tbody")).to_have_text(
            "No change yet: every learner is on the legacy path."
        )
        expect(page.locator("#guard-latest")).to_have_text("No evaluation yet.")
        charts_loaded(page)
        expect(page.locator("#charts-source")).to_contain_text("From Prometheus")
        expect(page.locator("#timeline li")).to_have_count(1)
        screenshots(page, "admin-rollout-0")

        # -- a jump of two stages asks first, saying how many learners move --------------------
        learners = learners_by_path(pg_app, {"legacy": 6, "verified": 0})["legacy"]
        for learner in learners:  # known to the service: they count among the learners moving
            requests.get(x.url + "/api/v1/progress", headers=learner.headers, timeout=10)
        page.get_by_label("Reason (kept in the history)").fill("all at once?")
        page.get_by_role("button", name="100%", exact=True).click()
        dialog = page.locator("#confirm-move")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("skips the 10% stage")
        expect(dialog).to_contain_text(" of 7 known learners to the verified path")  # + admin
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#message")).to_have_text("Not changed.")
        expect(page.locator("#percentage")).to_have_text("0")

        # -- 10% with traffic on both paths ----------------------------------------------------
        page.get_by_role("button", name="10%", exact=True).click()  # one stage: no question
        expect(page.locator("#percentage")).to_have_text("10")
        expect(page.locator("#stage-now")).to_contain_text("Stage 2 of 3 (10%) since")
        with pg_app.app_context():
            assert rollout.rollout_state().percentage == 10
        traffic = learners_by_path(pg_app, {"legacy": 6, "verified": 3})
        probe = traffic["verified"][0].headers
        for instance in (x, y):  # each instance's flag refresh (1 s) brings 10% to it
            wait_until(
                lambda url=instance.url: (
                    requests.get(
                        url + BASE + "greetings/access", headers=probe, timeout=10
                    ).headers["X-Progress-Path"]
                    == "verified"
                ),
                15,
                "10% to reach each instance",
            )
        for group in traffic.values():
            for learner in group:
                walk(x.url, learner)
        scraped_twice(prometheus)
        page.reload()  # every figure on the page as product would see it now
        expect(page.locator("#percentage")).to_have_text("10")
        charts_loaded(page)
        expect(page.locator("#charts figure canvas")).to_have_count(4)
        expect(page.locator("#marks")).to_contain_text("0% → 10%")
        expect(page.locator("#timeline li")).to_have_count(2)
        screenshots(page, "admin-rollout-10")

        # -- a false lock screen on the verified path: the guard rolls back --------------------
        victim = learners_by_path(pg_app, {"verified": 1})["verified"][0]
        show_a_false_lock(x, y, victim)
        scraped_twice(prometheus)
        judge = make_pg_app(
            PROMETHEUS_URL=prometheus.url,
            PROGRESS_GUARD_INTERVAL_S=0,
            PROGRESS_GUARD_MIN_WINDOW_S=3,
        )
        with judge.app_context():
            run = guard.evaluate()
        assert (run.evaluation.decision, run.evaluation.acted) == ("rollback", True)
        page.reload()
        expect(page.locator("#percentage")).to_have_text("0")
        expect(page.locator("#guard-status")).to_contain_text("paused")
        charts_loaded(page)
        expect(page.locator("#marks")).to_contain_text("guard rollback")
        expect(page.locator("#timeline li").last).to_contain_text("by guard")
        expect(page.locator("#guard-latest .decision")).to_contain_text("rollback (acted)")
        expect(page.locator("#guard-earlier .run")).to_have_count(0)
        screenshots(page, "admin-rollout-after-rollback")


@pytest.mark.slow
def test_without_prometheus_the_charts_and_the_guards_bound_come_from_its_evaluations(
    page, pg_app, pg_database, tmp_path
):
    """No PROMETHEUS_URL: the page draws the guard's kept evaluations, and a check that
    carries a sequential test gets a chart of its bound closing in on the margin."""
    set_rollout(pg_app, 10)
    looks = []
    for minutes_ago, upper in ((6, 0.03), (4, 0.012), (2, 0.004)):
        checks = [
            {"name": "false_lock_screens", "status": "pass", "detail": "", "threshold": {},
             "figures": {"shown": 0}},
            {"name": "completion_success_rate", "status": "pass", "detail": "", "threshold": {},
             "figures": {"legacy": 0.999, "verified": 0.9995},
             "test": {"method": "mSPRT", "counting": "errors", "statistic": -0.0005,
                      "lower": -upper, "upper": upper, "margin": 0.005, "confidence": 0.95,
                      "evidence": 500, "verdict": "inconclusive"}},
        ]  # fmt: skip
        looks.append(
            GuardEvaluation(
                at=utcnow() - timedelta(minutes=minutes_ago), flag="verified-progress-path",
                stage=1, percentage=10, window_seconds=60 * (7 - minutes_ago), checks=checks,
                decision="hold", reason="waiting for evidence", acted=False, instance="tests",
            )
        )  # fmt: skip
    with pg_app.app_context():
        db.session.add_all(looks)
        db.session.commit()
    admin = AuthActions(SECRET).learner(admin=True)
    env = service_env(pg_database, tmp_path / "metrics", PROGRESS_GUARD_INTERVAL_S="0")
    with running_service(env, tmp_path, workers=1) as service:
        open_admin_page(page, service.url, admin.token)
        page.get_by_role("button", name="Last day").click()
        page.wait_for_selector("body[data-charts-ready='day']")
        expect(page.locator("#charts-source")).to_contain_text("rollout guard's evaluations")
        bound = page.locator('figure[data-bound="completion_success_rate"]')
        expect(bound.locator("canvas")).to_have_count(1)
        expect(bound).to_contain_text("Guard's bound: completion success rate")
        expect(page.locator('figure[data-figure="completionSuccessRate"] canvas')).to_have_count(1)
        screenshots(page, "admin-rollout-guard-bound")


def kept_evaluation(minutes_ago: float, decision: str, reason: str, **figures) -> GuardEvaluation:
    """A kept guard evaluation at stage 2 (10%), its counts as increase() gives them (with
    decimals), the success-rate test inconclusive and the latency check without data."""
    checks = [
        {"name": "false_lock_screens", "status": "pass", "threshold": {"maxShown": 0},
         "detail": "no false lock screen shown on the verified path in 600 s",
         "figures": {"shown": 0.0, "caughtByDoubleCheck": 2.4}},
        {"name": "sample_size", "status": "pass", "detail": "enough data on each path in 600 s",
         "threshold": {"minCompletions": 100, "minAccessChecks": 100},
         "figures": {"verifiedCompletions": 412.37, "legacyCompletions": 3711.6}},
        {"name": "completion_success_rate", "status": "inconclusive",
         "detail": "verified success rate 99.9% vs 99.8%: not yet sure it is within the margin",
         "threshold": {"margin": 0.005, "confidence": 0.99},
         "figures": {"verified": 0.999, "legacy": 0.998, "verifiedErrors": 0.4,
                     "legacyErrors": 7.42, **figures},
         "test": {"method": "mSPRT", "counting": "errors", "statistic": -0.001,
                  "lower": -0.02 * (minutes_ago + 1) / 10, "upper": 0.02 * (minutes_ago + 1) / 10,
                  "margin": 0.005, "confidence": 0.99, "evidence": 4000,
                  "verdict": "inconclusive"}},
        {"name": "cache_update_latency", "status": "no_data", "threshold": {"budgetSeconds": 0.5},
         "detail": "no data: no cache update on the verified path", "figures": {}},
    ]  # fmt: skip
    return GuardEvaluation(
        at=utcnow() - timedelta(minutes=minutes_ago), flag="verified-progress-path", stage=1,
        percentage=10, window_seconds=600, checks=checks, decision=decision, reason=reason,
        acted=False, instance="tests",
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "390px"])
def test_the_rollout_page_for_people(page, pg_app, pg_database, tmp_path, viewport):
    """A wrong token's error sits by the token field and a good one clears it; the status and
    the change controls fit the first two screens; the latest evaluation is in full with only
    the unmet requirements (the stage's minimum time among them), whole counts and figures
    in view; earlier ones are runs of one decision, collapsed; the bound chart is in points
    with its margin drawn well above zero; "Roll back to 0%" is one step with a reason, and
    advancing asks for a reason too."""
    set_rollout(pg_app, 10)
    with pg_app.app_context():
        guard.update_plan({"min_stage_seconds": 7200, "enabled": True}, "t")
        db.session.add_all(
            [
                kept_evaluation(14, "hold", "too little data in 600 s"),
                kept_evaluation(12, "hold", "too little data in 600 s"),
                kept_evaluation(10, "pause", "pausing at 10%: a test pause"),
                kept_evaluation(8, "hold", "waiting for the success rate test"),
                kept_evaluation(6, "hold", "waiting for the success rate test"),
                kept_evaluation(4, "hold", "waiting for the success rate test"),
            ]
        )
        db.session.commit()
    learner = AuthActions(SECRET).learner()
    admin = AuthActions(SECRET).learner(admin=True)
    env = service_env(pg_database, tmp_path / "metrics", PROGRESS_GUARD_INTERVAL_S="0")
    page.set_viewport_size(viewport)
    with running_service(env, tmp_path, workers=1) as service:
        page.goto(service.url + "/admin/rollout")
        token = page.get_by_label("Bearer token with the admin role")
        token.fill(learner.token)
        page.get_by_role("button", name="Use token").click()
        error = page.locator("#token-error")
        expect(error).to_contain_text("This token has no admin role")
        field, shown = token.bounding_box(), error.bounding_box()
        assert 0 <= shown["y"] - field["y"] < 120, "the token's error is not by its field"
        token.fill(admin.token)
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#percentage")).to_have_text("10")
        expect(error).to_be_hidden()
        expect(error).to_have_text("")

        # Within the first two screens: where it stands, the guard, and every change control.
        two_screens = 2 * viewport["height"]
        for selector in ("#percentage", "#guard-status", "#rollback", "#set-custom"):
            box = page.locator(selector).bounding_box()
            assert box is not None, f"{selector} is not shown"
            assert box["y"] + box["height"] <= two_screens, f"{selector} at {box}"

        # The latest evaluation in full: one why, only what is not met, figures in view.
        latest = page.locator("#guard-latest")
        expect(latest).to_contain_text("hold")
        expect(latest.locator(".why")).to_have_count(1)
        unmet = latest.locator(".unmet > li")
        expect(unmet).to_have_count(3)  # success rate, latency (no data), the stage's time
        expect(unmet.nth(0)).to_contain_text("completion success rate")
        expect(unmet.nth(0)).to_contain_text("legacy errors 7 ")  # 7.42 extrapolated: whole
        expect(unmet.nth(0)).to_contain_text("margin 0.5 points")
        expect(unmet.nth(2)).to_contain_text("minimum time at this stage")
        expect(unmet.nth(2)).to_contain_text("of 2 h run")
        expect(latest.locator(".unmet")).not_to_contain_text("sample size")  # met
        expect(latest.locator("details.met summary")).to_contain_text("sample size")
        expect(latest).not_to_contain_text("412.37")
        # Kept without an estimate (as before the guard made them): it says it can't tell, and why.
        expect(page.locator("#guard-eta")).to_contain_text("kept before the guard made estimates")

        # Earlier evaluations: runs of the same decision, newest first, collapsed.
        runs = page.locator("#guard-earlier .run")
        expect(runs).to_have_count(3)
        expect(runs.nth(0)).to_contain_text("hold (2 looks)")
        expect(runs.nth(1)).to_contain_text("pause")
        expect(runs.nth(2)).to_contain_text("hold (2 looks)")
        expect(runs.nth(0).locator(".looks")).to_be_hidden()
        expect(runs.nth(0).locator(".why")).to_have_count(1)

        # The bound chart: in points of success rate, its margin drawn well above zero.
        page.get_by_role("button", name="Last day").click()
        page.wait_for_selector("body[data-charts-ready='day']")
        bound = page.locator('figure[data-bound="completion_success_rate"]')
        expect(bound).to_contain_text("in points of success rate")
        assert int(bound.get_attribute("data-margin-above-zero-px")) >= 20
        screenshots(page, "admin-rollout-people")  # both widths, whichever this run's
        page.set_viewport_size(viewport)

        # Roll back to 0%: one step with a reason, whatever the stage; no "skip" question.
        page.get_by_role("button", name="Roll back to 0%").click()
        expect(page.locator("#message")).to_have_text("Say why: the reason is kept in the history.")
        expect(page.locator("#reason")).to_be_focused()
        page.locator("#reason").fill("errors on the verified path")
        page.get_by_role("button", name="Roll back to 0%").click()
        expect(page.locator("#percentage")).to_have_text("0")
        expect(page.locator("#confirm-move")).to_be_hidden()
        expect(page.locator("#message")).to_have_text(
            "Rolled back: every learner is on the legacy path (0%)."
        )
        expect(page.locator("#history tbody tr").first).to_contain_text("10% → 0%")
        expect(page.get_by_role("button", name="Roll back to 0%")).to_be_hidden()

        # Advancing asks for a reason, and sends it.
        advance = page.get_by_role("button", name="Advance to 10%")
        advance.click()
        expect(page.locator("#message")).to_have_text("Say why: the reason is kept in the history.")
        expect(page.locator("#percentage")).to_have_text("0")
        page.locator("#reason").fill("the fix is ready")
        advance.click()
        expect(page.locator("#percentage")).to_have_text("10")
    with pg_app.app_context():
        assert rollout.rollout_state().percentage == 10


ETA = {
    "seconds": 10800, "reason": None, "limitedBy": "completion_success_rate",
    "ratePerMinute": 22.0, "needed": 4300,
    "text": "decides in about 3 h, at 22 verified completions a minute; needs about 4,300 more",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "390px"])
def test_the_guards_estimate_status_and_margin_costs_on_the_page(
    page, pg_app, pg_database, tmp_path, viewport
):
    """The estimate in the "Now" card and in the latest evaluation, within the first two
    screens; why the guard cannot run (its schedule is off here); what each margin costs, the
    plan's own marked, in the plan form."""
    set_rollout(pg_app, 10)
    with pg_app.app_context():
        guard.update_plan({"enabled": True, "success_rate_margin": 0.005}, "t")
        looks = [kept_evaluation(6, "hold", "waiting"), kept_evaluation(2, "hold", "waiting")]
        for look in looks:
            look.eta = ETA
        db.session.add_all(looks)
        db.session.commit()
    admin = AuthActions(SECRET).learner(admin=True)
    env = service_env(pg_database, tmp_path / "metrics", PROGRESS_GUARD_INTERVAL_S="0")
    page.set_viewport_size(viewport)
    with running_service(env, tmp_path, workers=1) as service:
        open_admin_page(page, service.url, admin.token)
        eta = page.locator("#guard-eta")
        expect(eta).to_have_text("When: " + ETA["text"])
        box = eta.bounding_box()
        assert box["y"] + box["height"] <= 2 * viewport["height"], f"the estimate at {box}"
        expect(page.locator("#guard-latest .eta")).to_have_text("When: " + ETA["text"])
        expect(page.locator("#guard-status")).to_contain_text("on, but it cannot run")
        expect(page.locator("#guard-cannot-text")).to_contain_text("The guard cannot run: ")
        expect(page.locator("#guard-cannot-text")).to_contain_text("PROGRESS_GUARD_INTERVAL_S")
        page.get_by_text("Plan: stages, evidence, what a failure does").click()
        costs = page.locator("#guard-margin-costs-list li")
        expect(costs).to_have_count(4)  # 0.1, 0.2, 0.5 (the plan's) and 1 point
        expect(costs.filter(has_text="(the plan's)")).to_have_count(1)
        screenshots(page, "admin-rollout-estimate")  # both widths, whichever this run's


@pytest.mark.slow
def test_the_watch_a_note_going_back_and_the_timeouts_on_the_page(
    page, pg_app, pg_database, tmp_path
):
    """At 100% with the watch paused by a regression: the "Now" card shows the watch, the
    baseline beside the current figures and "Back to 10%"; a note typed on the latest
    evaluation is kept and shown; the timeouts card reads the instance's histograms and
    shows a line to deploy for each setting. Nothing widens the page beyond 390 px."""
    set_rollout(pg_app, 100)
    with pg_app.app_context():
        plan = guard.update_plan({"enabled": True, "paused": True}, "t")
        plan = db.session.merge(plan)
        plan.baseline = {
            "start": (utcnow() - timedelta(days=7, hours=1)).isoformat(),
            "end": (utcnow() - timedelta(hours=1)).isoformat(),
            "source": "prometheus",
            "completions": 100_000.0,
            "errors": 500.0,
            "buckets": {"0.25": 99_000.0, "+Inf": 100_000.0},
            "days": [],
        }
        look = kept_evaluation(0, "pause", "pausing the watch at 100%: verified worse")
        look.stage, look.percentage = 2, 100
        db.session.add(look)
        db.session.commit()
    admin = AuthActions(SECRET).learner(admin=True)
    env = service_env(pg_database, tmp_path / "metrics", PROGRESS_GUARD_INTERVAL_S="0")
    with running_service(env, tmp_path, workers=1) as service:
        open_admin_page(page, service.url, admin.token)
        expect(page.locator("#watch-text")).to_contain_text("The watch is paused")
        expect(page.locator("#watch-base-rate")).to_have_text("99.5%")
        expect(page.locator("#watch-now-rate")).to_have_text("99.9%")
        expect(page.locator("#watch-baseline")).to_contain_text("7 days before the move")
        expect(page.get_by_role("button", name="Back to 10%")).to_be_visible()
        page.locator("#latest-note").fill("the 14:00 deploy; rolled back")
        page.get_by_role("button", name="Keep the note").click()
        expect(page.locator("#guard-latest .note")).to_contain_text("the 14:00 deploy; rolled back")
        page.get_by_role("button", name="Read the histograms").click()
        expect(page.locator("#timeouts-list article")).to_have_count(5)
        expect(page.locator("#timeouts-list")).to_contain_text("PROGRESS_DB_TIMEOUT_MS=")
        screenshots(page, "admin-rollout-watch")
