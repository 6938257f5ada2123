"""How the watch at 100% behaves, measured: simulated watches driven through the real
`judge` and `decide` (with `watch.with_baseline`), no servers. `make guard-sim-watch`
prints the tables in docs/guard.md ("The watch at 100%").

A simulated watch: the baseline is the legacy path over the plan's `baselineDays` at
`traffic` completions a minute, each failing with legacy's error rate (or over the latency
budget with its share); then every learner is on the verified path, `traffic` completions a
minute with verified's rates, and the guard looks once a minute for `watchHours`. A look
whose sequential test is still inconclusive holds whatever the rest says, so the full
checks run only at a look where the test has decided (or at the watch's end); the watch ends
at the first pause, or at the end, complete or still holding.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..models import PLAN_DEFAULTS
from .checks import LATENCY_TAUS, SUCCESS_RATE_TAUS, Thresholds, judge
from .decision import Situation, WatchClock, decide
from .figures import Figures
from .sequential import compare
from .simulation import ACCESS_CHECKS_PER_COMPLETION, Kind, Scenario, binomial
from .watch import Baseline, with_baseline

LIMITS = Thresholds.of(PLAN_DEFAULTS)
BUDGET_S = LIMITS.p95_budget_s
WATCH_MIN = round(PLAN_DEFAULTS.watch_hours * 60)
BASELINE_MIN = round(PLAN_DEFAULTS.baseline_days * 24 * 60)
TRAFFIC = (100, 1_000, 10_000)
EQUAL_ERROR_RATES = (0.001, 0.005, 0.01, 0.02)
EQUAL_OVER_BUDGET = (0.01, 0.05)
REGRESSION_TRAFFIC = 1_000
REGRESSIONS: tuple[tuple[Kind, float], ...] = (
    ("success_rate", 0.001),
    ("success_rate", 0.005),
    ("success_rate", 0.01),
    ("success_rate", 0.02),
    ("latency", 0.05),
    ("latency", 0.10),
)
_END = datetime(2026, 12, 1, tzinfo=UTC)
_LABEL = f"legacy's {PLAN_DEFAULTS.baseline_days:g} days before the move"


def _full_decision(minute: int, verified: list[float], base: list[float]) -> str:
    """The guard's decision at this look, as the evaluation makes it."""
    n, errors, slow = verified
    figures = Figures(
        window_s=minute * 60,
        false_locks={"client_report": 0.0, "audit": 0.0, "double_check": 0.0},
        completions={
            "verified": {"success": n - errors, "error": errors},
            "legacy": {"success": 0.0, "error": 0.0},
        },
        access_checks={"verified": n * ACCESS_CHECKS_PER_COMPLETION, "legacy": 0.0},
        cache_update_buckets={"verified": {BUDGET_S: n - slow, math.inf: n}, "legacy": {}},
        breaker_open_share=0.0,
        breaker_trips=0.0,
    )
    b_n, b_errors, b_slow = base
    baseline = Baseline(
        _END - timedelta(days=PLAN_DEFAULTS.baseline_days),
        _END,
        "prometheus",
        b_n,
        b_errors,
        {BUDGET_S: b_n - b_slow, math.inf: b_n},
        [],
    )
    checks = judge(with_baseline(figures, baseline), LIMITS, 100)
    now = Situation(
        percentage=100,
        next_percentage=None,
        stage_elapsed_s=minute * 60,
        min_stage_seconds=PLAN_DEFAULTS.min_stage_seconds,
        auto_advance=PLAN_DEFAULTS.auto_advance,
        on_failure="rollback",
        paused=False,
        watch=WatchClock(minute * 60, WATCH_MIN * 60, False, _LABEL),
    )
    return decide(checks, now).decision


def run_watch(rng: random.Random, scenario: Scenario) -> tuple[str, int]:
    """(pause, complete or hold; the minute it came)."""
    v_err, l_err, v_slow, l_slow = scenario.rates()
    base_n = scenario.traffic * BASELINE_MIN
    base = [
        float(base_n),
        float(binomial(rng, base_n, l_err)),
        float(binomial(rng, base_n, l_slow)),
    ]
    verified = [0.0, 0.0, 0.0]
    n = scenario.traffic
    taus = SUCCESS_RATE_TAUS if scenario.kind == "success_rate" else LATENCY_TAUS
    margin = (
        LIMITS.success_rate_margin if scenario.kind == "success_rate" else LIMITS.latency_margin
    )
    bad = 1 if scenario.kind == "success_rate" else 2
    for minute in range(1, WATCH_MIN + 1):
        verified[0] += n
        verified[1] += binomial(rng, n, v_err)
        verified[2] += binomial(rng, n, v_slow)
        quick = compare(
            verified[bad],
            verified[0],
            base[bad],
            base[0],
            margin=margin,
            alpha=LIMITS.false_rollback_rate,
            taus=taus,
        )
        if quick.verdict == "worse" or minute == WATCH_MIN:
            decision = _full_decision(minute, verified, base)
            if decision != "hold" or minute == WATCH_MIN:
                return decision, minute
    return "hold", WATCH_MIN


@dataclass
class WatchTally:
    watches: int = 0
    paused: list[int] = field(default_factory=list)  # minutes to the pause
    completed: int = 0
    holding: int = 0  # the watch over, the test still inconclusive

    def share(self, count: int) -> float:
        return count / self.watches if self.watches else 0.0


def measure_watch(scenario: Scenario, watches: int, seed: int) -> WatchTally:
    rng = random.Random(f"watch:{seed}:{scenario}")  # noqa: S311 - reproducible
    tally = WatchTally()
    for _ in range(watches):
        decision, minute = run_watch(rng, scenario)
        tally.watches += 1
        if decision in ("pause", "rollback"):
            tally.paused.append(minute)
        elif decision == "complete":
            tally.completed += 1
        else:
            tally.holding += 1
    return tally


def _measure(args: tuple[Scenario, int, int]) -> WatchTally:
    return measure_watch(*args)


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _rate(rate: float) -> str:
    return f"{rate * 100:g}%"


def _when(minutes: Sequence[int]) -> str:
    if not minutes:
        return "-"
    median = statistics.median(minutes)
    return f"{median:g} min" if median < 120 else f"{median / 60:.1f} h"


def equal_scenarios() -> list[Scenario]:
    return [
        Scenario(kind, traffic, rate, 1)
        for kind, rates in (("success_rate", EQUAL_ERROR_RATES), ("latency", EQUAL_OVER_BUDGET))
        for rate in rates
        for traffic in TRAFFIC
    ]


def regression_scenarios() -> list[Scenario]:
    return [Scenario(kind, REGRESSION_TRAFFIC, rate, 2) for kind, rate in REGRESSIONS]


def equal_table(tallies: dict[Scenario, WatchTally]) -> str:
    lines = [
        "| check | legacy = verified | "
        + " | ".join(f"{t:,}/min: paused / complete / holding" for t in TRAFFIC)
        + " |",
        "|---|---|" + "---:|" * len(TRAFFIC),
    ]
    for kind, rates in (("success_rate", EQUAL_ERROR_RATES), ("latency", EQUAL_OVER_BUDGET)):
        what = "success rate (errors)" if kind == "success_rate" else "updates over 0.25 s"
        for rate in rates:
            row = [tallies[Scenario(kind, t, rate, 1)] for t in TRAFFIC]
            lines.append(
                f"| {what} | {_rate(rate)} | "
                + " | ".join(
                    f"{_pct(x.share(len(x.paused)))} / {_pct(x.share(x.completed))} / "
                    f"{_pct(x.share(x.holding))}"
                    for x in row
                )
                + " |"
            )
    return "\n".join(lines)


def regression_table(tallies: dict[Scenario, WatchTally]) -> str:
    lines = [
        f"| check | baseline | verified | beyond the margin? | paused within {WATCH_MIN // 60} h "
        "| median time to pause | complete |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for scenario in regression_scenarios():
        tally = tallies[scenario]
        margin = (
            LIMITS.success_rate_margin if scenario.kind == "success_rate" else LIMITS.latency_margin
        )
        worse = scenario.legacy_rate * scenario.factor
        beyond = "yes" if worse - scenario.legacy_rate > margin + 1e-12 else "no (at it)"
        what = "success rate (errors)" if scenario.kind == "success_rate" else "updates over 0.25 s"
        lines.append(
            f"| {what} | {_rate(scenario.legacy_rate)} | {_rate(worse)} (2x) | {beyond} | "
            f"{_pct(tally.share(len(tally.paused)))} | {_when(tally.paused)} | "
            f"{_pct(tally.share(tally.completed))} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m progress.guard.watch_simulation",
        description="The watch at 100% on simulated watches: the tables of docs/guard.md.",
    )
    parser.add_argument("--watches", type=int, default=1000, help="watches a cell, equal paths")
    parser.add_argument("--regression-watches", type=int, default=400, help="watches, 2x worse")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--processes", type=int, default=2)
    options = parser.parse_args(argv)
    started = time.monotonic()
    todo = [(s, options.watches, options.seed) for s in equal_scenarios()] + [
        (s, options.regression_watches, options.seed) for s in regression_scenarios()
    ]
    with multiprocessing.Pool(options.processes) as pool:
        tallies = {args[0]: t for args, t in zip(todo, pool.map(_measure, todo), strict=True)}
    print(
        f"\n### The watch with equal paths: {WATCH_MIN // 60} h at 100% against "
        f"{PLAN_DEFAULTS.baseline_days:g} days of legacy history\n"
    )
    print("Share of watches paused (false pauses) / complete at the end / still holding.\n")
    print(equal_table(tallies))
    print(f"\n### The watch with the verified path twice as bad, at {REGRESSION_TRAFFIC:,}/min\n")
    print(regression_table(tallies))
    print(
        f"\n{options.watches} watches a cell with equal paths, {options.regression_watches} "
        f"twice as bad; seed {options.seed}; {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
