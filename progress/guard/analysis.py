"""The guard's analysis, free of the database and of Flask: the figures it reads from
Prometheus over a stage's window, each check's verdict (`judge`), and the decision
(`decide`). Both judge and decide are pure, so the decision table is tested without
servers."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import requests

from ..models import PLAN_DEFAULTS
from .sequential import Comparison, compare

if TYPE_CHECKING:
    from ..models import RolloutPlan

log = logging.getLogger(__name__)

CheckStatus = Literal["pass", "fail", "inconclusive", "no_data"]
Decision = Literal["advance", "hold", "pause", "rollback", "ready"]
OnFailure = Literal["rollback", "pause"]
PATHS = ("verified", "legacy")
# The breaker "stayed open" when it was open for more than this share of the window.
MAX_BREAKER_OPEN_SHARE = 0.5


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or refused a query."""


# -- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What Prometheus saw over the window; None where it has no series at all."""

    window_s: int
    false_locks: dict[str, float] | None  # the verified path's, by detected_by
    completions: dict[str, dict[str, float]] | None  # path -> outcome -> count
    access_checks: dict[str, float] | None  # path -> count
    cache_update_p95_s: dict[str, float | None] = field(default_factory=dict)  # path -> s
    # path -> bucket's upper bound (inf: every update) -> updates at or below it
    cache_update_buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    breaker_open_share: float | None = None  # worst instance's share of the window open
    breaker_trips: float | None = None


class Prometheus:
    """Instant queries through Prometheus' HTTP API, all at one evaluation time."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """The vector `expr` evaluates to at `at` (epoch seconds): (labels, value) pairs."""
        try:
            answer = requests.get(
                f"{self.url}/api/v1/query",
                params={"query": expr, "time": f"{at:.3f}"},
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise PrometheusUnavailable(f"unreachable at {self.url}: {type(exc).__name__}") from exc
        try:
            body = answer.json()
        except ValueError:  # a proxy's error page, say
            raise PrometheusUnavailable(
                f"answered {answer.status_code} without JSON at {self.url}"
            ) from None
        if answer.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(
                f"refused the query ({answer.status_code}: {body.get('error', '')[:200]})"
            )
        data = body["data"]
        if data.get("resultType") != "vector":
            raise PrometheusUnavailable(f"answered a {data.get('resultType')}, not a vector")
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]


def _selector(base: str, **equal: str) -> str:
    """`{job="lesson-progress",path="verified"}`: the configured matchers and `equal`."""
    matchers = [base] if base else []
    matchers += [f'{name}="{value}"' for name, value in equal.items()]
    return "{" + ",".join(matchers) + "}"


def read_figures(prometheus: Prometheus, window_s: int, at: float, selector: str) -> Figures:
    """The guard's queries over `[window_s]` ending at `at`."""
    w = f"{window_s}s"

    def by(expr: str, *labels: str) -> dict[tuple[str, ...], float] | None:
        result = prometheus.query(expr, at)
        if not result:
            return None
        return {tuple(metric.get(label, "") for label in labels): v for metric, v in result}

    # All three detections are read; `judge` counts client_report + audit as shown, i.e.
    # sum(increase(progress_false_lock_screens_total{path="verified",
    #     detected_by!="double_check"}[w])), and reports double_check catches beside it.
    verified = _selector(selector, path="verified")
    false_locks = by(
        f"sum by (detected_by) (increase(progress_false_lock_screens_total{verified}[{w}]))",
        "detected_by",
    )
    completions = by(
        f"sum by (path, outcome) (increase(progress_completions_total{_selector(selector)}[{w}]))",
        "path",
        "outcome",
    )
    access = by(
        f"sum by (path) (increase(progress_access_checks_total{_selector(selector)}[{w}]))",
        "path",
    )
    p95 = by(
        "histogram_quantile(0.95, sum by (path, le) (increase("
        f"progress_cache_update_seconds_bucket{_selector(selector)}[{w}])))",
        "path",
    )
    buckets = by(
        "sum by (path, le) (increase("
        f"progress_cache_update_seconds_bucket{_selector(selector)}[{w}]))",
        "path",
        "le",
    )
    breaker = by(f"max(avg_over_time(progress_circuit_breaker_open{_selector(selector)}[{w}]))")
    trips = by(f"sum(increase(progress_circuit_breaker_trips_total{_selector(selector)}[{w}]))")

    completion_counts = None
    if completions is not None:
        completion_counts = {p: {"success": 0.0, "error": 0.0} for p in PATHS}
        for (path, outcome), value in completions.items():
            if path in completion_counts:
                completion_counts[path][outcome] = value
    return Figures(
        window_s=window_s,
        false_locks=None if false_locks is None else {k[0]: v for k, v in false_locks.items()},
        completions=completion_counts,
        access_checks=None if access is None else {p: access.get((p,), 0.0) for p in PATHS},
        cache_update_p95_s={p: _finite((p95 or {}).get((p,))) for p in PATHS},
        cache_update_buckets=_buckets(buckets or {}),
        breaker_open_share=_finite((breaker or {}).get(())),
        breaker_trips=_finite((trips or {}).get(())),
    )


def _buckets(series: dict[tuple[str, ...], float]) -> dict[str, dict[float, float]]:
    by_path: dict[str, dict[float, float]] = {p: {} for p in PATHS}
    for (path, le), value in series.items():
        if path in by_path:
            by_path[path][float(le)] = value  # "+Inf" reads as inf
    return by_path


def _finite(value: float | None) -> float | None:
    """histogram_quantile over no observations is NaN: no data."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value


# -- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    min_completions: int
    min_access_checks: int
    success_rate_margin: float
    p95_budget_s: float  # the cache update latency budget
    latency_margin: float = float(PLAN_DEFAULTS["latency_margin"])
    false_rollback_rate: float = float(PLAN_DEFAULTS["false_rollback_rate"])

    @classmethod
    def of(cls, plan: RolloutPlan) -> Thresholds:
        return cls(
            plan.min_completions,
            plan.min_access_checks,
            plan.success_rate_margin,
            plan.p95_budget_seconds,
            plan.latency_margin,
            plan.false_rollback_rate,
        )


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    figures: dict[str, Any]
    threshold: dict[str, Any]
    # A failure asks for the plan's on_failure ("plan") or for a pause.
    on_fail: Literal["plan", "pause"] = "pause"
    # Acted on only with the minimum sample on each path.
    needs_sample: bool = True
    # A sequential test's statistic, bound and evidence so far (`sequential_json`).
    test: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
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


def _n(value: float) -> float:
    """Counts as Prometheus extrapolates them (increase() over a window), readable."""
    return round(value, 2)


def judge(figures: Figures, limits: Thresholds, percentage: int) -> list[Check]:
    """Each check's status from the figures; pure."""
    return [
        false_lock_check(figures),
        sample_check(figures, limits, percentage),
        success_rate_check(figures, limits, percentage),
        latency_check(figures, limits, percentage),
        breaker_check(figures),
    ]


def false_lock_check(figures: Figures) -> Check:
    """False lock screens shown on the verified path: one is enough, whatever the sample.

    Counted: `client_report` (the client showed it) and `audit` (a "locked" answer given,
    then contradicted by the primary). Not counted: `double_check`, a stale "locked" that
    the verified path's own double check caught and answered "accessible" instead: no
    learner saw it, and counting it would roll back the very layer that prevents false lock
    screens. It is shown among the figures."""
    w = figures.window_s
    if figures.false_locks is None:
        return Check(
            "false_lock_screens",
            "no_data",
            "no data: Prometheus has no false-lock series for the verified path",
            {},
            {"maxShown": 0},
            on_fail="plan",
            needs_sample=False,
        )
    report = figures.false_locks.get("client_report", 0.0)
    audit = figures.false_locks.get("audit", 0.0)
    caught = figures.false_locks.get("double_check", 0.0)
    shown = report + audit
    status: CheckStatus = "fail" if shown > 0 else "pass"
    return Check(
        "false_lock_screens",
        status,
        (
            f"false lock screens shown on the verified path: {_n(shown):g} in {w} s "
            f"(client_report {_n(report):g}, audit {_n(audit):g})"
            if status == "fail"
            else f"no false lock screen shown on the verified path in {w} s "
            f"({_n(caught):g} caught by its double check)"
        ),
        {
            "shown": _n(shown),
            "clientReport": _n(report),
            "audit": _n(audit),
            "caughtByDoubleCheck": _n(caught),
        },
        {"maxShown": 0},
        on_fail="plan",
        needs_sample=False,
    )


def _required(percentage: int) -> tuple[str, ...]:
    """The paths that must show a sample: at 100% the legacy path serves no one."""
    return ("verified",) if percentage >= 100 else PATHS


def _completions(figures: Figures, path: str) -> tuple[float, float]:
    """(completions, errors) on `path` over the window."""
    done = (figures.completions or {}).get(path, {})
    return done.get("success", 0.0) + done.get("error", 0.0), done.get("error", 0.0)


def sample_check(figures: Figures, limits: Thresholds, percentage: int) -> Check:
    """The plan's minimum sample on each path before a stage may advance."""
    w = figures.window_s
    required = _required(percentage)
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
        status: CheckStatus = "no_data"
        detail = "no data: Prometheus has no completion or access-check series"
    else:
        empty = [p for p in required if not sum(counts[p])]
        short = [
            f"{p} {_n(counts[p][0]):g} of {limits.min_completions} completions, "
            f"{_n(counts[p][1]):g} of {limits.min_access_checks} access checks"
            for p in required
            if counts[p][0] < limits.min_completions or counts[p][1] < limits.min_access_checks
        ]
        if empty:
            status, detail = (
                "no_data",
                f"no data: no traffic on the {' and '.join(empty)} path in {w} s",
            )
        elif short:
            status, detail = "no_data", f"too little data in {w} s: " + "; ".join(short)
        else:
            status, detail = "pass", f"enough data on each path in {w} s"
    return Check("sample_size", status, detail, sample_figures, threshold)


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


def success_rate_check(figures: Figures, limits: Thresholds, percentage: int) -> Check:
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
    missing = _no_comparison(percentage, v_total, l_total, "completions")
    if missing:
        return Check(
            "completion_success_rate", "no_data", missing, rate_figures, threshold, on_fail="plan"
        )
    result = compare(
        v_errors,
        v_total,
        l_errors,
        l_total,
        margin=limits.success_rate_margin,
        alpha=limits.false_rollback_rate,
        taus=SUCCESS_RATE_TAUS,
    )
    detail = explain(
        result,
        f"verified success rate {_percent(1 - v_errors / v_total)} vs "
        f"{_percent(1 - l_errors / l_total)}",
        "completions",
    )
    return Check(
        "completion_success_rate",
        _VERDICT_STATUS[result.verdict],
        detail,
        rate_figures,
        threshold,
        on_fail="plan",
        needs_sample=False,  # the test is valid at every look, whatever the sample
        test=sequential_json(result, "errors"),
    )


def _within_budget(figures: Figures, path: str, budget_s: float) -> tuple[float, float, float]:
    """(updates within the budget, all updates, the bucket used as the budget) on `path`:
    the highest bucket at or below the budget (a budget between buckets counts strictly)."""
    buckets = figures.cache_update_buckets.get(path) or {}
    total = buckets.get(math.inf, 0.0)
    edges = [le for le in buckets if le <= budget_s]
    edge = max(edges) if edges else 0.0
    # increase() extrapolates each bucket alike; min() keeps "within" from passing the total.
    return min(buckets[edge], total) if edges else 0.0, total, edge


def latency_check(figures: Figures, limits: Thresholds, percentage: int) -> Check:
    """Cache update latency: is verified's share of updates over the budget higher than
    legacy's by more than the latency margin? The same sequential test, on the histogram's
    buckets. A slow verified path stays right (its update is bounded, the breaker sends
    reads to the DB), so a failure pauses rather than rolls back."""
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
    missing = _no_comparison(percentage, v_total, l_total, "cache updates")
    if missing:
        return Check("cache_update_latency", "no_data", missing, latency_figures, threshold)
    result = compare(
        v_total - v_within,
        v_total,
        l_total - l_within,
        l_total,
        margin=limits.latency_margin,
        alpha=limits.false_rollback_rate,
        taus=LATENCY_TAUS,
    )
    detail = explain(
        result,
        f"cache updates over {edge:g} s: verified {_percent((v_total - v_within) / v_total)} "
        f"vs {_percent((l_total - l_within) / l_total)}",
        "updates",
    )
    return Check(
        "cache_update_latency",
        _VERDICT_STATUS[result.verdict],
        detail,
        latency_figures,
        threshold,
        needs_sample=False,
        test=sequential_json(result, "updates over the budget"),
    )


def _no_comparison(percentage: int, v_total: float, l_total: float, what: str) -> str | None:
    if percentage >= 100:
        return "no data: no legacy baseline at 100%"
    empty = [p for p, n in (("verified", v_total), ("legacy", l_total)) if n <= 0]
    if empty:
        return f"no data: no {what} on the {' or '.join(empty)} path yet"
    return None


def breaker_check(figures: Figures) -> Check:
    """The circuit breaker did not stay open (a short trip is the breaker doing its job)."""
    share = figures.breaker_open_share
    breaker_figures = {
        "openShare": _round(share),
        "trips": None if figures.breaker_trips is None else _n(figures.breaker_trips),
    }
    threshold = {"maxOpenShare": MAX_BREAKER_OPEN_SHARE}
    if share is None:
        return Check(
            "circuit_breaker",
            "no_data",
            "no data: Prometheus has no circuit breaker series",
            breaker_figures,
            threshold,
        )
    return Check(
        "circuit_breaker",
        "pass" if share <= MAX_BREAKER_OPEN_SHARE else "fail",
        f"circuit breaker open {share:.0%} of {figures.window_s} s",
        breaker_figures,
        threshold,
    )


# -- explanations ----------------------------------------------------------------------------


def sequential_json(result: Comparison, counting: str) -> dict[str, Any]:
    """What an evaluation keeps of a sequential test: enough to chart the bound over time."""
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
    }


def _percent(share: float) -> str:
    """99.20% -> "99.2%", 100.00% -> "100%"; two decimals at most."""
    return f"{share * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _points(share: float) -> str:
    value = abs(share) * 100
    return f"{value:.2f}".rstrip("0").rstrip(".") + (" point" if value <= 1 else " points")


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


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def unmeasured(why: str) -> list[Check]:
    """Every check without figures (Prometheus unreachable)."""
    names = (
        "false_lock_screens",
        "sample_size",
        "completion_success_rate",
        "cache_update_latency",
        "circuit_breaker",
    )
    return [Check(name, "no_data", f"no data: {why}", {}, {}) for name in names]


# -- the decision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Situation:
    """Where the rollout stands, as the decision needs it."""

    percentage: int
    next_percentage: int | None  # None: the last stage, or off the plan
    stage_elapsed_s: float
    min_stage_seconds: int
    auto_advance: bool
    on_failure: OnFailure
    paused: bool
    off_plan: bool = False


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def decide(checks: Sequence[Check], now: Situation) -> Verdict:
    """The guard's decision from the checks and the situation; pure."""
    if now.percentage == 0:
        return Verdict(
            "hold",
            "0%: the verified path serves no learner, so there is nothing to judge; "
            "the first stage is started by a person (advance)",
        )
    sampled = all(c.status == "pass" for c in checks if c.name == "sample_size")
    failed = [c for c in checks if c.status == "fail"]
    acting = [c for c in failed if not c.needs_sample or sampled]
    if acting:
        wanted: Decision = now.on_failure if any(c.on_fail == "plan" for c in acting) else "pause"
        why = "; ".join(c.detail for c in acting)
        if wanted == "pause" and now.paused:
            return Verdict("hold", f"already paused; still failing: {why}")
        if wanted == "rollback":
            return Verdict("rollback", f"rolling back to 0%: {why}")
        return Verdict("pause", f"pausing at {now.percentage}%: {why}")
    if now.paused:
        return Verdict("hold", "paused: nothing advances until a person resumes the plan")
    if now.off_plan:
        return Verdict(
            "hold",
            f"the rollout is at {now.percentage}%, which is not a stage of the plan; "
            "nothing advances until it is on a stage again",
        )
    if now.next_percentage is None:
        return Verdict(
            "hold",
            f"last stage ({now.percentage}%): nothing to advance to; "
            "still watching for false lock screens",
        )
    waiting = [c for c in checks if c.status in ("no_data", "inconclusive")]
    if waiting:
        # The sample says it best ("no data" / "too little data"), then a test still
        # inconclusive; the rest are named.
        ranked = sorted(
            waiting,
            key=lambda c: (
                c.name != "sample_size" or c.status != "no_data",
                c.status != "inconclusive",
            ),
        )
        lead = ranked[0]
        reason = lead.detail
        others = [c for c in waiting if c is not lead]
        inconclusive = [c.detail for c in others if c.status == "inconclusive"]
        if inconclusive:
            reason += "; " + "; ".join(inconclusive)
        without = [c.name for c in others if c.status == "no_data"]
        if without:
            reason += f" (also without data: {', '.join(without)})"
        if failed:  # failures on too small a sample: not acted on
            reason += "; not acted on without the sample: " + "; ".join(c.detail for c in failed)
        return Verdict("hold", reason)
    if now.stage_elapsed_s < now.min_stage_seconds:
        return Verdict(
            "hold",
            f"all checks pass; the stage has run {int(now.stage_elapsed_s)} s "
            f"of its {now.min_stage_seconds} s",
        )
    summary = (
        f"all checks pass after {int(now.stage_elapsed_s)} s at {now.percentage}% "
        f"({'; '.join(c.detail for c in checks)})"
    )
    if now.auto_advance:
        return Verdict("advance", f"advancing to {now.next_percentage}%: {summary}")
    return Verdict("ready", f"ready for {now.next_percentage}% when product advances: {summary}")
