"""How often the guard is wrong, measured: thousands of simulated stages driven through the
real `judge` and `decide`, no servers. `make guard-sim` prints the tables in docs/guard.md.

A simulated stage is the default plan at 10%: every minute `traffic` completions arrive
(10% on the verified path), each fails with its path's error rate, each updates the cache
and is over the latency budget with its path's share; the guard looks once a minute at
everything since the stage began, as it does with Prometheus. The stage ends at the first
rollback, pause or advance, or at the horizon (the guard still holding).

The rule the guard had before (point estimates against the margin, the p95 against the
budget, on a minimum sample) is kept here as `previous_rule`, so both can be measured on
the same simulated stages.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import math
import multiprocessing
import random
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..models import PLAN_DEFAULTS
from .checks import SUCCESS_RATE_TAUS, Thresholds, judge
from .decision import Situation, decide
from .eta import duration, estimate
from .figures import PATHS, Figures
from .sequential import compare

Kind = Literal["success_rate", "latency"]
Rule = Callable[[Figures, float], str]  # (figures, seconds into the stage) -> decision

SHARE = 0.10  # the stage: 10% of completions on the verified path
INTERVAL_S = 60  # the guard looks once a minute (PROGRESS_GUARD_INTERVAL_S)
TRAFFIC = (100, 1_000, 10_000)  # completions a minute, both paths
ERROR_RATES = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02)  # legacy's
OVER_BUDGET_SHARES = (0.01, 0.02, 0.05, 0.10)  # legacy's cache updates over the budget
FACTORS = (1, 2, 5)  # verified's rate = factor x legacy's
LIMITS = Thresholds.of(PLAN_DEFAULTS)
BUDGET_S = LIMITS.p95_budget_s
MIN_STAGE_S = PLAN_DEFAULTS.min_stage_seconds
ACCESS_CHECKS_PER_COMPLETION = 4


@functools.cache
def _binomial_cdf(n: int, p: float) -> tuple[int, list[float]]:
    """(lowest k, cumulative chances from it) over mean +- 12 standard deviations and 2:
    what lies beyond has a chance below 1e-12, far under any share these tables print."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    low, high = max(0, math.floor(mean - 12 * sd) - 2), min(n, math.ceil(mean + 12 * sd) + 2)
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n = math.lgamma(n + 1)
    total, cumulative = 0.0, []
    for k in range(low, high + 1):
        total += math.exp(
            log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
        )
        cumulative.append(total)
    return low, cumulative


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in n trials of chance p, drawn by inverting the exact distribution
    (Python 3.11 has no random.binomialvariate)."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    low, cumulative = _binomial_cdf(n, p)
    return low + min(
        bisect.bisect_left(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1
    )


# -- the rules ---------------------------------------------------------------------------------


def current_rule(limits: Thresholds = LIMITS, min_stage_s: int = MIN_STAGE_S) -> Rule:
    """The guard as it is: `judge` and `decide`, with the plan advancing by itself."""

    def rule(figures: Figures, elapsed_s: float) -> str:
        now = Situation(
            percentage=int(SHARE * 100),
            next_percentage=100,
            stage_elapsed_s=elapsed_s,
            min_stage_seconds=min_stage_s,
            auto_advance=True,
            on_failure="rollback",
            paused=False,
        )
        return decide(judge(figures, limits, now.percentage), now).decision

    return rule


def previous_rule(limits: Thresholds = LIMITS) -> Rule:
    """The guard before the sequential test: on the minimum sample, roll back when
    verified's success rate is below legacy's minus the margin, pause when verified's p95
    is over the budget (histogram_quantile's p95 is over a bucket's bound exactly when fewer
    than 95% of the updates are in the buckets up to it); advance after the stage's time."""

    def rule(figures: Figures, elapsed_s: float) -> str:
        done = figures.completions or {}
        checks = figures.access_checks or {}
        totals = {p: done[p]["success"] + done[p]["error"] for p in PATHS}
        if any(
            totals[p] < limits.min_completions or checks[p] < limits.min_access_checks
            for p in PATHS
        ):
            return "hold"
        rates = {p: 1 - done[p]["error"] / totals[p] for p in PATHS}
        if rates["verified"] < rates["legacy"] - limits.success_rate_margin:
            return "rollback"
        buckets = figures.cache_update_buckets["verified"]
        if buckets[math.inf] and buckets[BUDGET_S] < 0.95 * buckets[math.inf]:
            return "pause"
        return "advance" if elapsed_s >= MIN_STAGE_S else "hold"

    return rule


# -- a stage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    kind: Kind
    traffic: int  # completions a minute, both paths
    legacy_rate: float  # error rate (success_rate) or share over the budget (latency)
    factor: float  # verified's = factor x legacy's

    def rates(self) -> tuple[float, float, float, float]:
        """(verified errors, legacy errors, verified over budget, legacy over budget)."""
        worse = min(self.legacy_rate * self.factor, 1.0)
        if self.kind == "success_rate":
            return worse, self.legacy_rate, 0.0, 0.0
        return 0.0, 0.0, worse, self.legacy_rate


def _figures(minute: int, counts: dict[str, list[float]]) -> Figures:
    """What Prometheus would answer after `minute` minutes, from the running counts
    [completions, errors, updates over the budget] on each path."""
    return Figures(
        window_s=minute * INTERVAL_S,
        false_locks={"client_report": 0.0, "audit": 0.0, "double_check": 0.0},
        completions={p: {"success": c[0] - c[1], "error": c[1]} for p, c in counts.items()},
        access_checks={p: c[0] * ACCESS_CHECKS_PER_COMPLETION for p, c in counts.items()},
        cache_update_buckets={
            p: {BUDGET_S: c[0] - c[2], math.inf: c[0]} for p, c in counts.items()
        },
        breaker_open_share=0.0,
        breaker_trips=0.0,
    )


def run_stage(rng: random.Random, scenario: Scenario, rule: Rule, minutes: int) -> tuple[str, int]:
    """(the first decision other than hold, or "hold"; the minute it came)."""
    v_err, l_err, v_slow, l_slow = scenario.rates()
    n_verified = round(scenario.traffic * SHARE)
    per_minute = {
        "verified": (n_verified, v_err, v_slow),
        "legacy": (scenario.traffic - n_verified, l_err, l_slow),
    }
    counts = {p: [0.0, 0.0, 0.0] for p in PATHS}
    for minute in range(1, minutes + 1):
        for path, (n, error_rate, slow_share) in per_minute.items():
            counts[path][0] += n
            counts[path][1] += binomial(rng, n, error_rate)
            counts[path][2] += binomial(rng, n, slow_share)
        decision = rule(_figures(minute, counts), minute * INTERVAL_S)
        if decision != "hold":
            return decision, minute
    return "hold", minutes


@dataclass
class Tally:
    """What happened to the simulated stages of one scenario under one rule."""

    stages: int = 0
    acted_against: list[int] = field(default_factory=list)  # minutes to rollback or pause
    advanced: list[int] = field(default_factory=list)  # minutes to advance

    def share(self, minutes: Sequence[int], within: int | None = None) -> float:
        hits = [m for m in minutes if within is None or m <= within]
        return len(hits) / self.stages if self.stages else 0.0


def measure(scenario: Scenario, rule: Rule, stages: int, minutes: int, seed: int) -> Tally:
    rng = random.Random(f"{seed}:{scenario}")  # noqa: S311 - the same stages for every rule
    tally = Tally()
    for _ in range(stages):
        decision, minute = run_stage(rng, scenario, rule, minutes)
        tally.stages += 1
        if decision in ("rollback", "pause"):
            tally.acted_against.append(minute)
        elif decision in ("advance", "ready"):
            tally.advanced.append(minute)
    return tally


def monte_carlo_error(rate: float, stages: int) -> float:
    """Three standard errors of a measured share (the tests' tolerance)."""
    return 3 * math.sqrt(max(rate * (1 - rate), 1e-9) / stages)


# -- the estimate: when the guard will decide ----------------------------------------------

ETA_ERROR_RATES = (0.001, 0.005, 0.01, 0.02)  # healthy stages: both paths alike
ETA_HORIZON_MIN = 400 * 24 * 60  # a stage still holding after this counts as never decided


def _next_look(minute: int) -> int:
    """Every minute for two hours, then every 1/64th of the time run (to 1.6%), so a stage
    of weeks takes hundreds of looks rather than tens of thousands; a decision time is
    then up to 1.6% late, far inside the factor of 2 measured."""
    return minute + (1 if minute < 128 else 2 ** int(math.log2(minute / 64)))


@dataclass(frozen=True)
class EtaSample:
    """One healthy stage: the estimate at the first look with the minimum sample, and the
    time from that look to the decision (None: never decided within the horizon)."""

    estimate_s: int | None
    actual_s: int | None

    def within(self, factor: float = 2.0) -> bool:
        if self.estimate_s is None or self.actual_s is None:
            return False
        actual = max(self.actual_s, INTERVAL_S)  # one look is as soon as a decision comes
        return actual / factor <= max(self.estimate_s, INTERVAL_S) <= actual * factor


def eta_stage(rng: random.Random, traffic: int, error_rate: float) -> EtaSample:
    """A healthy stage of the default plan at 10%: the estimate as the guard makes it
    (`eta.estimate` on `judge`'s checks) and the decision as `decide` makes it."""
    rule = current_rule()
    n_verified = round(traffic * SHARE)
    per_minute = {"verified": n_verified, "legacy": traffic - n_verified}
    counts = {p: [0.0, 0.0, 0.0] for p in PATHS}
    first: tuple[int, int | None] | None = None  # (minute, estimate)
    minute = 0
    while minute < ETA_HORIZON_MIN:
        step = _next_look(minute) - minute
        minute += step
        for path, n in per_minute.items():
            counts[path][0] += n * step
            counts[path][1] += binomial(rng, n * step, error_rate)
        v, lg = counts["verified"], counts["legacy"]
        if first is None and min(v[0], lg[0]) >= LIMITS.min_completions:
            figures = _figures(minute, counts)
            checks = judge(figures, LIMITS, int(SHARE * 100))
            now = Situation(
                int(SHARE * 100), 100, minute * INTERVAL_S, MIN_STAGE_S, True, "rollback", False
            )
            decision = decide(checks, now).decision
            found = estimate(
                [c.as_json() for c in checks],
                decision=decision,
                window_s=minute * INTERVAL_S,
                stage_elapsed_s=minute * INTERVAL_S,
                min_stage_seconds=MIN_STAGE_S,
            )
            first = (minute, found.seconds)
        if first is None:
            continue
        # The rule cannot advance while the success-rate test holds: skip it until then.
        quick = compare(
            v[1],
            v[0],
            lg[1],
            lg[0],
            margin=LIMITS.success_rate_margin,
            alpha=LIMITS.false_rollback_rate,
            taus=SUCCESS_RATE_TAUS,
        )
        if quick.verdict == "inconclusive":
            continue
        decision = rule(_figures(minute, counts), minute * INTERVAL_S)
        if decision != "hold":
            return EtaSample(first[1], (minute - first[0]) * INTERVAL_S)
    return EtaSample(None if first is None else first[1], None)


@dataclass(frozen=True)
class EtaCell:
    traffic: int
    error_rate: float
    samples: tuple[EtaSample, ...]

    @property
    def within_2x(self) -> float:
        return sum(s.within() for s in self.samples) / len(self.samples)

    @property
    def best_possible(self) -> float:
        """The share within 2x of the best single figure anyone could have named for this
        cell, knowing every stage's actual time: what the spread of the decision time
        itself allows."""
        actual = sorted(max(s.actual_s, INTERVAL_S) for s in self.samples if s.actual_s)
        best = 0
        for i, low in enumerate(actual):  # a window [e/2, 2e] starting at each actual time
            best = max(best, bisect.bisect_right(actual, low * 4) - i)
        return best / len(self.samples)

    def ratio(self, q: float) -> float | None:
        """The q-quantile of actual / estimated time."""
        ratios = sorted(
            max(s.actual_s, INTERVAL_S) / max(s.estimate_s, INTERVAL_S)
            for s in self.samples
            if s.actual_s and s.estimate_s is not None
        )
        return ratios[min(int(q * len(ratios)), len(ratios) - 1)] if ratios else None


def measure_eta(traffic: int, error_rate: float, stages: int, seed: int) -> EtaCell:
    rng = random.Random(f"eta:{seed}:{traffic}:{error_rate}")  # noqa: S311 - reproducible
    return EtaCell(
        traffic, error_rate, tuple(eta_stage(rng, traffic, error_rate) for _ in range(stages))
    )


def _measure_eta_cell(args: tuple[int, float, int, int]) -> EtaCell:
    return measure_eta(*args)


def eta_table(cells: Sequence[EtaCell]) -> str:
    lines = [
        "| traffic | errors, both paths | estimate within 2x | best any one figure could do "
        "| actual / estimate: 10th, 50th, 90th percentile | median time to decide |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        quantiles = ", ".join(
            "-" if r is None else f"{r:.2g}" for r in (cell.ratio(q) for q in (0.1, 0.5, 0.9))
        )
        actual = [s.actual_s for s in cell.samples if s.actual_s is not None]
        median = duration(statistics.median(actual)) if actual else "-"
        lines.append(
            f"| {cell.traffic:,}/min | {_rate(cell.error_rate)} | {_pct(cell.within_2x)} "
            f"| {_pct(cell.best_possible)} | {quantiles} | {median} |"
        )
    return "\n".join(lines)


# -- the tables ----------------------------------------------------------------------------------

RULES: dict[str, Callable[[], Rule]] = {"previous": previous_rule, "current": current_rule}


@dataclass(frozen=True)
class Cell:
    rule: str  # a key of RULES
    scenario: Scenario
    stages: int
    minutes: int
    seed: int


def measure_cell(cell: Cell) -> Tally:
    return measure(cell.scenario, RULES[cell.rule](), cell.stages, cell.minutes, cell.seed)


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _rate(rate: float) -> str:
    return f"{rate * 100:g}%"


def _minutes(values: Sequence[int]) -> str:
    return f"{statistics.median(values):g} min" if values else "-"


def _rates(kind: Kind) -> tuple[float, ...]:
    return ERROR_RATES if kind == "success_rate" else OVER_BUDGET_SHARES


def cells(rule: str, stages: int, regression_stages: int, minutes: int, seed: int) -> list[Cell]:
    return [
        Cell(
            rule,
            Scenario(kind, traffic, rate, factor),
            stages if factor == 1 else regression_stages,
            minutes,
            seed,
        )
        for kind in ("success_rate", "latency")
        for factor in FACTORS
        for rate in _rates(kind)
        for traffic in TRAFFIC
    ]


def equal_paths_table(kind: Kind, tallies: dict[Scenario, Tally]) -> str:
    what = "error rate" if kind == "success_rate" else "share of updates over the budget"
    lines = [
        f"| {what}, both paths | "
        + " | ".join(f"{t:,}/min: acted / advanced" for t in TRAFFIC)
        + " |",
        "|---|" + "---:|" * len(TRAFFIC),
    ]
    for rate in _rates(kind):
        row = [tallies[Scenario(kind, traffic, rate, 1)] for traffic in TRAFFIC]
        lines.append(
            f"| {_rate(rate)} | "
            + " | ".join(
                f"{_pct(t.share(t.acted_against))} / {_pct(t.share(t.advanced))}" for t in row
            )
            + " |"
        )
    return "\n".join(lines)


def regression_table(kind: Kind, tallies: dict[Scenario, Tally], minutes: int) -> str:
    margin = LIMITS.success_rate_margin if kind == "success_rate" else LIMITS.latency_margin
    stage_min = MIN_STAGE_S // INTERVAL_S
    lines = [
        "| legacy | verified | beyond the margin? | "
        + " | ".join(
            f"{t:,}/min: caught in {stage_min} / {minutes} min (median); advanced" for t in TRAFFIC
        )
        + " |",
        "|---|---|---|" + "---:|" * len(TRAFFIC),
    ]
    for factor in FACTORS[1:]:
        for rate in _rates(kind):
            worse = min(rate * factor, 1.0)
            beyond = "yes" if worse - rate > margin + 1e-12 else "no"
            row = [tallies[Scenario(kind, traffic, rate, factor)] for traffic in TRAFFIC]
            cells = [
                f"{_pct(t.share(t.acted_against, stage_min))} / {_pct(t.share(t.acted_against))} "
                f"({_minutes(t.acted_against)}); {_pct(t.share(t.advanced))}"
                for t in row
            ]
            lines.append(
                f"| {_rate(rate)} | {_rate(worse)} ({factor}x) | {beyond} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m progress.guard.simulation",
        description="The guard's decisions on simulated stages: the tables of docs/guard.md.",
    )
    parser.add_argument("--stages", type=int, default=1000, help="stages a cell, equal paths")
    parser.add_argument("--regression-stages", type=int, default=400, help="stages a cell, worse")
    parser.add_argument("--minutes", type=int, default=60, help="the horizon of a stage")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--eta-stages", type=int, default=200, help="healthy stages a cell, for the estimate"
    )
    parser.add_argument("--eta-only", action="store_true", help="only the estimate's table")
    options = parser.parse_args(argv)
    started = time.monotonic()
    todo_eta = [
        (traffic, rate, options.eta_stages, options.seed)
        for traffic in TRAFFIC
        for rate in ETA_ERROR_RATES
    ]
    with multiprocessing.Pool(options.processes) as pool:
        eta_cells = pool.map(_measure_eta_cell, todo_eta)
    print("\n### When the guard will decide: its estimate against the decision\n")
    print(
        "Healthy stages (both paths alike) of the default plan at 10%: the estimate at the "
        "first look with the minimum sample, against the time from that look to the "
        "decision.\n"
    )
    print(eta_table(eta_cells))
    every = [sample for cell in eta_cells for sample in cell.samples]
    print(
        f"\nAll cells: {_pct(sum(s.within() for s in every) / len(every))} within 2x, "
        f"{_pct(sum(s.within(3) for s in every) / len(every))} within 3x."
    )
    if options.eta_only:
        return
    for rule, title in (
        ("previous", "the previous rule (point estimates)"),
        ("current", "the sequential test"),
    ):
        todo = cells(rule, options.stages, options.regression_stages, options.minutes, options.seed)
        with multiprocessing.Pool(options.processes) as pool:
            tallies = {
                c.scenario: t for c, t in zip(todo, pool.map(measure_cell, todo), strict=True)
            }
        for kind in ("success_rate", "latency"):
            check = "completion success rate" if kind == "success_rate" else "cache update latency"
            acted = "rolled back" if kind == "success_rate" else "paused"
            print(f"\n### {title}: {check}, equal paths\n")
            print(f"Share of stages {acted} / advanced within {options.minutes} min.\n")
            print(equal_paths_table(kind, tallies))
            print(f"\n### {title}: {check}, verified worse\n")
            print(
                f"Share of stages {acted} (caught); share advanced within {options.minutes} min.\n"
            )
            print(regression_table(kind, tallies, options.minutes))
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime + time.process_time()
    print(
        f"\n{options.stages} stages a cell with equal paths, {options.regression_stages} with "
        f"verified worse; seed {options.seed}; {time.monotonic() - started:.0f} s "
        f"({cpu:.0f} s of CPU)"
    )


if __name__ == "__main__":
    main()
