"""What the admin page draws: the two paths side by side over the current stage or the last
day, with every rollout change and guard decision as a marker, and the stage timeline.

The figures come from Prometheus (a range query per figure) when PROMETHEUS_URL is set, and
otherwise from the guard's kept evaluations (each holds the figures it judged on). Both give
the same shape: one time axis and, per figure, a value (or None) per path at each time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import requests
import sqlalchemy as sa
from flask import current_app
from UnleashClient.utils import normalized_hash

from . import rollout
from .extensions import db
from .flags import flag_gate
from .models import GuardEvaluation, RolloutChange, User, utcnow
from .path_names import PATHS

log = logging.getLogger(__name__)

Range = Literal["stage", "day"]
POINTS = 120  # per chart: enough to see a stage, few enough for a phone
MIN_STAGE_VIEW = timedelta(minutes=2)
# Guard decisions worth a marker: the ones that move or stop the rollout, or end it.
MARKED_DECISIONS = ("advance", "ready", "pause", "rollback", "complete")


class ChartsUnavailable(RuntimeError):
    """Prometheus did not answer the charts' queries."""


# Each figure: what Prometheus computes per path over a window `w` ending at each step.
# False lock screens shown: the larger of the client's reports and the audit (both find the
# same lock screens, so their sum would count one twice), never the verified path's own
# double check (which caught the stale answer and said "accessible": no learner saw it).
QUERIES: dict[str, str] = {
    "falseLockScreens": (
        "max by (path) (sum by (path, detected_by) (increase(progress_false_lock_screens_total"
        '{{{sel}detected_by!="double_check"}}[{w}])))'
    ),
    "completionSuccessRate": (
        'sum by (path) (increase(progress_completions_total{{{sel}outcome="success"}}[{w}]))'
        " / sum by (path) (increase(progress_completions_total{{{sel}}}[{w}]))"
    ),
    "cacheUpdateP95Seconds": (
        "histogram_quantile(0.95, sum by (le, path) "
        "(rate(progress_cache_update_seconds_bucket{{{sel}}}[{w}])))"
    ),
    "accessChecksPerMinute": (
        "sum by (path) (rate(progress_access_checks_total{{{sel}}}[{w}])) * 60"
    ),
}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    step_s: int


def window_for(range_name: Range, stage_started_at: datetime | None) -> Window:
    end = utcnow()
    if range_name == "day" or stage_started_at is None:
        start = end - timedelta(days=1)
    else:
        start = min(stage_started_at, end - MIN_STAGE_VIEW)
    step = max(5, math.ceil((end - start).total_seconds() / POINTS))
    return Window(start, end, step)


def _selector() -> str:
    matchers = current_app.config["PROGRESS_GUARD_SELECTOR"]
    return f"{matchers}, " if matchers else ""


def prometheus_series(window: Window) -> tuple[list[float], dict[str, dict[str, list]]]:
    """Every figure from Prometheus: (times, {figure: {path: values}})."""
    config = current_app.config
    url = config["PROMETHEUS_URL"].rstrip("/") + "/api/v1/query_range"
    # A rate needs a few scrapes in its window, whatever the step.
    w = f"{max(window.step_s, 60)}s"
    start, end = window.start.timestamp(), window.end.timestamp()
    times = [start + i * window.step_s for i in range(int((end - start) // window.step_s) + 1)]
    index = {round(t): i for i, t in enumerate(times)}
    figures: dict[str, dict[str, list]] = {}
    for name, template in QUERIES.items():
        query = template.format(sel=_selector(), w=w)
        try:
            answer = requests.get(
                url,
                params={"query": query, "start": start, "end": end, "step": window.step_s},
                timeout=config["PROGRESS_GUARD_QUERY_TIMEOUT_S"],
            )
            body = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise ChartsUnavailable(f"Prometheus unreachable: {exc}") from None
        if body.get("status") != "success":
            raise ChartsUnavailable(f"Prometheus refused a query: {body.get('error')}")
        values = {path: [None] * len(times) for path in PATHS}
        for series in body["data"]["result"]:
            path = series["metric"].get("path")
            if path not in values:
                continue
            for at, raw in series["values"]:
                i = index.get(round(float(at)))
                value = float(raw)
                if i is not None and math.isfinite(value):
                    values[path][i] = round(value, 6)
        figures[name] = values
    return times, figures


def _figure(checks: list[dict], name: str, key: str) -> float | None:
    for check in checks:
        if check.get("name") == name:
            value = (check.get("figures") or {}).get(key)
            return float(value) if isinstance(value, int | float) else None
    return None


# Where each figure sits in an evaluation's checks: (check name, figure key) per path, and the
# window's length turns a count into a per-minute rate.
EVALUATION_FIGURES: dict[str, dict[str, tuple[str, str]]] = {
    "falseLockScreens": {
        "legacy": ("false_lock_screens", "legacyShown"),
        "verified": ("false_lock_screens", "shown"),
    },
    "completionSuccessRate": {
        "legacy": ("completion_success_rate", "legacy"),
        "verified": ("completion_success_rate", "verified"),
    },
    "cacheUpdateP95Seconds": {
        "legacy": ("cache_update_latency", "legacyP95Seconds"),
        "verified": ("cache_update_latency", "verifiedP95Seconds"),
    },
    "accessChecksPerMinute": {
        "legacy": ("sample_size", "legacyAccessChecks"),
        "verified": ("sample_size", "verifiedAccessChecks"),
    },
}


def _evaluations(window: Window) -> Sequence[GuardEvaluation]:
    """The guard's kept evaluations of this flag inside the window, oldest first."""
    return db.session.scalars(
        sa.select(GuardEvaluation)
        .where(
            GuardEvaluation.flag == flag_gate().flag,
            GuardEvaluation.at >= window.start,
            GuardEvaluation.at <= window.end,
        )
        .order_by(GuardEvaluation.at)
    ).all()


def evaluation_series(window: Window) -> tuple[list[float], dict[str, dict[str, list]]]:
    """Every figure from the guard's kept evaluations (each judged the stage so far)."""
    rows = _evaluations(window)
    times = [row.at.timestamp() for row in rows]
    figures: dict[str, dict[str, list]] = {}
    for name, places in EVALUATION_FIGURES.items():
        per_path: dict[str, list] = {}
        for path in PATHS:
            where = places.get(path)
            values = [_figure(row.checks, *where) if where else None for row in rows]
            if name == "accessChecksPerMinute":
                values = [
                    None if v is None or not row.window_seconds else v * 60 / row.window_seconds
                    for v, row in zip(values, rows, strict=True)
                ]
            elif name == "falseLockScreens":
                values = _between_looks(values, rows)
            per_path[path] = values
        figures[name] = per_path
    return times, figures


def _between_looks(totals: list[float | None], rows: Sequence[GuardEvaluation]) -> list:
    """Counts since the stage began, as each look judged them, turned into counts since the
    look before, as the Prometheus charts show them. A look at another stage, or with a
    shorter window (the stage began again), starts from its own count."""
    values: list[float | None] = []
    before: tuple[float, GuardEvaluation] | None = None
    for total, row in zip(totals, rows, strict=True):
        if total is None:
            values.append(None)
            continue
        same_stage = (
            before is not None
            and (before[1].stage, before[1].percentage) == (row.stage, row.percentage)
            and row.window_seconds >= before[1].window_seconds
        )
        values.append(max(total - before[0], 0.0) if same_stage and before else total)
        before = (total, row)
    return values


TEST_FIGURES = ("statistic", "lower", "upper", "margin")


def guard_bounds(window: Window) -> list[dict[str, Any]]:
    """The guard's sequential tests over the window, one series per check that carries one
    (`test` in the check: verified's share minus legacy's, the confidence bound on it at
    each evaluation, and the margin it is judged against), oldest first."""
    rows = _evaluations(window)
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        for check in row.checks:
            test = check.get("test")
            if not isinstance(test, dict) or not all(
                isinstance(test.get(key), int | float) for key in TEST_FIGURES
            ):
                continue
            series = found.setdefault(
                check.get("name", "?"),
                {"check": check.get("name", "?"), "counting": str(test.get("counting", ""))}
                | {"times": []}
                | {key: [] for key in TEST_FIGURES},
            )
            series["times"].append(row.at.timestamp())
            for key in TEST_FIGURES:
                series[key].append(float(test[key]))
    return list(found.values())


def markers(window: Window) -> list[dict[str, Any]]:
    """Rollout changes and the guard decisions that moved or stopped it, oldest first."""
    flag = flag_gate().flag
    found: list[dict[str, Any]] = []
    changes = db.session.scalars(
        sa.select(RolloutChange).where(
            RolloutChange.flag == flag,
            RolloutChange.changed_at >= window.start,
            RolloutChange.changed_at <= window.end,
        )
    ).all()
    for change in changes:
        previous = "?" if change.previous_percentage is None else change.previous_percentage
        found.append(
            {
                "at": change.changed_at,
                "kind": "rollout",
                "label": f"{previous}% → {change.percentage}%",
                "by": change.changed_by,
                "detail": change.reason,
            }
        )
    decisions = db.session.scalars(
        sa.select(GuardEvaluation).where(
            GuardEvaluation.flag == flag,
            GuardEvaluation.at >= window.start,
            GuardEvaluation.at <= window.end,
            GuardEvaluation.acted.is_(True),
            GuardEvaluation.decision.in_(MARKED_DECISIONS),
        )
    ).all()
    for row in decisions:
        found.append(
            {
                "at": row.at,
                "kind": "guard",
                "label": f"guard {row.decision}",
                "by": "guard",
                # A person's note on the decision comes with it.
                "detail": row.reason
                + (f" — note by {row.noted_by}: {row.note}" if row.note else ""),
            }
        )
    return sorted(found, key=lambda m: m["at"])


def stage_timeline(limit: int = 50) -> list[dict[str, Any]]:
    """Each percentage the rollout held, oldest first, with who or what moved it there."""
    changes = list(reversed(rollout.rollout_history(limit)))
    steps: list[dict[str, Any]] = []
    if not changes or changes[0].previous_percentage not in (None, changes[0].percentage):
        first = changes[0].previous_percentage if changes else rollout.rollout_state().percentage
        steps.append({"percentage": first or 0, "since": None, "by": None, "reason": None})
    for change in changes:
        if steps and steps[-1]["percentage"] == change.percentage:
            continue  # set again to the same value: the stage did not change
        steps.append(
            {
                "percentage": change.percentage,
                "since": change.changed_at,
                "by": change.changed_by,
                "reason": change.reason,
            }
        )
    return steps


def charts(range_name: Range, stage_started_at: datetime | None) -> dict[str, Any]:
    window = window_for(range_name, stage_started_at)
    source = "prometheus" if current_app.config["PROMETHEUS_URL"] else "evaluations"
    note = None
    read: Callable[[Window], tuple[list[float], dict]] = (
        prometheus_series if source == "prometheus" else evaluation_series
    )
    try:
        times, figures = read(window)
    except ChartsUnavailable as exc:
        log.warning("rollout charts: Prometheus unavailable", extra={"error": str(exc)})
        source, note = "evaluations", f"{exc}; showing the guard's evaluations instead"
        times, figures = evaluation_series(window)
    return {
        "range": range_name,
        "source": source,
        "note": note,
        "from_": window.start,
        "to": window.end,
        "step_seconds": window.step_s if source == "prometheus" else None,
        "times": times,
        "figures": figures,
        "markers": markers(window),
        "stages": stage_timeline(),
        "bounds": guard_bounds(window),
    }


# -- how many learners a move sends to the other path ---------------------------------------

EXACT_UP_TO = 200_000  # learners; beyond, the share of the move is an estimate


def learners_moving(from_percentage: int, to_percentage: int) -> dict[str, Any]:
    """Known learners whose path changes when the rollout moves: exact (each learner's
    bucket, as the flag computes it) up to EXACT_UP_TO learners, estimated beyond."""
    low, high = sorted((from_percentage, to_percentage))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(User)) or 0
    if total > EXACT_UP_TO:
        moving, exact = round(total * (high - low) / 100), False
    else:
        group = flag_gate().flag
        moving = sum(
            1
            for user_id in db.session.scalars(sa.select(User.id))
            if low < normalized_hash(str(user_id), group) <= high
        )
        exact = True
    return {
        "from_percentage": from_percentage,
        "to_percentage": to_percentage,
        "learners": total,
        "moving": moving,
        "exact": exact,
        "to_path": "verified" if to_percentage > from_percentage else "legacy",
    }
