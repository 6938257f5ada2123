"""docs/testing.md's table of the suite's parts comes from pytest's JUnit reports:
each test's time lands in its part, and the run's wall time is beside the sum."""

from __future__ import annotations

from pathlib import Path

from devtools.suite_times import ELSE, minutes_by_part, table

REPORT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest"
 tests="3" time="90.0"><testcase classname="tests.test_model" name="a" time="60.0"/>
<testcase classname="tests.test_learner_browser" name="b" time="30.0"/>
<testcase classname="tests.test_cache" name="c" time="6.0"/></testsuite></testsuites>"""


def test_each_tests_minutes_land_in_its_part_and_the_wall_time_beside(tmp_path: Path):
    report = tmp_path / "run.xml"
    report.write_text(REPORT)
    parts, wall = minutes_by_part(report)
    assert parts["the interleaving model"] == 1.0
    assert parts["the browser"] == 0.5
    assert parts[ELSE] == 0.1
    assert wall == 1.5
    shown = table([report, report]).splitlines()
    assert "| the interleaving model | 1.0 | 1.0 |" in shown
    assert "| **sum over the workers** | 1.6 | 1.6 |" in shown
    assert "| **the run (wall)** | 1.5 | 1.5 |" in shown
