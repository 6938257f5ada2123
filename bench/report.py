"""The bench's figures: medians per scenario, the ratios between them, the targets, and the
Markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .cpu import CPU_PARTS

SCENARIOS = ("warm", "warm_no_metrics", "cold", "completion")
# Measured on the --baseline revision's service, beside the working tree's.
BASELINE_SCENARIOS = {"warm": "baseline_warm", "completion": "baseline_completion"}
# The targets: (ratio name, comparison, bound).
TARGETS = (
    ("legacy: warm/bare req/s", ">=", 0.8),
    ("verified: warm/bare req/s", ">=", 0.8),
    ("verified/legacy warm req/s", ">=", 0.95),
    ("legacy: cold/select-1 req/s", ">=", 0.5),
    ("verified: cold/select-1 req/s", ">=", 0.5),
    ("verified/legacy completion median latency", "<=", 1.3),
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["path"], run["scenario"]), []).append(run)
    rows = []
    for (path, scenario), members in groups.items():
        cpu_keys = members[0]["cpu_cores"].keys()
        rows.append(
            {
                "path": path,
                "scenario": scenario,
                "runs": len(members),
                "rps": round(median([m["rps"] for m in members]), 1),
                # Requests per CPU-second of the server: what a request costs it, whatever
                # share of the machine other processes left it during the run.
                "per_server_cpu_s": round(
                    median([m["rps"] / max(m["cpu_cores"]["server"], 0.01) for m in members]), 1
                ),
                "p50_ms": round(median([m["p50_ms"] for m in members]), 2),
                "p99_ms": round(median([m["p99_ms"] for m in members]), 2),
                "rps_all": [round(m["rps"]) for m in members],
                "errors": sum(m["non2xx"] + m["socket_errors"] for m in members),
                "cpu_cores": {
                    key: round(median([m["cpu_cores"][key] for m in members]), 2)
                    for key in cpu_keys
                },
            }
        )
    return rows


def ratios(
    rows: Sequence[Mapping[str, Any]], paths: Sequence[str], measure: str = "rps"
) -> dict[str, float]:
    """Ratios of medians measured in this run (the figures that compare across machines):
    of req/s (`rps`), or of requests per server CPU-second (`per_server_cpu_s`)."""
    by_key = {(row["path"], row["scenario"]): row for row in rows}

    def rps(path: str, scenario: str) -> float | None:
        row = by_key.get((path, scenario))
        return row[measure] if row and row[measure] else None

    def put(name: str, numerator: float | None, denominator: float | None) -> None:
        if numerator is not None and denominator:
            out[name] = round(numerator / denominator, 3)

    out: dict[str, float] = {}
    bare, select_one = rps("-", "bare"), rps("-", "select-1")
    for path in paths:
        put(f"{path}: warm/bare req/s", rps(path, "warm"), bare)
        put(f"{path}: cold/select-1 req/s", rps(path, "cold"), select_one)
        put(f"{path}: cold/bare req/s", rps(path, "cold"), bare)
        put(f"{path}: warm metrics on/off req/s", rps(path, "warm"), rps(path, "warm_no_metrics"))
        for scenario, baseline in BASELINE_SCENARIOS.items():
            put(baseline_ratio(path, scenario), rps(path, scenario), rps(path, baseline))
    put("verified/legacy warm req/s", rps("verified", "warm"), rps("legacy", "warm"))
    put("verified/legacy cold req/s", rps("verified", "cold"), rps("legacy", "cold"))
    put("select-1/bare req/s", select_one, bare)
    legacy_done = by_key.get(("legacy", "completion"))
    verified_done = by_key.get(("verified", "completion"))
    if measure == "rps" and legacy_done and verified_done and legacy_done["p50_ms"]:
        out["verified/legacy completion median latency"] = round(
            verified_done["p50_ms"] / legacy_done["p50_ms"], 3
        )
    for path in paths:
        current, baseline = (
            by_key.get((path, "completion")),
            by_key.get((path, "baseline_completion")),
        )
        if measure == "rps" and current and baseline and baseline["p50_ms"]:
            out[f"{path}: completion current/baseline median latency"] = round(
                current["p50_ms"] / baseline["p50_ms"], 3
            )
    return out


def baseline_ratio(path: str, scenario: str) -> str:
    return f"{path}: {scenario} current/baseline req/s"


def target_checks(
    ratio_map: Mapping[str, float], per_cpu: Mapping[str, float]
) -> list[dict[str, Any]]:
    """Each target against the req/s ratio (the issue's measure), with the same ratio per
    server CPU-second beside it (what the machine's other load can't move)."""
    checks = []
    for name, comparison, bound in TARGETS:
        value = ratio_map.get(name)
        met = None
        if value is not None:
            met = value >= bound if comparison == ">=" else value <= bound
        checks.append(
            {
                "ratio": name,
                "target": f"{comparison} {bound}",
                "value": value,
                "per_server_cpu_s": per_cpu.get(name),
                "met": met,
            }
        )
    return checks


def markdown(
    rows: Sequence[Mapping[str, Any]],
    ratio_map: Mapping[str, float],
    checks: Sequence[Mapping[str, Any]],
    memory: Mapping[str, Any] | None,
    per_cpu: Mapping[str, float],
    baseline: str | None = None,
) -> str:
    lines = [
        "| path | scenario | req/s (median) | req per server CPU-s | p50 ms | p99 ms | errors "
        "| cores: wrk / server / pg / irq / steal / other | req/s per round |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    order = {
        name: i
        for i, name in enumerate(("bare", "select-1", *SCENARIOS, *BASELINE_SCENARIOS.values()))
    }
    for row in sorted(rows, key=lambda r: (r["path"] != "-", r["path"], order[r["scenario"]])):
        cpu = row["cpu_cores"]
        lines.append(
            f"| {row['path']} | {row['scenario']} | {row['rps']:.0f} "
            f"| {row['per_server_cpu_s']:.0f} | {row['p50_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['errors']} "
            f"| {' / '.join(f'{cpu[key]:.2f}' for key in (*CPU_PARTS, 'other'))} "
            f"| {', '.join(str(v) for v in row['rps_all'])} |"
        )
    if checks:
        lines += [
            "",
            "| target | req/s ratio | met | the same per server CPU-s |",
            "|---|---:|---|---:|",
        ]
        for check in checks:
            value = "-" if check["value"] is None else f"{check['value']:.3f}"
            cpu = check["per_server_cpu_s"]
            cpu_cell = "-" if cpu is None else f"{cpu:.3f}"
            met = {True: "yes", False: "**NO**", None: "not measured"}[check["met"]]
            lines.append(f"| {check['ratio']} {check['target']} | {value} | {met} | {cpu_cell} |")
    if baseline:
        lines += baseline_lines(rows, ratio_map, per_cpu, baseline)
    targeted = {check["ratio"] for check in checks}
    others = {
        name: value
        for name, value in ratio_map.items()
        if name not in targeted and "current/baseline" not in name
    }
    if others:
        lines += ["", "| other ratio | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in others.items()]
    if memory:
        lines += ["", "| memory | value |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in memory.items()]
    return "\n".join(lines)


def baseline_lines(
    rows: Sequence[Mapping[str, Any]],
    ratio_map: Mapping[str, float],
    per_cpu: Mapping[str, float],
    baseline: str,
) -> list[str]:
    """The working tree beside the --baseline revision, measured in the same rounds."""
    by_key = {(row["path"], row["scenario"]): row for row in rows}
    lines = [
        "",
        f"| path | scenario | baseline ({baseline}) req/s | current req/s | current/baseline "
        "| the same per server CPU-s | p50 ms baseline / current |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (path, scenario), row in sorted(by_key.items()):
        before = by_key.get((path, BASELINE_SCENARIOS.get(scenario, "")))
        if before is None:
            continue
        name = baseline_ratio(path, scenario)
        ratio, cpu = ratio_map.get(name), per_cpu.get(name)
        lines.append(
            f"| {path} | {scenario} | {before['rps']:.0f} | {row['rps']:.0f} "
            f"| {'-' if ratio is None else f'{ratio:.3f}'} "
            f"| {'-' if cpu is None else f'{cpu:.3f}'} "
            f"| {before['p50_ms']:.2f} / {row['p50_ms']:.2f} |"
        )
    return lines
