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

if TYPE_CHECKING:
    from ..models import RolloutPlan

log = logging.getLogger(__name__)

CheckStatus = Literal["pass", "fail", "no_data"]
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
        breaker_open_share=_finite((breaker or {}).get(())),
        breaker_trips=_finite((trips or {}).get(())),
    )


def _finite(value: float | None) -> float | None:
    """histogram_quantile over no observations is NaN: no data."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value


# -- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    min_completions: int
    min_access_checks: int
    success_rate_margin: float
    p95_budget_s: float

    @classmethod
    def of(cls, plan: RolloutPlan) -> Thresholds:
        return cls(
            plan.min_completions,
            plan.min_access_checks,
            plan.success_rate_margin,
            plan.p95_budget_seconds,
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

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "figures": self.figures,
            "threshold": self.threshold,
        }


def _n(value: float) -> float:
    """Counts as Prometheus extrapolates them (increase() over a window), readable."""
    return round(value, 2)


def judge(figures: Figures, limits: Thresholds, percentage: int) -> list[Check]:
    """Each check's status from the figures; pure."""
    w = figures.window_s
    # The paths that must show a sample: at 100% the legacy path serves no one.
    required = ("verified",) if percentage >= 100 else PATHS
    checks: list[Check] = []

    # 1. False lock screens on the verified path. Counted: `client_report` (the client
    # showed it) and `audit` (a "locked" answer given, then contradicted by the primary).
    # Not counted: `double_check`, a stale "locked" that the verified path's own double
    # check caught and answered "accessible" instead: no learner saw it, it is the fix
    # doing its job, and counting it would roll back the very layer that prevents false
    # lock screens. (The legacy path's audit counts only answers it gave, so the paths
    # compare.) It is shown among the figures. One shown false lock is enough: threshold 0.
    if figures.false_locks is None:
        checks.append(
            Check(
                "false_lock_screens",
                "no_data",
                "no data: Prometheus has no false-lock series for the verified path",
                {},
                {"maxShown": 0},
                on_fail="plan",
                needs_sample=False,
            )
        )
    else:
        report = figures.false_locks.get("client_report", 0.0)
        audit = figures.false_locks.get("audit", 0.0)
        caught = figures.false_locks.get("double_check", 0.0)
        shown = report + audit
        status: CheckStatus = "fail" if shown > 0 else "pass"
        checks.append(
            Check(
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
        )

    # 2. The sample: completions and access checks on each path.
    counts: dict[str, dict[str, float]] = {}
    for path in PATHS:
        done = (figures.completions or {}).get(path, {})
        counts[path] = {
            "completions": done.get("success", 0.0) + done.get("error", 0.0),
            "errors": done.get("error", 0.0),
            "accessChecks": (figures.access_checks or {}).get(path, 0.0),
        }
    sample_figures = {
        f"{path}{kind[0].upper()}{kind[1:]}": _n(counts[path][kind])
        for path in PATHS
        for kind in ("completions", "accessChecks")
    }
    sample_threshold = {
        "minCompletions": limits.min_completions,
        "minAccessChecks": limits.min_access_checks,
        "paths": list(required),
    }
    if figures.completions is None or figures.access_checks is None:
        sample_status: CheckStatus = "no_data"
        sample_detail = "no data: Prometheus has no completion or access-check series"
    else:
        empty = [p for p in required if not counts[p]["completions"] + counts[p]["accessChecks"]]
        short = [
            f"{p} {_n(counts[p]['completions']):g} of {limits.min_completions} completions, "
            f"{_n(counts[p]['accessChecks']):g} of {limits.min_access_checks} access checks"
            for p in required
            if counts[p]["completions"] < limits.min_completions
            or counts[p]["accessChecks"] < limits.min_access_checks
        ]
        if empty:
            sample_status = "no_data"
            sample_detail = f"no data: no traffic on the {' and '.join(empty)} path in {w} s"
        elif short:
            sample_status = "no_data"
            sample_detail = f"too little data in {w} s: " + "; ".join(short)
        else:
            sample_status = "pass"
            sample_detail = f"enough data on each path in {w} s"
    checks.append(
        Check("sample_size", sample_status, sample_detail, sample_figures, sample_threshold)
    )

    # 3. Completion success rate: verified no worse than legacy by more than the margin.
    rates = {
        p: (1 - counts[p]["errors"] / counts[p]["completions"])
        if counts[p]["completions"]
        else None
        for p in PATHS
    }
    rate_figures = {
        "verified": _rate(rates["verified"]),
        "legacy": _rate(rates["legacy"]),
        "verifiedErrors": _n(counts["verified"]["errors"]),
        "legacyErrors": _n(counts["legacy"]["errors"]),
    }
    rate_threshold: dict[str, Any] = {"margin": limits.success_rate_margin}
    verified_rate, legacy_rate = rates["verified"], rates["legacy"]
    if percentage >= 100:
        rate_status: CheckStatus = "no_data"
        rate_detail = "no data: no legacy baseline at 100%"
    elif (
        verified_rate is None
        or legacy_rate is None
        or min(counts[p]["completions"] for p in PATHS) < max(limits.min_completions, 1)
    ):
        rate_status = "no_data"
        rate_detail = (
            f"too little data: {_n(counts['verified']['completions']):g} verified and "
            f"{_n(counts['legacy']['completions']):g} legacy completions, "
            f"{limits.min_completions} needed on each"
        )
    else:
        floor = legacy_rate - limits.success_rate_margin
        rate_threshold["minVerified"] = _rate(floor)
        rate_status = "pass" if verified_rate >= floor else "fail"
        rate_detail = (
            f"completion success rate verified {verified_rate:.2%} vs legacy {legacy_rate:.2%}"
            f" (margin {limits.success_rate_margin:.2%})"
        )
    checks.append(
        Check(
            "completion_success_rate",
            rate_status,
            rate_detail,
            rate_figures,
            rate_threshold,
            on_fail="plan",
        )
    )

    # 4. The verified path's cache update latency, p95 within the budget.
    p95 = figures.cache_update_p95_s.get("verified")
    latency_figures = {
        "verifiedSeconds": None if p95 is None else round(p95, 4),
        "legacySeconds": _round(figures.cache_update_p95_s.get("legacy")),
    }
    if p95 is None:
        checks.append(
            Check(
                "cache_update_p95",
                "no_data",
                f"no data: no verified cache update in {w} s",
                latency_figures,
                {"maxSeconds": limits.p95_budget_s},
            )
        )
    else:
        checks.append(
            Check(
                "cache_update_p95",
                "pass" if p95 <= limits.p95_budget_s else "fail",
                f"verified cache update p95 {p95:.3f} s (budget {limits.p95_budget_s} s)",
                latency_figures,
                {"maxSeconds": limits.p95_budget_s},
            )
        )

    # 5. The circuit breaker did not stay open (a short trip is the breaker doing its job).
    share = figures.breaker_open_share
    breaker_figures = {
        "openShare": _round(share),
        "trips": None if figures.breaker_trips is None else _n(figures.breaker_trips),
    }
    if share is None:
        checks.append(
            Check(
                "circuit_breaker",
                "no_data",
                "no data: Prometheus has no circuit breaker series",
                breaker_figures,
                {"maxOpenShare": MAX_BREAKER_OPEN_SHARE},
            )
        )
    else:
        checks.append(
            Check(
                "circuit_breaker",
                "pass" if share <= MAX_BREAKER_OPEN_SHARE else "fail",
                f"circuit breaker open {share:.0%} of {w} s",
                breaker_figures,
                {"maxOpenShare": MAX_BREAKER_OPEN_SHARE},
            )
        )
    return checks


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
        "cache_update_p95",
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
    missing = [c for c in checks if c.status == "no_data"]
    if missing:
        # The sample says it best ("no data" / "too little data"); the rest are named.
        lead = next((c for c in missing if c.name == "sample_size"), missing[0])
        reason = lead.detail
        others = [c.name for c in missing if c is not lead]
        if others:
            reason += f" (also without data: {', '.join(others)})"
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
