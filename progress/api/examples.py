"""One example for every request and response model, added to the OpenAPI document.

Kept beside the models rather than inside them so one module shows every example a frontend
developer sees; tests/test_frontend_contract.py validates each against its model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from . import schemas as s

WHEN = "2026-03-02T09:15:27.418000+00:00"
ADMIN = "ana@example.com"
ROLLOUT = {
    "flag": "verified-progress-path",
    "percentage": 10,
    "backend": "embedded",
    "updatedAt": WHEN,
    "updatedBy": ADMIN,
}
PATH_FIGURES = {
    "completions": 1840.0,
    "completionErrors": 2.0,
    "completionSuccessRate": 0.9989,
    "falseLockScreens": 0.0,
    "stalenessIncidents": 3.0,
    "cacheHitRate": 0.94,
    "cacheMismatches": 0.0,
    "accessChecks": 9120.0,
    "reviewSets": 410.0,
    "staleReviewSets": 0.0,
}
PLAN = {
    "flag": "verified-progress-path",
    "stages": [0, 10, 100],
    "stage": 1,
    "stagePercentage": 10,
    "stageStartedAt": WHEN,
    "minStageSeconds": 3600,
    "minCompletions": 200,
    "minAccessChecks": 1000,
    "autoAdvance": False,
    "onFailure": "rollback",
    "successRateMargin": 0.005,
    "p95BudgetSeconds": 0.5,
    "latencyMargin": 0.05,
    "falseRollbackRate": 0.01,
    "enabled": True,
    "paused": False,
    "ready": False,
    "updatedAt": WHEN,
    "updatedBy": ADMIN,
    "watchHours": 48.0,
    "baselineDays": 7.0,
    "guard": {"running": True, "source": "prometheus", "reason": None, "warnings": []},
    "watch": {
        "state": "not_started",
        "lengthSeconds": 172800,
        "startedAt": None,
        "endsAt": None,
        "secondsLeft": None,
        "completedAt": None,
        "baseline": None,
        "current": None,
        "text": "the watch of 48 h starts when the rollout reaches 100%",
    },
    "marginCosts": [
        {
            "margin": 0.001,
            "etaSeconds": 450422,
            "text": "with a margin of 0.1 point, a healthy stage decides in about 5.2 days",
        },
        {
            "margin": 0.002,
            "etaSeconds": 103260,
            "text": "with a margin of 0.2 point, a healthy stage decides in about 29 h",
        },
        {
            "margin": 0.005,
            "etaSeconds": 15021,
            "text": "with a margin of 0.5 point, a healthy stage decides in about 4.2 h",
        },
        {
            "margin": 0.01,
            "etaSeconds": 3880,
            "text": "with a margin of 1 point, a healthy stage decides in about 65 min",
        },
    ],
}

# The watch at 100%, 12 hours in (docs/guard.md, "The watch at 100%").
WATCH = {
    "state": "watching",
    "lengthSeconds": 172800,
    "startedAt": "2026-03-09T09:00:00+00:00",
    "endsAt": "2026-03-11T09:00:00+00:00",
    "secondsLeft": 129600,
    "completedAt": None,
    "baseline": {
        "start": "2026-03-02T09:00:00+00:00",
        "end": "2026-03-09T09:00:00+00:00",
        "source": "prometheus",
        "span": "7 days",
        "wholeDays": True,
        "completions": 9980000.0,
        "errors": 49900.0,
        "successRate": 0.995,
        "updates": 9980000.0,
        "overBudgetShare": 0.012,
        "days": [{"completions": 1425714.0, "errors": 7128.0}],
    },
    "current": {
        "at": "2026-03-09T21:00:00+00:00",
        "completions": 720000.0,
        "errors": 3420.0,
        "successRate": 0.99525,
        "updates": 720000.0,
        "overBudgetShare": 0.0004,
    },
    "text": "watching: 36 h of 48 h left",
}
TIMEOUT_ADVICE = {
    "setting": "PROGRESS_CACHE_UPDATE_TIMEOUT_MS",
    "currentMs": 2000.0,
    "histogram": 'progress_cache_update_seconds{path="verified"}',
    "observations": 812400.0,
    "p50Ms": 3.1,
    "p99Ms": 38.0,
    "p999Ms": 96.0,
    "recommendedMs": 150.0,
    "rule": "p99.9 of the verified path's cache update x 1.5",
    "line": "PROGRESS_CACHE_UPDATE_TIMEOUT_MS=150",
    "candidates": [
        {"valueMs": 75.0, "shareOver": 0.0021, "requestsOver": 1706.0, "label": ""},
        {"valueMs": 150.0, "shareOver": 0.0004, "requestsOver": 325.0, "label": "recommended"},
        {"valueMs": 300.0, "shareOver": 0.0001, "requestsOver": 81.0, "label": ""},
        {"valueMs": 2000.0, "shareOver": 0.0, "requestsOver": 0.0, "label": "current"},
    ],
    "warnings": [],
    "bucketsNeeded": [],
}

# A sequential test at one evaluation of the guard (docs/guard.md).
SEQUENTIAL_TEST = {
    "method": "mSPRT",
    "counting": "errors",
    "statistic": 0.015,
    "lower": -0.002733,
    "upper": 0.032733,
    "margin": 0.001,
    "confidence": 0.99,
    "evidence": 10000.0,
    "verdict": "inconclusive",
    "needed": 108398,
}
# The guard's estimate at that evaluation (progress/guard/eta.py).
ETA = {
    "seconds": 390233,
    "reason": None,
    "limitedBy": "completion_success_rate",
    "ratePerMinute": 16.67,
    "needed": 108398,
    "text": "decides in about 4.5 days (likely 1.5 days to 14 days), at 17 verified "
    "completions a minute; needs about 110,000 more",
}
SUCCESS_RATE_DETAIL = (
    "verified success rate 98% vs 99.5% after 10,000 completions: inconclusive, holding (with "
    "99% confidence verified is between 0.27 point better and 3.27 points worse; the margin is "
    "0.1 point)"
)

EXAMPLES: dict[type[BaseModel], dict[str, Any]] = {
    s.ErrorOut: {
        "error": {
            "code": "lesson_locked",
            "message": "Complete 'greetings' before 'introductions'.",
        }
    },
    s.CurriculumOut: {
        "modules": [
            {
                "id": "basics",
                "title": "Basics",
                "lessons": [
                    {
                        "id": "greetings",
                        "title": "Greetings",
                        "xp": 10,
                        "words": [
                            {"term": "hola", "translation": "hello"},
                            {"term": "adiós", "translation": "goodbye"},
                        ],
                    },
                    {
                        "id": "introductions",
                        "title": "Introductions",
                        "xp": 10,
                        "words": [{"term": "me llamo", "translation": "my name is"}],
                    },
                ],
            }
        ]
    },
    s.ProgressQuery: {"minVersion": 3},
    s.ProgressOut: {
        "version": 3,
        "completed": [{"moduleId": "basics", "lessonId": "greetings", "completedAt": WHEN}],
        "lessons": [
            {"moduleId": "basics", "lessonId": "greetings", "accessible": True},
            {"moduleId": "basics", "lessonId": "introductions", "accessible": True},
            {"moduleId": "basics", "lessonId": "numbers", "accessible": False},
        ],
        "xpTotal": 20,
    },
    s.CompletionHeaders: {"Idempotency-Key": "5b0c7d1e-8f0a-4f7e-9d8c-2a6b1e3f4c5d"},
    s.CompletionOut: {
        "success": True,
        "dbUpdated": True,
        "cacheUpdated": True,
        "version": 4,
        "path": "verified",
        "xpEarned": 10,
        "xpTotal": 30,
        "position": 23_854_112,
    },
    s.ReviewQuery: {"minVersion": 4, "minPosition": 23_854_112},
    s.ReviewOut: {
        "version": 4,
        "words": [
            {"term": "hola", "translation": "hello", "moduleId": "basics", "lessonId": "greetings"},
            {
                "term": "adiós",
                "translation": "goodbye",
                "moduleId": "basics",
                "lessonId": "greetings",
            },
        ],
        "source": "cache",
        "path": "verified",
    },
    s.AccessQuery: {"minVersion": 4, "minPosition": 23_854_112},
    s.AccessOut: {
        "accessible": True,
        "source": "cache",
        "cacheAgeMs": 12,
        "version": 4,
        "path": "verified",
        "lockReceipt": None,
    },
    s.LockScreenIn: {
        "moduleId": "basics",
        "lessonId": "numbers-1-10",
        "lockReceipt": (
            "WzEsIjBuZXRXUlltWkxaV0JoUmoiLCIzZjZiMTJjMDhkMWU0YjdhOWMyZjVlNGQzYzJiMWEwOSIsImJhc2ljcyIs"
            "Im51bWJlcnMtMS0xMCIsInZlcmlmaWVkIiwzLDE3OTY2Mjc0Nzg3MDMxMTFd"
            ".XdYJQE5err5ZKwEJG_p5bEuT3vNBr5lMYTgvbpZvfVQ"
        ),
    },
    s.LockScreenOut: {"falseLock": False},
    s.HealthOut: {"status": "ok"},
    s.ReadyOut: {
        "status": "ready",
        "checks": {
            "database": "ok",
            "circuit_breaker": "ok (closed)",
            "invalidation": "ok (listening)",
        },
    },
    s.RolloutOut: ROLLOUT,
    s.RolloutIn: {"percentage": 10, "reason": "stage 1: 10% of learners"},
    s.RolloutHistoryOut: {
        "changes": [
            {
                "percentage": 10,
                "previousPercentage": 0,
                "reason": "stage 1: 10% of learners",
                "changedBy": ADMIN,
                "changedAt": WHEN,
                "backend": "embedded",
            }
        ]
    },
    s.PathFiguresOut: {
        "legacy": {**PATH_FIGURES, "falseLockScreens": 17.0},
        "verified": PATH_FIGURES,
    },
    s.RolloutPlanOut: PLAN,
    s.RolloutPlanIn: {"stages": [0, 10, 50, 100], "minStageSeconds": 1800, "autoAdvance": True},
    s.GuardEvaluationsQuery: {"limit": 20},
    s.SequentialTestOut: SEQUENTIAL_TEST,
    s.GuardEtaOut: ETA,
    s.GuardStatusOut: PLAN["guard"],
    s.MarginCostOut: PLAN["marginCosts"][0],
    s.AdvanceIn: {
        "reason": "10% held a day within the margin; product signs off",
        "note": "support saw no lock-screen tickets at 10%",
    },
    s.BackIn: {
        "reason": "completions fail at 100% since the 14:00 deploy",
        "note": "paused by the watch; the deploy is rolled back, back to 10% meanwhile",
    },
    s.NoteIn: {"note": "48 h clean; legacy path to be retired next sprint"},
    s.WatchOut: WATCH,
    s.WatchBaselineOut: WATCH["baseline"],
    s.WatchCurrentOut: WATCH["current"],
    s.TimeoutsQuery: {"days": 7},
    s.TimeoutAdviceOut: TIMEOUT_ADVICE,
    s.TimeoutCandidateOut: TIMEOUT_ADVICE["candidates"][1],
    s.TimeoutsOut: {
        "source": "prometheus",
        "days": 7.0,
        "window": "the last 7 days",
        "settings": [TIMEOUT_ADVICE],
        "note": "Nothing was changed: timeouts are deploy-time settings; deploy the lines "
        "you choose.",
    },
    s.GuardEvaluationsOut: {
        "evaluations": [
            {
                "id": 41,
                "at": WHEN,
                "flag": "verified-progress-path",
                "stage": 1,
                "percentage": 10,
                "windowSeconds": 3600,
                "checks": [
                    {
                        "name": "false_lock_screens",
                        "status": "pass",
                        "detail": "no false lock screen shown on the verified path in 3600 s "
                        "(0 caught by its double check)",
                        "figures": {
                            "shown": 0.0,
                            "clientReport": 0.0,
                            "audit": 0.0,
                            "caughtByDoubleCheck": 0.0,
                        },
                        "threshold": {"maxShown": 0},
                    },
                    {
                        "name": "completion_success_rate",
                        "status": "inconclusive",
                        "detail": SUCCESS_RATE_DETAIL,
                        "figures": {
                            "verified": 0.98,
                            "legacy": 0.995,
                            "verifiedErrors": 20.0,
                            "legacyErrors": 45.0,
                            "verifiedCompletions": 1000.0,
                            "legacyCompletions": 9000.0,
                        },
                        "threshold": {"margin": 0.001, "confidence": 0.99},
                        "test": SEQUENTIAL_TEST,
                    },
                ],
                "decision": "hold",
                "reason": SUCCESS_RATE_DETAIL,
                "acted": False,
                "instance": "web-1:4242",
                "etaSeconds": 390233,
                "eta": ETA,
            }
        ]
    },
    s.RolloutChartsQuery: {"range": "stage"},
    s.RolloutChartsOut: {
        "range": "stage",
        "source": "prometheus",
        "note": None,
        "from": "2026-03-02T08:15:00+00:00",
        "to": WHEN,
        "stepSeconds": 1800,
        "times": [1772439300.0, 1772441100.0, 1772442900.0],
        "figures": {
            "falseLockScreens": {"legacy": [2.0, 3.0, 1.0], "verified": [0.0, 0.0, 0.0]},
            "completionSuccessRate": {"legacy": [0.999, 0.998, 0.999], "verified": [1.0, 1.0, 1.0]},
            "cacheUpdateP95Seconds": {
                "legacy": [0.004, 0.005, 0.004],
                "verified": [0.02, 0.03, 0.02],
            },
            "accessChecksPerMinute": {
                "legacy": [540.0, 610.0, 580.0],
                "verified": [60.0, 68.0, 64.0],
            },
        },
        "markers": [
            {
                "at": "2026-03-02T08:45:00+00:00",
                "kind": "rollout",
                "label": "0% → 10%",
                "by": ADMIN,
                "detail": "stage 1: 10% of learners",
            }
        ],
        "stages": [
            {"percentage": 0, "since": None, "by": None, "reason": None},
            {
                "percentage": 10,
                "since": "2026-03-02T08:45:00+00:00",
                "by": ADMIN,
                "reason": "stage 1: 10% of learners",
            },
        ],
        "bounds": [
            {
                "check": "completion_success_rate",
                "counting": "errors",
                "times": [1772439300.0, 1772441100.0, 1772442900.0],
                "statistic": [-0.0004, -0.0002, -0.0001],
                "lower": [-0.02, -0.008, -0.004],
                "upper": [0.019, 0.007, 0.0035],
                "margin": [0.005, 0.005, 0.005],
            }
        ],
    },
    s.RolloutImpactQuery: {"percentage": 100},
    s.RolloutImpactOut: {
        "fromPercentage": 10,
        "toPercentage": 100,
        "learners": 12480,
        "moving": 11236,
        "exact": True,
        "toPath": "verified",
    },
}

# The note route answers one evaluation, with the person's note.
EXAMPLES[s.GuardEvaluationOut] = {
    **EXAMPLES[s.GuardEvaluationsOut]["evaluations"][0],
    "note": "holding is expected: 0.1 point needs about a day at this traffic",
    "notedBy": ADMIN,
    "notedAt": WHEN,
}


def add_examples(document: dict[str, Any]) -> dict[str, Any]:
    """Put each model's example into its component schema (OpenAPI 3.1: `examples`)."""
    schemas = document.get("components", {}).get("schemas", {})
    for model, example in EXAMPLES.items():
        if model.__name__ in schemas:
            schemas[model.__name__]["examples"] = [example]
    return document
