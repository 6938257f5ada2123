"""What the lab found: the learners' view, the instances' metrics, the primary's rows, the
table and the verdict."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import requests
from prometheus_client.parser import text_string_to_metric_families

from progress import metrics
from progress.metrics import Samples, add_samples, sample_total
from progress.path_names import PATHS

from .learners import LearnerResult, Timeline, percentile

DETECTORS = ("client_report", "audit", "double_check")


# ---------------------------------------------------------------- metrics


def scrape(urls: Iterable[str]) -> Samples:
    """Every instance's /metrics, summed sample by sample."""
    total: Samples = {}
    for url in urls:
        response = requests.get(url + "/metrics", timeout=30)
        response.raise_for_status()
        add_samples(text_string_to_metric_families(response.text), total)
    return total


def metric(samples: Samples, name: str, **labels: str) -> int:
    """The sum of `name` over every series carrying `labels`."""
    return round(sample_total(samples, name, **labels))


def path_metrics(samples: Samples, path: str) -> dict[str, int]:
    figures = {
        "completions_success": metric(
            samples, "progress_completions_total", path=path, outcome="success"
        ),
        "completions_error": metric(
            samples, "progress_completions_total", path=path, outcome="error"
        ),
        "staleness_incidents": metric(
            samples, "progress_cache_staleness_incidents_total", path=path
        ),
        "cache_mismatches": metric(samples, "progress_cache_mismatches_total", path=path),
        "review_sets": metric(samples, "progress_review_sets_total", path=path),
    }
    for detector in ("audit", "double_check"):
        figures[f"stale_reviews_{detector}"] = metric(
            samples, "progress_stale_review_sets_total", path=path, detected_by=detector
        )
    for detector in DETECTORS:
        figures[f"false_locks_{detector}"] = metric(
            samples, "progress_false_lock_screens_total", path=path, detected_by=detector
        )
    return figures


def path_reads(samples: Samples, path: str) -> dict[str, Any]:
    """progress_reads_total for one path: by target and reason, the primary's share of all
    reads, and primary reads per completion the metrics counted (the bound on the primary's
    load: docs/scaling.md)."""
    by_reason: dict[str, dict[str, int]] = {}
    for target, reasons in (
        ("primary", metrics.PRIMARY_READ_REASONS),
        ("replica", metrics.REPLICA_READ_REASONS),
    ):
        by_reason[target] = {
            reason: metric(samples, "progress_reads_total", path=path, target=target, reason=reason)
            for reason in reasons
        }
    primary, replica = sum(by_reason["primary"].values()), sum(by_reason["replica"].values())
    completions = metric(samples, "progress_completions_total", path=path, outcome="success")
    # The review sets' confirmations apart: one per review opened by a client without its
    # version, whatever the completions.
    navigation = primary - by_reason["primary"]["review_check"]
    return {
        "primary": primary,
        "replica": replica,
        "primaryShare": round(primary / (primary + replica), 4) if primary + replica else None,
        "primaryReadsPerCompletion": round(primary / completions, 3) if completions else None,
        "primaryReadsPerCompletionBesidesReview": (
            round(navigation / completions, 3) if completions else None
        ),
        "byReason": by_reason,
    }


def db_retries(samples: Samples) -> dict[str, int]:
    """progress_db_retries_total has no path label: by reason, over both paths."""
    return {
        reason: metric(samples, "progress_db_retries_total", reason=reason)
        for reason in ("replica_lag", "db_error")
    }


# ---------------------------------------------------------------- the learners' side


@dataclass
class PathView:
    """What the learners of one path saw."""

    learners: int = 0
    aborted: int = 0
    acknowledged: int = 0
    false_locks_seen: int = 0
    false_unlocks_seen: int = 0
    reviews: int = 0
    stale_reviews_seen: int = 0  # by the path that answered the review
    reports_acknowledged: int = 0
    reports_confirmed_false: int = 0
    reports_uncertain: int = 0
    reports_failed: int = 0
    retries: int = 0
    connection_errors: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def latency_ms(self, kind: str) -> dict[str, float | None]:
        values = self.latencies.get(kind, [])
        figures: dict[str, float | None] = {"count": len(values)}
        for q in (50, 95, 99):
            value = percentile(values, q)
            figures[f"p{q}_ms"] = None if value is None else round(value * 1000, 1)
        return figures


def learners_by_path(results: Sequence[LearnerResult]) -> dict[str, PathView]:
    views = {path: PathView() for path in PATHS}
    for result in results:
        view = views.setdefault(result.path or "unknown", PathView())
        view.learners += 1
        view.aborted += result.aborted is not None
        view.acknowledged += len(result.acknowledged)
        # False locks by the path that answered "locked": a rollout change moves a learner.
        for shown_by, count in result.false_locks_by_path.items():
            views.setdefault(shown_by, PathView()).false_locks_seen += count
        view.false_unlocks_seen += result.false_unlocks_seen
        view.reviews += result.reviews
        for shown_by, count in result.stale_reviews_by_path.items():
            views.setdefault(shown_by, PathView()).stale_reviews_seen += count
        view.reports_acknowledged += result.reports_acknowledged
        view.reports_confirmed_false += result.reports_confirmed_false
        view.reports_uncertain += result.reports_uncertain
        view.reports_failed += result.reports_failed
        view.retries += result.retries
        view.connection_errors += result.connection_errors
        # Latencies by the path that served each request (X-Progress-Path).
        for served, kinds in result.latencies.items():
            target = views.setdefault(served, PathView())
            for kind, values in kinds.items():
                target.latencies.setdefault(kind, []).extend(values)
    return views


# ---------------------------------------------------------------- the primary's rows


def lost_completions(primary_url: str, results: Sequence[LearnerResult]) -> list[dict[str, str]]:
    """Acknowledged completions that the primary does not hold."""
    acknowledged = {
        (result.learner_id, module, lesson)
        for result in results
        for module, lesson in result.acknowledged
    }
    if not acknowledged:
        return []
    learner_ids = sorted({uuid.UUID(learner) for learner, _, _ in acknowledged})
    with psycopg.connect(primary_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT lp.user_id, m.slug, l.slug FROM lesson_progress lp "
            "JOIN lessons l ON l.id = lp.lesson_id JOIN modules m ON m.id = l.module_id "
            "WHERE lp.user_id = ANY(%s)",
            (learner_ids,),
        ).fetchall()
    stored = {(str(user_id), module, lesson) for user_id, module, lesson in rows}
    return [
        {"learner": learner, "moduleId": module, "lessonId": lesson}
        for learner, module, lesson in sorted(acknowledged - stored)
    ]


# ---------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def counts_agree(view: PathView, client_reports: int) -> tuple[bool, str]:
    """Learners' false locks == the metrics' client_report count. A report whose first try
    failed on the network may or may not have been counted; one that failed twice was not."""
    seen = view.false_locks_seen
    if client_reports == seen:
        return True, f"{seen} == {client_reports}"
    low, high = seen - view.reports_failed, seen + view.reports_uncertain
    if (view.reports_failed or view.reports_uncertain) and low <= client_reports <= high:
        return True, (
            f"{seen} ~ {client_reports} (within {low}..{high}: "
            f"{view.reports_uncertain} uncertain, {view.reports_failed} failed reports)"
        )
    return False, f"{seen} != {client_reports}"


def verdict(
    views: Mapping[str, PathView],
    metrics_by_path: Mapping[str, Mapping[str, int]],
    lost: Sequence[Mapping[str, str]],
    rollout: int,
) -> list[Check]:
    legacy, verified = views["legacy"], views["verified"]
    checks = [
        Check(
            "verified false lock screens seen by learners == 0",
            verified.false_locks_seen == 0,
            f"{verified.false_locks_seen} seen by {verified.learners} verified learners",
        )
    ]
    if rollout < 100 and legacy.learners:
        exercised = legacy.false_locks_seen > 0
        checks.append(
            Check(
                "legacy false lock screens seen > 0 (the race was exercised)",
                exercised,
                f"{legacy.false_locks_seen} seen by {legacy.learners} legacy learners"
                if exercised
                else "none seen: the lab did not exercise the race, so zero on the verified "
                "path proves nothing",
            )
        )
    else:
        checks.append(
            Check(
                "legacy false lock screens seen > 0 (the race was exercised)",
                True,
                "not applicable: no legacy learners at this rollout, so there is no baseline "
                "showing the race happened",
            )
        )
    checks.append(
        Check(
            "verified stale review sets seen by learners == 0",
            verified.stale_reviews_seen == 0,
            f"{verified.stale_reviews_seen} seen in {verified.reviews} verified reviews",
        )
    )
    for path in PATHS:
        ok, detail = counts_agree(views[path], metrics_by_path[path]["false_locks_client_report"])
        checks.append(Check(f"{path}: learners' count == metrics' client_report count", ok, detail))
    checks.append(
        Check(
            "no acknowledged completion lost",
            not lost,
            f"lost acknowledged completions: {len(lost)}",
        )
    )
    unlocks = sum(view.false_unlocks_seen for view in views.values())
    checks.append(
        Check(
            "no false unlocks (a lesson open before its predecessor was completed)",
            unlocks == 0,
            f"{unlocks} seen",
        )
    )
    aborted = sum(view.aborted for view in views.values())
    checks.append(Check("every learner finished its lessons", aborted == 0, f"{aborted} aborted"))
    return checks


# ---------------------------------------------------------------- the table


def _latency_cell(view: PathView, kind: str) -> str:
    figures = view.latency_ms(kind)
    p50, p95, p99 = figures["p50_ms"], figures["p95_ms"], figures["p99_ms"]
    if p50 is None or p95 is None or p99 is None:
        return "-"
    return f"{p50:.0f} / {p95:.0f} / {p99:.0f} ({figures['count']})"


def _reads_cell(reads: Mapping[str, Any]) -> str:
    share = reads["primaryShare"]
    return f"{reads['primary']} / {reads['replica']} ({'-' if share is None else f'{share:.1%}'})"


def markdown_table(
    views: Mapping[str, PathView],
    metrics_by_path: Mapping[str, Mapping[str, int]],
    agreement: Mapping[str, tuple[bool, str]],
    reads: Mapping[str, Mapping[str, Any]],
) -> str:
    rows: list[tuple[str, list[Any]]] = []

    def row(label: str, value: Callable[[str], Any]) -> None:
        rows.append((label, [value(path) for path in PATHS]))

    row("learners (aborted)", lambda p: f"{views[p].learners} ({views[p].aborted})")
    row("completions acknowledged (HTTP 200)", lambda p: views[p].acknowledged)
    row(
        "completions counted by metrics (success / error)",
        lambda p: (
            f"{metrics_by_path[p]['completions_success']} / "
            f"{metrics_by_path[p]['completions_error']}"
        ),
    )
    row("**false lock screens seen by learners**", lambda p: f"**{views[p].false_locks_seen}**")
    row(
        "false lock screens counted by metrics: client_report",
        lambda p: metrics_by_path[p]["false_locks_client_report"],
    )
    row(
        "learners' count == metrics' client_report",
        lambda p: ("yes" if agreement[p][0] else "**NO**") + f" ({agreement[p][1]})",
    )
    row("false lock screens: audit", lambda p: metrics_by_path[p]["false_locks_audit"])
    row(
        "false lock screens: double_check (caught, answered open)",
        lambda p: metrics_by_path[p]["false_locks_double_check"],
    )
    row("**stale review sets seen by learners**", lambda p: f"**{views[p].stale_reviews_seen}**")
    row("stale review sets: audit", lambda p: metrics_by_path[p]["stale_reviews_audit"])
    row(
        "stale review sets: double_check (caught, answered current)",
        lambda p: metrics_by_path[p]["stale_reviews_double_check"],
    )
    row("staleness incidents", lambda p: metrics_by_path[p]["staleness_incidents"])
    row("cache mismatches", lambda p: metrics_by_path[p]["cache_mismatches"])
    row("access check ms: p50 / p95 / p99 (n)", lambda p: _latency_cell(views[p], "access"))
    row("completion ms: p50 / p95 / p99 (n)", lambda p: _latency_cell(views[p], "complete"))
    row("review ms: p50 / p95 / p99 (n)", lambda p: _latency_cell(views[p], "review"))
    row("reads: primary / replica (primary's share)", lambda p: _reads_cell(reads[p]))
    row(
        "primary reads per completion (besides the review sets' confirmations)",
        lambda p: (
            "-"
            if reads[p]["primaryReadsPerCompletion"] is None
            else f"{reads[p]['primaryReadsPerCompletion']:.2f} "
            f"({reads[p]['primaryReadsPerCompletionBesidesReview']:.2f})"
        ),
    )
    row(
        "request retries (network errors)",
        lambda p: f"{views[p].retries} ({views[p].connection_errors})",
    )
    lines = ["| | " + " | ".join(PATHS) + " |", "|---|" + "---:|" * len(PATHS)]
    lines += [f"| {label} | " + " | ".join(str(v) for v in values) + " |" for label, values in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- rates


def rates(timeline: Timeline, args: Any) -> dict[str, float | None]:
    """Offered (requests sent) and served (answered) rates while every learner was active,
    and the rate the think-time model plans for that many learners."""
    end = timeline.now()
    start = timeline.all_started_at or 0.0
    stop = timeline.first_finished_at or end
    if stop <= start:  # learners finished before the last started: use the whole run
        start, stop = 0.0, end
    window = max(stop - start, 1e-9)
    sent = sum(1 for t in timeline.sent if start <= t < stop)
    served = sum(1 for t, *_ in timeline.requests if start <= t < stop)
    # After the first request: 4 requests per lesson over 2 think times per lesson.
    planned = 2 * args.learners / args.think_time_s if args.think_time_s > 0 else None
    return {
        "window_s": round(window, 1),
        "offered_per_s": round(sent / window, 1),
        "served_per_s": round(served / window, 1),
        "planned_per_s": None if planned is None else round(planned, 1),
        "served_overall_per_s": round(len(timeline.requests) / max(end, 1e-9), 1),
    }
