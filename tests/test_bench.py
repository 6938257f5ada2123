"""The bench's baseline option, without servers: another revision checked out beside the
working tree imports its own `progress`, and the figures put the two side by side."""

from __future__ import annotations

from bench.baseline import checkout, imported_from
from bench.report import baseline_lines, ratios
from harness.processes import REPO


def test_a_baseline_checkout_imports_its_own_package_and_is_removed():
    with checkout("HEAD") as tree:
        assert (tree / "progress" / "__init__.py").exists()
        module = imported_from(tree, {"PATH": "/usr/bin:/bin"})
        assert module == (tree / "progress" / "__init__.py").resolve()
    assert not tree.exists()
    assert imported_from(REPO, {"PATH": "/usr/bin:/bin"}).is_relative_to(REPO)


def test_current_and_baseline_figures_side_by_side():
    def row(scenario: str, rps: float, p50: float) -> dict:
        return {"path": "verified", "scenario": scenario, "rps": rps,
                "per_server_cpu_s": rps / 2, "p50_ms": p50}  # fmt: skip

    rows = [
        row("warm", 1100, 9.0),
        row("baseline_warm", 1000, 10.0),
        row("completion", 200, 30.0),
        row("baseline_completion", 250, 20.0),
    ]
    found = ratios(rows, ["verified"])
    assert found["verified: warm current/baseline req/s"] == 1.1
    assert found["verified: completion current/baseline median latency"] == 1.5
    table = "\n".join(
        baseline_lines(rows, found, ratios(rows, ["verified"], "per_server_cpu_s"), "main~3")
    )
    assert "| verified | warm | 1000 | 1100 | 1.100 | 1.100 | 10.00 / 9.00 |" in table
