"""What the guard reads from Prometheus over a stage's window: instant queries through its
HTTP API, all at one evaluation time, gathered into `Figures`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import requests

PATHS = ("verified", "legacy")


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be reached or refused a query."""


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
    # The legacy path's false lock screens shown (not judged: legacy is the baseline), for
    # the page's charts beside verified's.
    legacy_false_locks: float | None = None
    # At the last stage the "legacy" figures are the legacy path's history before the move
    # (`watch.with_baseline`); this names it in the checks' words.
    baseline: str | None = None


class Prometheus:
    """Instant queries through Prometheus' HTTP API, all at one evaluation time."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """The vector `expr` evaluates to at `at` (epoch seconds): (labels, value) pairs."""
        data = self._get("query", {"query": expr, "time": f"{at:.3f}"})["data"]
        if data.get("resultType") != "vector":
            raise PrometheusUnavailable(f"answered a {data.get('resultType')}, not a vector")
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def _get(self, endpoint: str, params: dict[str, str]) -> dict:
        """One call of the HTTP API; its JSON body once Prometheus answered success."""
        try:
            answer = requests.get(
                f"{self.url}/api/v1/{endpoint}", params=params, timeout=self.timeout_s
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
        return body

    def query_range(
        self, expr: str, start: float, end: float, step_s: float
    ) -> list[tuple[dict[str, str], list[float]]]:
        """The matrix `expr` evaluates to from `start` to `end` every `step_s` seconds:
        (labels, values) pairs, NaN values left out."""
        body = self._get(
            "query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:.3f}"},
        )
        data = body["data"]
        if data.get("resultType") != "matrix":
            raise PrometheusUnavailable(f"answered a {data.get('resultType')}, not a matrix")
        return [
            (
                series["metric"],
                [v for _, raw in series["values"] if not math.isnan(v := float(raw))],
            )
            for series in data["result"]
        ]


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

    # All three detections are read; the false-lock check counts the larger of client_report
    # and audit as shown (the same lock screens found from either side), and reports
    # double_check catches beside it. Legacy's shown: the larger of its two, as well.
    verified = _selector(selector, path="verified")
    false_locks = by(
        f"sum by (detected_by) (increase(progress_false_lock_screens_total{verified}[{w}]))",
        "detected_by",
    )
    legacy = _selector(selector, path="legacy")
    legacy_locks = by(
        "max(sum by (detected_by) (increase(progress_false_lock_screens_total"
        f'{legacy[:-1]},detected_by!="double_check"}}[{w}])))'
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
        legacy_false_locks=_finite((legacy_locks or {}).get(())),
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
