"""The guard's checks, pure: each is one small function from the figures to what it found,
and `CHECKS` lists them with what a failure of each asks for. `judge` runs them all."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..models import PlanSettings, RolloutPlan
from .figures import PATHS, Figures
from .sequential import Comparison, compare, needed

CheckStatus = Literal["pass", "fail", "inconclusive", "no_data"]
# A failure asks for the plan's on_failure ("plan": rollback or pause) or for a pause.
OnFail = Literal["plan", "pause"]
# The breaker "stayed open" when it was open for more than this share of the window.
MAX_BREAKER_OPEN_SHARE = 0.5
# The mixtures' widths, the sizes of difference each test sees soonest (chosen with
# progress.guard.simulation): about a point of success rate or a few points of latency
# share, and a gross regression (a quarter, a half) on a small sample.
SUCCESS_RATE_TAUS = (0.01, 0.25)
LATENCY_TAUS = (0.05, 0.5)
_VERDICT_STATUS: dict[str, CheckStatus] = {
    "worse": "fail",
    "not_worse": "pass",
    "inconclusive": "inconclusive",
}


@dataclass(frozen=True)
class Thresholds:
    """The plan's settings that the checks apply."""

    min_completions: int
    min_access_checks: int
    success_rate_margin: float
    p95_budget_s: float  # the cache update latency budget
    latency_margin: float
    false_rollback_rate: float

    @classmethod
    def of(cls, plan: RolloutPlan | PlanSettings) -> Thresholds:
        return cls(
            plan.min_completions,
            plan.min_access_checks,
            plan.success_rate_margin,
            plan.p95_budget_seconds,
            plan.latency_margin,
            plan.false_rollback_rate,
        )


@dataclass(frozen=True)
class Finding:
    """What one check found over the window."""

    status: CheckStatus
    detail: str  # in words
    figures: dict[str, Any]
    threshold: dict[str, Any]
    # A sequential test's statistic, bound and evidence so far (`sequential_json`).
    test: dict[str, Any] | None = None


@dataclass(frozen=True)
class Check:
    """One check's finding, with what a failure of it asks for."""

    name: str
    status: CheckStatus
    detail: str
    figures: dict[str, Any]
    threshold: dict[str, Any]
    test: dict[str, Any] | None = None
    on_fail: OnFail = "pause"
    # Acted on only with the minimum sample on each path.
    needs_sample: bool = True

    def as_json(self) -> dict[str, Any]:
        """As an evaluation keeps it (`guard_evaluations.checks`)."""
        kept = {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "figures": self.figures,
            "threshold": self.threshold,
        }
        if self.test is not None:
            kept["test"] = self.test
        return kept


# -- the checks --------------------------------------------------------------------------------


def false_lock_screens(figures: Figures, limits: Thresholds, percentage: int) -> Finding:
    """False lock screens shown on the verified path: one is enough, whatever the sample.

    Counted: `client_report` (the client showed it) and `audit` (a "locked" answer given,
    then contradicted by the primary), the larger of the two: both find the same lock
    screens from either side, so their sum would count one twice. Not counted:
    `double_check`, a stale "locked" that the verified path's own double check caught and
    answered "accessible" instead: no learner saw it, and counting it would roll back the
    very layer that prevents false lock screens. It is shown among the figures."""
    w = figures.window_s
    threshold = {"maxShown": 0}
    if figures.false_locks is None:
        return Finding(
            "no_data",
            "no data: Prometheus has no false-lock series for the verified path",
            {},
            threshold,
        )
    report = figures.false_locks.get("client_report", 0.0)
    audit = figures.false_locks.get("audit", 0.0)
    caught = figures.false_locks.get("double_check", 0.0)
    shown = max(report, audit)
    lock_figures = {
        "shown": _n(shown),
        "clientReport": _n(report),
        "audit": _n(audit),
        "caughtByDoubleCheck": _n(caught),
    }
    if figures.legacy_false_locks is not None:  # beside verified's, for the page's charts
        lock_figures["legacyShown"] = _n(figures.legacy_false_locks)
    if shown > 0:
        detail = (
            f"false lock screens shown on the verified path: {_n(shown):g} in {w} s "
            f"(client_report {_n(report):g}, audit {_n(audit):g})"
        )
        return Finding("fail", detail, lock_figures, threshold)
    detail = (
        f"no false lock screen shown on the verified path in {w} s "
        f"({_n(caught):g} caught by its double check)"
    )
    return Finding("pass", detail, lock_figures, threshold)


def sample_size(figures: Figures, limits: Thresholds, percentage: int) -> Finding:
    """The plan's minimum sample on each path before a stage may advance."""
    w = figures.window_s
    required = ("verified",) if percentage >= 100 else PATHS  # at 100% legacy serves no one
    counts = {
        p: (_completions(figures, p)[0], (figures.access_checks or {}).get(p, 0.0)) for p in PATHS
    }
    sample_figures = {
        f"{p}{kind}": _n(counts[p][i])
        for p in PATHS
        for i, kind in enumerate(("Completions", "AccessChecks"))
    }
    threshold = {
        "minCompletions": limits.min_completions,
        "minAccessChecks": limits.min_access_checks,
        "paths": list(required),
    }
    if figures.completions is None or figures.access_checks is None:
        detail = "no data: Prometheus has no completion or access-check series"
        return Finding("no_data", detail, sample_figures, threshold)
    empty = [p for p in required if not sum(counts[p])]
    if empty:
        detail = f"no data: no traffic on the {' and '.join(empty)} path in {w} s"
        return Finding("no_data", detail, sample_figures, threshold)
    short = [
        f"{p} {_n(counts[p][0]):g} of {limits.min_completions} completions, "
        f"{_n(counts[p][1]):g} of {limits.min_access_checks} access checks"
        for p in required
        if counts[p][0] < limits.min_completions or counts[p][1] < limits.min_access_checks
    ]
    if short:
        detail = f"too little data in {w} s: " + "; ".join(short)
        return Finding("no_data", detail, sample_figures, threshold)
    return Finding("pass", f"enough data on each path in {w} s", sample_figures, threshold)


def completion_success_rate(figures: Figures, limits: Thresholds, percentage: int) -> Finding:
    """Completion success rate: is verified worse than legacy by more than the margin?
    A sequential test (`sequential.compare`) on the errors, valid at every look."""
    (v_total, v_errors), (l_total, l_errors) = (_completions(figures, p) for p in PATHS)
    rate_figures = {
        "verified": _rate(1 - v_errors / v_total if v_total else None),
        "legacy": _rate(1 - l_errors / l_total if l_total else None),
        "verifiedErrors": _n(v_errors),
        "legacyErrors": _n(l_errors),
        "verifiedCompletions": _n(v_total),
        "legacyCompletions": _n(l_total),
    }
    threshold = {"margin": limits.success_rate_margin, "confidence": 1 - limits.false_rollback_rate}
    return _sequential_finding(
        (v_errors, v_total, l_errors, l_total),
        limits.success_rate_margin,
        SUCCESS_RATE_TAUS,
        limits.false_rollback_rate,
        percentage,
        ("completions", "completions", "errors"),
        lambda: (
            f"verified success rate {_percent(1 - v_errors / v_total)} vs "
            f"{_percent(1 - l_errors / l_total)}{_against(figures)}"
        ),
        rate_figures,
        threshold,
        figures.baseline,
    )


def cache_update_latency(figures: Figures, limits: Thresholds, percentage: int) -> Finding:
    """Cache update latency: is verified's share of updates over the budget higher than
    legacy's by more than the latency margin? The same sequential test, on the histogram's
    buckets. A slow verified path stays right (its update is bounded, the breaker sends
    reads to the DB), so a failure pauses rather than rolls back (`CHECKS`)."""
    budget = limits.p95_budget_s
    (v_within, v_total, edge), (l_within, l_total, _) = (
        _within_budget(figures, p, budget) for p in PATHS
    )
    latency_figures = {
        "verifiedOverBudget": _n(v_total - v_within),
        "verifiedUpdates": _n(v_total),
        "legacyOverBudget": _n(l_total - l_within),
        "legacyUpdates": _n(l_total),
        "verifiedP95Seconds": _round(figures.cache_update_p95_s.get("verified")),
        "legacyP95Seconds": _round(figures.cache_update_p95_s.get("legacy")),
    }
    threshold = {
        "budgetSeconds": budget,
        "bucketSeconds": edge,
        "margin": limits.latency_margin,
        "confidence": 1 - limits.false_rollback_rate,
    }
    return _sequential_finding(
        (v_total - v_within, v_total, l_total - l_within, l_total),
        limits.latency_margin,
        LATENCY_TAUS,
        limits.false_rollback_rate,
        percentage,
        ("cache updates", "updates", "updates over the budget"),
        lambda: (
            f"cache updates over {edge:g} s: verified {_percent((v_total - v_within) / v_total)} "
            f"vs {_percent((l_total - l_within) / l_total)}{_against(figures)}"
        ),
        latency_figures,
        threshold,
        figures.baseline,
    )


def _sequential_finding(
    counts: tuple[float, float, float, float],
    margin: float,
    taus: tuple[float, ...],
    alpha: float,
    percentage: int,
    names: tuple[str, str, str],
    describe: Callable[[], str],
    check_figures: dict[str, Any],
    threshold: dict[str, Any],
    baseline: str | None = None,
) -> Finding:
    """The sequential test on bad events (verified bad, verified all, legacy bad, legacy all):
    no data until both paths have some, then its verdict in words. `names`: what the events
    are called when missing, in the sentence, and what the bad ones are; `describe` is the
    figures' sentence (called only once both paths have events)."""
    v_bad, v_total, l_bad, l_total = counts
    missing_name, unit, bad_name = names
    missing = _no_comparison(percentage, v_total, l_total, missing_name, baseline)
    if missing:
        return Finding("no_data", missing, check_figures, threshold)
    result = compare(v_bad, v_total, l_bad, l_total, margin=margin, alpha=alpha, taus=taus)
    return Finding(
        _VERDICT_STATUS[result.verdict],
        explain(result, describe(), unit),
        check_figures,
        threshold,
        sequential_json(result, bad_name, needed(result, taus)),
    )


def circuit_breaker(figures: Figures, limits: Thresholds, percentage: int) -> Finding:
    """The circuit breaker did not stay open (a short trip is the breaker doing its job)."""
    share = figures.breaker_open_share
    breaker_figures = {
        "openShare": _round(share),
        "trips": None if figures.breaker_trips is None else _n(figures.breaker_trips),
    }
    threshold = {"maxOpenShare": MAX_BREAKER_OPEN_SHARE}
    if share is None:
        detail = "no data: Prometheus has no circuit breaker series"
        return Finding("no_data", detail, breaker_figures, threshold)
    return Finding(
        "pass" if share <= MAX_BREAKER_OPEN_SHARE else "fail",
        f"circuit breaker open {share:.0%} of {figures.window_s} s",
        breaker_figures,
        threshold,
    )


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One check: its name, what it finds, and what a failure of it asks for."""

    name: str
    find: Callable[[Figures, Thresholds, int], Finding]
    on_fail: OnFail
    # False: a failure acts whatever the sample (one false lock is evidence by itself; a
    # sequential test is valid at every look).
    needs_sample: bool

    def check(self, found: Finding) -> Check:
        return Check(self.name, **vars(found), on_fail=self.on_fail, needs_sample=self.needs_sample)


# A false lock or worse completions are as bad for learners as each other: the plan's
# on_failure. A slow cache update or an open breaker leaves the verified path right: pause.
CHECKS = (
    Rule("false_lock_screens", false_lock_screens, on_fail="plan", needs_sample=False),
    Rule("sample_size", sample_size, on_fail="pause", needs_sample=True),
    Rule("completion_success_rate", completion_success_rate, on_fail="plan", needs_sample=False),
    Rule("cache_update_latency", cache_update_latency, on_fail="pause", needs_sample=False),
    Rule("circuit_breaker", circuit_breaker, on_fail="pause", needs_sample=True),
)


def judge(figures: Figures, limits: Thresholds, percentage: int) -> list[Check]:
    """Each check's status from the figures; pure."""
    return [rule.check(rule.find(figures, limits, percentage)) for rule in CHECKS]


def unmeasured(why: str) -> list[Check]:
    """Every check without figures (Prometheus unreachable)."""
    return [rule.check(Finding("no_data", f"no data: {why}", {}, {})) for rule in CHECKS]


# -- what the checks share ---------------------------------------------------------------------


def _completions(figures: Figures, path: str) -> tuple[float, float]:
    """(completions, errors) on `path` over the window."""
    done = (figures.completions or {}).get(path, {})
    return done.get("success", 0.0) + done.get("error", 0.0), done.get("error", 0.0)


def _within_budget(figures: Figures, path: str, budget_s: float) -> tuple[float, float, float]:
    """(updates within the budget, all updates, the bucket used as the budget) on `path`:
    the highest bucket at or below the budget (a budget between buckets counts strictly)."""
    buckets = figures.cache_update_buckets.get(path) or {}
    total = buckets.get(math.inf, 0.0)
    edges = [le for le in buckets if le <= budget_s]
    edge = max(edges) if edges else 0.0
    # increase() extrapolates each bucket alike; min() keeps "within" from passing the total.
    return min(buckets[edge], total) if edges else 0.0, total, edge


def _no_comparison(
    percentage: int, v_total: float, l_total: float, what: str, baseline: str | None
) -> str | None:
    if percentage >= 100 and baseline is None:
        return "no data: no legacy baseline at 100%"
    if baseline is not None and l_total <= 0:
        return f"no data: the baseline ({baseline}) has no {what}"
    empty = [p for p, n in (("verified", v_total), ("legacy", l_total)) if n <= 0]
    if empty:
        return f"no data: no {what} on the {' or '.join(empty)} path yet"
    return None


def _against(figures: Figures) -> str:
    """What verified is compared with, when it is not the legacy path beside it."""
    return f" (the baseline: {figures.baseline})" if figures.baseline else ""


def sequential_json(
    result: Comparison, counting: str, still_needed: float | None = None
) -> dict[str, Any]:
    """What an evaluation keeps of a sequential test: enough to chart the bound over time,
    and the verified outcomes it still needs to decide (`sequential.needed`)."""
    return {
        "method": "mSPRT",
        "counting": counting,
        "statistic": round(result.estimate, 6),  # verified's bad share minus legacy's
        "lower": round(result.lower, 6),
        "upper": round(result.upper, 6),
        "margin": result.margin,
        "confidence": round(result.confidence, 6),
        "evidence": _n(result.evidence),
        "verdict": result.verdict,
        "needed": None if still_needed is None else math.ceil(still_needed),
    }


def explain(result: Comparison, figures: str, units: str) -> str:
    """The test's finding in words, e.g. "verified success rate 99.2% vs 99.6%: worse by
    more than 0.1 point with 99% confidence after 4,310 completions"."""
    confidence = f"{result.confidence * 100:.4g}%"
    after = f"after {result.evidence:,.0f} {units}"
    margin = _points(result.margin)
    if result.verdict == "worse":
        return f"{figures}: worse by more than {margin} with {confidence} confidence {after}"
    if result.verdict == "not_worse":
        return f"{figures}: not worse by more than {margin} with {confidence} confidence {after}"
    # The bound is on verified's bad share minus legacy's: above 0, verified is worse.
    better, worse = -result.lower, result.upper
    if better > 0 and worse > 0:
        span = f"between {_points(better)} better and {_points(worse)} worse"
    elif worse <= 0:
        span = f"between {_points(-worse)} and {_points(better)} better"
    else:
        span = f"between {_points(-better)} and {_points(worse)} worse"
    return (
        f"{figures} {after}: inconclusive, holding (with {confidence} confidence verified is "
        f"{span}; the margin is {margin})"
    )


def _n(value: float) -> float:
    """Counts as Prometheus extrapolates them (increase() over a window), readable."""
    return round(value, 2)


def _percent(share: float) -> str:
    """99.20% -> "99.2%", 100.00% -> "100%"; two decimals at most."""
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _points(share: float) -> str:
    value = abs(share) * 100
    return f"{value:.2f}".rstrip("0").rstrip(".") + (" point" if value <= 1 else " points")


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
