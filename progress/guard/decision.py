"""The guard's decision from the checks and where the rollout stands; pure, so the decision
table is tested without servers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .checks import Check

Decision = Literal["advance", "hold", "pause", "rollback", "ready", "complete"]
OnFailure = Literal["rollback", "pause"]
# The checks that compare verified with legacy: during the watch, with the baseline. A
# regression there pauses; going back a stage is a person's decision.
COMPARISONS = frozenset({"completion_success_rate", "cache_update_latency"})


@dataclass(frozen=True)
class WatchClock:
    """The watch at the last stage, as the decision needs it."""

    elapsed_s: float
    length_s: float
    completed: bool
    baseline: str | None  # what the baseline is, in words; None: none could be had

    @property
    def over(self) -> bool:
        return self.elapsed_s >= self.length_s

    def left(self) -> str:
        return duration_text(max(self.length_s - self.elapsed_s, 0))


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
    watch: WatchClock | None = None  # at the last stage


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
        return _on_failure(acting, now)
    if now.paused:
        return Verdict("hold", "paused: nothing advances until a person resumes the plan")
    if now.off_plan:
        return Verdict(
            "hold",
            f"the rollout is at {now.percentage}%, which is not a stage of the plan; "
            "nothing advances until it is on a stage again",
        )
    if now.next_percentage is None:
        return (
            _watching(checks, now)
            if now.watch
            else Verdict(
                "hold",
                f"last stage ({now.percentage}%): nothing to advance to; "
                "still watching for false lock screens",
            )
        )
    waiting = [c for c in checks if c.status in ("no_data", "inconclusive")]
    if waiting:
        return Verdict("hold", _waiting_for(waiting, failed))
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


def _watching(checks: Sequence[Check], now: Situation) -> Verdict:
    """The last stage: the watch runs for its hours, then completes once every check
    passes against the baseline; complete, it keeps watching for false lock screens."""
    watch = now.watch
    assert watch is not None
    if watch.completed:
        return Verdict(
            "hold",
            f"rollout complete at {now.percentage}%: the legacy path may be retired; "
            "still watching for false lock screens",
        )
    waiting = [c for c in checks if c.status in ("no_data", "inconclusive")]
    if not watch.over:
        so_far = _waiting_for(waiting, []) if waiting else "every check passes so far"
        return Verdict(
            "hold",
            f"watching at {now.percentage}% against {watch.baseline or 'no baseline'}: "
            f"{watch.left()} of {duration_text(watch.length_s)} left; {so_far}",
        )
    if waiting:
        return Verdict(
            "hold",
            f"the watch of {duration_text(watch.length_s)} is over, not yet clean: "
            + _waiting_for(waiting, [])
            + "; a person may end it (complete, with a note)",
        )
    summary = "; ".join(c.detail for c in checks)
    return Verdict(
        "complete",
        f"the watch of {duration_text(watch.length_s)} at {now.percentage}% ended clean "
        f"({summary}): the rollout is complete and the legacy path may be retired",
    )


def duration_text(seconds: float) -> str:
    """48 h, 90 min, 40 s: how the watch's lengths are written."""
    if seconds >= 3 * 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _on_failure(acting: Sequence[Check], now: Situation) -> Verdict:
    """What failed checks ask for: the plan's on_failure if any asks for it, else a pause.
    During the watch a regression against the baseline pauses: going back a stage is a
    person's decision."""
    wanted: Decision = (
        now.on_failure
        if any(c.on_fail == "plan" and not (now.watch and c.name in COMPARISONS) for c in acting)
        else "pause"
    )
    why = "; ".join(c.detail for c in acting)
    if wanted == "pause" and now.paused:
        return Verdict("hold", f"already paused; still failing: {why}")
    if wanted == "rollback":
        return Verdict("rollback", f"rolling back to 0%: {why}")
    if now.watch:
        return Verdict(
            "pause",
            f"pausing the watch at {now.percentage}%: {why}; going back a stage is a "
            "person's decision",
        )
    return Verdict("pause", f"pausing at {now.percentage}%: {why}")


def _waiting_for(waiting: Sequence[Check], failed: Sequence[Check]) -> str:
    """Why the guard holds while checks lack data or are inconclusive: the sample says it
    best ("no data" / "too little data"), then a test still inconclusive; the rest named."""
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
    return reason
