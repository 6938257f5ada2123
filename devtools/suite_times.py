"""The suite's parts and their minutes, from pytest's JUnit reports: the table that
docs/testing.md keeps.

    make test PYTEST_ARGS=--junitxml=run1.xml
    .venv/bin/python -m devtools.suite_times run1.xml [run2.xml ...]

A test's time is its setup, call and teardown; under pytest-xdist the parts' minutes add up
over the workers, so their sum is more than the run's wall time."""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# The parts, by test module; any module not named here is "everything else".
PARTS: dict[str, tuple[str, ...]] = {
    "the browser": (
        "test_browser",
        "test_learner_browser",
        "test_admin_page",
        "test_browser_policy",
    ),
    "the command line in subprocesses": ("test_cli",),
    "the interleaving model": ("test_model",),
    "the guard against a real Prometheus and Unleash": (
        "test_guard_prometheus",
        "test_guard_end_to_end",
        "test_guard_watch_end_to_end",
    ),
    "other real servers": (
        "test_rollout",
        "test_metrics",
        "test_db_hang",
        "test_monitor",
        "test_prometheus_integration",
        "test_replica_faults",
        "test_frontend_contract",
        "test_front_door",
        "test_rate_limits",
    ),
    "fuzzing": ("test_openapi_fuzz", "test_schemathesis_cli"),
    "the lab, the demo, the bench and the lock races": (
        "test_lab",
        "test_demo",
        "test_bench",
        "test_lock_judgement",
    ),
    "the guard's simulations": ("test_guard_sequential", "test_guard_watch"),
}
ELSE = "everything else (in process)"


def part_of(module: str) -> str:
    return next((part for part, modules in PARTS.items() if module in modules), ELSE)


def minutes_by_part(report: Path) -> tuple[Counter[str], float]:
    """Each part's minutes in one report, and the run's wall time in minutes."""
    root = ET.parse(report).getroot()  # noqa: S314 - our own pytest's report
    parts: Counter[str] = Counter()
    for case in root.iter("testcase"):
        module = (case.get("classname") or "").split(".")[-1]
        parts[part_of(module)] += float(case.get("time") or 0) / 60
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    wall = float(suite.get("time") or 0) / 60 if suite is not None else 0.0
    return parts, wall


def table(reports: Sequence[Path]) -> str:
    runs = [minutes_by_part(r) for r in reports]
    names = [*PARTS, ELSE]
    head = "| part | " + " | ".join(f"run {i}" for i in range(1, len(runs) + 1)) + " |"
    lines = [head, "|---|" + "---:|" * len(runs)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{p[name]:.1f}" for p, _ in runs) + " |")
    lines.append("| **sum over the workers** | " + " | ".join(
        f"{sum(p.values()):.1f}" for p, _ in runs) + " |")  # fmt: skip
    lines.append("| **the run (wall)** | " + " | ".join(f"{w:.1f}" for _, w in runs) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.suite_times", description=__doc__)
    parser.add_argument("reports", nargs="+", type=Path, help="pytest --junitxml files")
    print(table(parser.parse_args(argv).reports))


if __name__ == "__main__":
    main()
