"""When the guard will decide: from one evaluation's checks, the time until it can next
advance or act at the current traffic. The latest of the stage's minimum time still to
run, the minimum sample still to come, and each sequential test's outcomes still needed
(`test.needed`) at its path's current rate; pure, so the simulation measures it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .checks import SUCCESS_RATE_TAUS
from .figures import PATHS
from .sequential import compare, needed

# Each sequential check's verified outcomes, as its figures name them.
VERIFIED_OUTCOMES = {
    "completion_success_rate": ("verifiedCompletions", "verified completions"),
    "cache_update_latency": ("verifiedUpdates", "verified cache updates"),
}
# The likely range around an estimate limited by a test (docs/guard.md, "When the guard
# will decide"): measured with progress.guard.simulation.
RANGE_FACTOR = 3
# The decisions after which nothing is waited for: the guard acted or the stage is ready.
DECIDED = frozenset({"advance", "ready", "pause", "rollback"})


@dataclass(frozen=True)
class Eta:
    """The guard's estimate of when it will next be able to advance or act."""

    seconds: int | None
    reason: str | None  # why it cannot tell, when seconds is None
    limited_by: str | None  # "min_stage_time", a check's name, or None
    rate_per_minute: float | None  # the limiting check's verified outcomes a minute
    needed: int | None  # outcomes the limiting check still needs
    text: str

    def as_json(self) -> dict[str, Any]:
        """As an evaluation keeps it (`guard_evaluations.eta`)."""
        return {
            "seconds": self.seconds,
            "reason": self.reason,
            "limitedBy": self.limited_by,
            "ratePerMinute": self.rate_per_minute,
            "needed": self.needed,
            "text": self.text,
        }


def unknown(reason: str) -> Eta:
    return Eta(None, reason, None, None, None, f"cannot tell when it decides: {reason}")


def estimate(
    checks: Sequence[Mapping[str, Any]],
    *,
    decision: str,
    window_s: float,
    stage_elapsed_s: float,
    min_stage_seconds: int,
    waiting_for_person: str | None = None,
) -> Eta:
    """The estimate for one evaluation: `checks` as kept (`Check.as_json`), the decision
    made, the window the figures cover, and how long the stage has run. A stage that only
    a person moves on (0%, paused, the last stage, off the plan) says so as its reason."""
    if decision in DECIDED:
        return Eta(0, None, None, None, None, f"decided: {decision}")
    if waiting_for_person:
        return unknown(waiting_for_person)
    by_name = {c["name"]: c for c in checks}
    waits: list[tuple[float, str, float | None, int | None, str]] = []
    remaining = min_stage_seconds - stage_elapsed_s
    if remaining > 0:
        waits.append((remaining, "min_stage_time", None, None, "the stage's minimum time"))
    minutes = max(window_s, 1.0) / 60
    sample = by_name.get("sample_size")
    if sample is not None and sample["status"] != "pass":
        found = _sample_wait(sample, minutes)
        if isinstance(found, str):
            return unknown(found)
        if found is not None:
            waits.append(found)
    for name, (figure, what) in VERIFIED_OUTCOMES.items():
        check = by_name.get(name)
        if check is None or check["status"] in ("pass", "fail"):
            continue
        test = check.get("test")
        count = (check.get("figures") or {}).get(figure) or 0.0
        if test is None or count <= 0:
            return unknown(f"no {what} yet: no traffic to measure")
        if test.get("needed") is None:
            return unknown(f"{name}: the two paths differ by about the margin itself")
        rate = count / minutes
        waits.append((test["needed"] / rate * 60, name, rate, int(test["needed"]), what))
    if not waits:
        return unknown("nothing left to wait for, yet no decision: see the reason")
    seconds, limited_by, rate, needed, what = max(waits, key=lambda w: w[0])
    seconds = math.ceil(seconds)
    text = f"decides in about {duration(seconds)}"
    if limited_by == "min_stage_time":
        text += ", when the stage's minimum time has run"
    elif rate is not None and needed is not None:
        # A stage's decision time spreads over more than a factor of 4 however well it
        # is estimated; a third to three times the estimate held 82% of simulated stages.
        low, high = duration(seconds / RANGE_FACTOR), duration(seconds * RANGE_FACTOR)
        text += (
            f" (likely {low} to {high}), at {_count(rate)} {what} a minute; "
            f"needs about {_count(needed)} more"
        )
    return Eta(seconds, None, limited_by, None if rate is None else round(rate, 2), needed, text)


def _sample_wait(
    sample: Mapping[str, Any], minutes: float
) -> tuple[float, str, float, int, str] | str | None:
    """The wait for the minimum sample on each path, or why it cannot be told."""
    figures, threshold = sample.get("figures") or {}, sample.get("threshold") or {}
    longest: tuple[float, str, float, int, str] | None = None
    for path in threshold.get("paths", PATHS):
        for kind, key, what in (
            ("Completions", "minCompletions", "completions"),
            ("AccessChecks", "minAccessChecks", "access checks"),
        ):
            have, want = figures.get(f"{path}{kind}", 0.0) or 0.0, threshold.get(key, 0)
            if have >= want:
                continue
            if have <= 0:
                return f"no {what} on the {path} path yet: no traffic to measure"
            rate = have / minutes
            wait = (want - have) / rate * 60
            if longest is None or wait > longest[0]:
                longest = (wait, "sample_size", rate, math.ceil(want - have), f"{path} {what}")
    return longest


def duration(seconds: float) -> str:
    """3 h, 36 min, 45 s, 2.5 days: one unit, rounded as a person would say it."""
    if seconds < 90:
        return f"{max(round(seconds), 0)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        hours = seconds / 3600
        return f"{hours:.1f} h".replace(".0 h", " h") if hours < 10 else f"{round(hours)} h"
    days = seconds / 86400
    return f"{days:.1f} days".replace(".0 days", " days") if days < 10 else f"{round(days)} days"


def _count(value: float) -> str:
    """22, 4,300, 0.5: two significant figures above 100, one decimal below 1."""
    if value >= 100:
        digits = 10 ** (len(str(int(value))) - 2)
        return f"{round(value / digits) * digits:,}"
    if value >= 1:
        return f"{round(value):,}"
    return f"{value:.1g}"


CANDIDATE_MARGINS = (0.001, 0.002, 0.005, 0.01)
# Where a stage's margin cost is counted from: verified completions at its start.
START_COMPLETIONS = 50.0


@dataclass(frozen=True)
class MarginCost:
    """How long a healthy stage takes to decide with `margin`, at the current traffic."""

    margin: float
    eta_seconds: int | None
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"margin": self.margin, "etaSeconds": self.eta_seconds, "text": self.text}


def margin_costs(
    checks: Sequence[Mapping[str, Any]] | None,
    window_s: float,
    *,
    current_margin: float,
    false_rollback_rate: float,
    min_stage_seconds: int,
) -> list[MarginCost]:
    """For a few margins and the plan's own: the time from a stage's start to a healthy
    stage's decision, at the traffic and error rate of the latest evaluation (`checks`)."""
    margins = sorted({*CANDIDATE_MARGINS, current_margin})
    rate = next((c for c in checks or () if c["name"] == "completion_success_rate"), None)
    figures = (rate or {}).get("figures") or {}
    v_total, l_total = figures.get("verifiedCompletions"), figures.get("legacyCompletions")
    if not v_total or not l_total or window_s <= 0:
        why = "no completions measured on both paths yet"
        return [MarginCost(m, None, f"with a margin of {_points(m)}: {why}") for m in margins]
    errors = figures.get("verifiedErrors", 0.0) + figures.get("legacyErrors", 0.0)
    pooled = errors / (v_total + l_total)
    per_minute = v_total / (window_s / 60)
    costs = []
    for m in margins:
        # A healthy stage from a small start: both paths at the pooled error rate.
        v0, l0 = START_COMPLETIONS, START_COMPLETIONS * l_total / v_total
        start = compare(
            pooled * v0,
            v0,
            pooled * l0,
            l0,
            margin=m,
            alpha=false_rollback_rate,
            taus=SUCCESS_RATE_TAUS,
        )
        more = needed(start, SUCCESS_RATE_TAUS)
        if more is None:
            costs.append(MarginCost(m, None, f"with a margin of {_points(m)}: never"))
            continue
        total = v0 + more
        seconds = math.ceil(max(total / per_minute * 60, min_stage_seconds))
        costs.append(
            MarginCost(
                m,
                seconds,
                f"with a margin of {_points(m)}, a healthy stage decides in "
                f"about {duration(seconds)}",
            )
        )
    return costs


def _points(share: float) -> str:
    value = share * 100
    return f"{value:.2f}".rstrip("0").rstrip(".") + (" point" if value <= 1 else " points")
