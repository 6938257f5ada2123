"""The admin page's data: the two paths over time from the guard's kept evaluations (no
PROMETHEUS_URL), rollout changes and guard decisions as markers, the stage timeline, and how
many learners a move sends to the other path (as the flag itself would)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

from progress import rollout
from progress.extensions import db
from progress.models import GuardEvaluation
from progress.paths import path_for_learner

from .support.availability import unavailable
from .support.guard import kept_evaluation

REPO = Path(__file__).resolve().parent.parent
CHARTS = "/api/v1/admin/rollout/charts"
IMPACT = "/api/v1/admin/rollout/impact"


def evaluation(minutes_ago: float, decision: str, acted: bool, **figures) -> GuardEvaluation:
    checks = [
        {"name": "false_lock_screens", "status": "pass", "detail": "", "threshold": {},
         "figures": {"shown": figures.get("shown", 0), "legacyShown": figures.get("legacy", 0)}},
        {"name": "sample_size", "status": "pass", "detail": "", "threshold": {},
         "figures": {"legacyAccessChecks": 600, "verifiedAccessChecks": 120}},
        {"name": "completion_success_rate", "status": "pass", "detail": "", "threshold": {},
         "figures": {"legacy": 0.999, "verified": figures.get("rate", 1.0)}},
        {"name": "cache_update_latency", "status": "pass", "detail": "", "threshold": {},
         "figures": {"legacyP95Seconds": 0.002, "verifiedP95Seconds": 0.02}},
    ]  # fmt: skip
    return kept_evaluation(
        timedelta(minutes=minutes_ago),
        stage=1,
        percentage=10,
        window_seconds=300,
        checks=checks,
        decision=decision,
        reason=f"{decision} for the test",
        acted=acted,
    )


def test_without_prometheus_the_charts_come_from_the_guards_evaluations(app, auth):
    admin = auth.learner(admin=True)
    client = app.test_client()
    client.put("/api/v1/admin/rollout", json={"percentage": 10, "reason": "start"},
               headers=admin.headers)  # fmt: skip
    with app.app_context():
        db.session.add_all(
            [
                evaluation(20 * 60, "hold", False),  # 20 hours ago: only in the day view
                evaluation(1, "hold", False, legacy=3),
                evaluation(0.5, "pause", True, shown=2, rate=0.98, legacy=5),
            ]
        )
        db.session.commit()
    day = client.get(CHARTS + "?range=day", headers=admin.headers).get_json()
    assert (day["source"], day["note"]) == ("evaluations", None)
    assert len(day["times"]) == 3
    assert day["times"] == sorted(day["times"])
    figures = day["figures"]
    # Legacy's false locks are charted beside verified's (kept with the false-lock check),
    # each point counting those since the look before: 5 in the stage so far is 2 more.
    assert figures["falseLockScreens"] == {"legacy": [0, 3, 2], "verified": [0, 0, 2]}
    assert figures["completionSuccessRate"]["verified"] == [1.0, 1.0, 0.98]
    assert figures["cacheUpdateP95Seconds"]["legacy"] == [0.002] * 3
    assert figures["cacheUpdateP95Seconds"]["verified"] == [0.02] * 3
    assert figures["accessChecksPerMinute"]["verified"] == [24.0] * 3  # 120 in 300 s
    assert [m["label"] for m in day["markers"]] == ["guard pause", "0% → 10%"]  # oldest first
    assert [(s["percentage"], s["by"]) for s in day["stages"]] == [(0, None), (10, admin.email)]
    stage = client.get(CHARTS, headers=admin.headers).get_json()
    assert len(stage["times"]) == 2  # since the stage began (at least its last 2 minutes)


def test_a_malformed_range_is_refused(client, auth):
    answer = client.get(CHARTS + "?range=week", headers=auth.learner(admin=True).headers)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "range"
    assert client.get(CHARTS, headers=auth.learner().headers).status_code == 403


def test_the_learners_a_move_sends_to_the_other_path_are_counted_as_the_flag_decides(app, auth):
    admin = auth.learner(admin=True)
    client = app.test_client()
    # 200: at 10% some of them are on each path but for a chance of about 1e-9 (with 41,
    # all were on legacy about once in 75 runs)
    learners = [admin] + [auth.learner() for _ in range(199)]
    for learner in learners:  # each becomes known on first use
        assert client.get("/api/v1/progress", headers=learner.headers).status_code == 200
    with app.app_context():
        rollout.set_rollout(10, "start", "tests")
        at_10 = {learner.id: path_for_learner(learner.id) for learner in learners}
        rollout.set_rollout(100, "probe", "tests")
        at_100 = {learner.id: path_for_learner(learner.id) for learner in learners}
        rollout.set_rollout(10, "back", "tests")
    moving = sum(at_10[i] != at_100[i] for i in at_10)
    impact = client.get(IMPACT + "?percentage=100", headers=admin.headers).get_json()
    assert 0 < moving < len(learners)
    assert impact == {
        "fromPercentage": 10,
        "toPercentage": 100,
        "learners": len(learners),
        "moving": moving,
        "exact": True,
        "toPath": "verified",
    }
    refused = client.get(IMPACT + "?percentage=101", headers=admin.headers)
    assert (refused.status_code, refused.get_json()["error"]["field"]) == (400, "percentage")


def test_the_charting_library_is_served_with_its_licence_and_is_the_packages_build(client):
    """The page loads uPlot from the service (no CDN), with its MIT licence beside it, and
    the vendored build is byte for byte the npm package pinned in devtools/uplot."""
    vendored = REPO / "progress" / "static" / "vendor" / "uplot"
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE"):
        with client.get(f"/static/vendor/uplot/{name}") as answer:  # closes the file it sends
            assert answer.status_code == 200, name
            assert answer.data == (vendored / name).read_bytes()
    assert b"MIT License" in (vendored / "LICENSE").read_bytes()
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed")
    package = REPO / "devtools" / "uplot"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=package, check=True, capture_output=True,
        timeout=300,
    )  # fmt: skip
    built = package / "node_modules" / "uplot"
    for shipped, ours in (
        ("dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
        ("dist/uPlot.min.css", "uPlot.min.css"),
        ("LICENSE", "LICENSE"),
    ):
        assert (built / shipped).read_bytes() == (vendored / ours).read_bytes(), ours


def test_the_guards_sequential_test_bounds_are_charted_from_its_evaluations(app, auth):
    """Each check whose evaluation carries a sequential test gives a series: the difference
    between the paths, its confidence bound at each look, and the margin."""
    admin = auth.learner(admin=True)
    looks = []
    for minutes_ago, lower, upper in ((3, -0.05, 0.04), (2, -0.02, 0.015), (1, -0.01, 0.004)):
        row = evaluation(minutes_ago, "hold", False)
        row.checks = [
            *row.checks[:2],
            {**row.checks[2], "test": {"method": "mSPRT", "counting": "errors",
                                       "statistic": -0.002, "lower": lower, "upper": upper,
                                       "margin": 0.005, "confidence": 0.95, "evidence": 400,
                                       "verdict": "inconclusive"}},
            row.checks[3],
        ]  # fmt: skip
        looks.append(row)
    with app.app_context():
        db.session.add_all(looks)
        db.session.commit()
    charts = app.test_client().get(CHARTS + "?range=day", headers=admin.headers).get_json()
    (bound,) = charts["bounds"]
    assert (bound["check"], bound["counting"]) == ("completion_success_rate", "errors")
    assert bound["lower"] == [-0.05, -0.02, -0.01]
    assert bound["upper"] == [0.04, 0.015, 0.004]  # closing in below the margin
    assert bound["margin"] == [0.005] * 3
    assert bound["times"] == sorted(bound["times"])
