"""The monitoring files: Prometheus' config and alert rules (checked and unit-tested with
promtool), the Grafana dashboards' shape, and that every metric and label value they use is
one the service exports.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support.availability import unavailable

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
GRAFANA_DIR = ROOT / "grafana"

# Every panel, target, variable and annotation names its datasource through the variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PROVISIONED_UID = "progress-prometheus"
DASHBOARDS = {
    "rollout.json": ("progress-rollout", "Lesson progress — Rollout"),
    "cache-health.json": ("progress-cache-health", "Lesson progress — Cache health"),
    "requests.json": ("progress-requests", "Lesson progress — Requests"),
}
PANEL_TYPES = {"timeseries", "stat"}
# Grafana's range variables: the only windows a dashboard query may use.
DASHBOARD_WINDOWS = {"$__rate_interval", "$__range"}

# The contract's metric families (docs/design.md, "Metrics"): each must be drawn by at least
# one dashboard panel.
DESIGN_FAMILIES = (
    "progress_completions_total",
    "progress_cache_updates_total",
    "progress_cache_update_seconds",
    "progress_cache_lookups_total",
    "progress_cache_staleness_incidents_total",
    "progress_access_checks_total",
    "progress_false_lock_screens_total",
    "progress_cache_mismatches_total",
    "progress_circuit_breaker_open",
    "progress_db_retries_total",
    "progress_rollout_percentage",
    "progress_rollout_stage",
    "progress_rollout_guard_decisions_total",
    "progress_rollout_stage_percentage",
    "progress_http_requests_total",
    "progress_http_request_duration_seconds",
    "progress_review_sets_total",
    "progress_stale_review_sets_total",
)

METRIC_NAME = re.compile(r"\bprogress_[a-z_]+")
SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# An equality or regex matcher inside a selector (not `!=`, not `!~`).
MATCHER = re.compile(r'\b([a-z_]+)\s*(=~|(?<![!=<>])=(?!=))\s*"([^"]*)"')
# Labels Prometheus attaches at scrape time, not the service.
TARGET_LABELS = {"instance", "job"}
# Series Prometheus makes itself for every target (the target-down alert uses `up`).
SCRAPE_SERIES = re.compile(r"\bup\{")
GRAFANA_SUBSTITUTES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$__interval": "1m",
    "$instance": ".*",
    "$job": ".*",
}


def normalise(name: str) -> str:
    """A histogram's series name to its family's name; counters keep their `_total`."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed (Debian: apt-get install -y prometheus)"
        unavailable(message)
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@cache
def dashboard(name: str) -> dict[str, Any]:
    return json.loads((GRAFANA_DIR / "dashboards" / name).read_text(encoding="utf-8"))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL query of a dashboard: panel targets and query variables."""
    queries = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            queries.append(query["query"] if isinstance(query, dict) else query)
    marks = board.get("annotations", {}).get("list", [])
    queries.extend(m["target"]["expr"] for m in marks if "expr" in m.get("target", {}))
    return queries


@cache
def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def exported(sqlite_app_session) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
    """The service's /metrics output (an app on SQLite, migrated): family names and
    (label, value) pairs."""
    names, pairs = set(), set()
    client = sqlite_app_session.test_client()
    client.get("/healthz")  # request counters exist from a route's first request
    text = client.get("/metrics").get_data(as_text=True)
    # A family declared with no series yet counts too: people's notes on guard decisions
    # (the dashboard's annotations) have a series only once someone wrote one.
    names.update(re.findall(r"^# TYPE (progress_\w+) ", text, flags=re.MULTILINE))
    for line in text.splitlines():
        match = SAMPLE_LINE.match(line)
        if match is None or not match.group(1).startswith("progress_"):
            continue
        names.add(normalise(match.group(1)))
        pairs.update(LABEL_PAIR.findall(match.group(2) or ""))
    return frozenset(names), frozenset(pairs)


def used_queries() -> dict[str, str]:
    """Every query of the dashboards and alert rules, keyed by where it comes from."""
    queries = {
        f"{name} query {i}": expr
        for name in DASHBOARDS
        for i, expr in enumerate(dashboard_queries(dashboard(name)))
    }
    queries.update({f"alert {r['alert']}": r["expr"] for r in alert_rules()})
    return queries


def runbook_anchors() -> set[str]:
    """The anchors of docs/operations.md's headings, as GitHub and most viewers make them."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#+\s+(.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


# --- Prometheus: promtool ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", "prometheus/alerts.yml"),
        ("check", "config", "prometheus/prometheus.yml"),
        ("test", "rules", "prometheus/alerts_test.yml"),
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts_the_prometheus_files(args):
    result = run_promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each dashboard query (Grafana's variables replaced by values)."""
    rules = []
    for where, expr in used_queries().items():
        if where.startswith("alert "):
            continue
        for variable, value in GRAFANA_SUBSTITUTES.items():
            expr = expr.replace(variable, value)
        if expr.startswith("label_values("):
            metric = re.match(r"label_values\(([^,]+),", expr)
            assert metric, where
            expr = metric.group(1).strip()
        rules.append({"alert": f"Query{len(rules)}", "expr": expr})
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_promtool("check", "rules", rule_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_scrapes_the_service_and_loads_the_alerts():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["lesson-progress"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    assert job["static_configs"][0]["targets"]


def test_every_alert_is_documented_and_tested_firing_and_not_firing():
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    firing, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    assert {
        "VerifiedPathFalseLockScreen",
        "CompletionSuccessRateLow",
        "CircuitBreakerOpen",
        "StalenessIncidentsRising",
        "LessonProgressHighErrorRatio",
        "LessonProgressHighLatencyP99",
        "RolloutGuardPausedOrRolledBack",
    } <= set(names)
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        for annotation in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(annotation, "").strip(), (name, annotation)
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor in runbook_anchors(), f"{name}: no section #{anchor} in {page}"
        assert name in firing, f"{name}: no test case where it fires"
        assert name in quiet, f"{name}: no test case where it does not fire"
    false_lock = next(r for r in alert_rules() if r["alert"] == "VerifiedPathFalseLockScreen")
    assert false_lock["labels"]["severity"] == "critical"
    assert 'path="verified"' in false_lock["expr"]


# --- Grafana ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_shape(name):
    board = dashboard(name)
    uid, title = DASHBOARDS[name]
    assert (board["uid"], board["title"]) == (uid, title)
    assert board["schemaVersion"] == 39
    assert board.get("id") is None  # provisioning assigns the database id; the uid is stable
    raw = (GRAFANA_DIR / "dashboards" / name).read_text(encoding="utf-8")
    assert "${DS_" not in raw  # not resolved by file provisioning
    assert "__inputs" not in board

    ids = [panel.get("id") for panel in panels(board)]
    assert ids, "no panels"
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"

    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        where = f"{name} panel {panel['id']} ({panel.get('title')})"
        assert panel["type"] in PANEL_TYPES, where
        assert panel.get("title", "").strip(), where
        assert panel.get("description", "").strip(), where
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel.get("datasource") == DATASOURCE, where
        assert panel.get("targets"), where
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, where
            assert target.get("expr", "").strip(), where
            windows = set(re.findall(r"\[([^\]]+)\]", target["expr"]))
            assert windows <= DASHBOARD_WINDOWS, (where, windows)
        grid = panel["gridPos"]
        assert grid["x"] >= 0, where
        assert 0 < grid["w"] <= 24 - grid["x"], where
        own = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not own & cells, f"{where} overlaps another panel"
        cells |= own

    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    assert list(variables) == ["datasource", "job", "instance"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    # The provisioned datasource is only the variable's first choice, never hard-coded.
    assert raw.count(PROVISIONED_UID) == 1
    assert variables["datasource"]["current"]["value"] == PROVISIONED_UID
    for variable in variables.values():
        if variable.get("type") == "query":
            assert variable.get("datasource") == DATASOURCE, variable["name"]
    # Rollout changes and guard decisions are marked on every graph.
    marks = {a["name"]: a for a in board["annotations"]["list"] if not a.get("builtIn")}
    assert set(marks) == {"Rollout changes", "Guard decisions", "Notes on guard decisions"}
    for mark in marks.values():
        assert mark["datasource"] == DATASOURCE
        assert mark["enable"] is True
    assert "progress_rollout_percentage" in marks["Rollout changes"]["target"]["expr"]
    assert "progress_rollout_guard_decisions_total" in marks["Guard decisions"]["target"]["expr"]
    notes = marks["Notes on guard decisions"]["target"]
    assert "progress_rollout_guard_note" in notes["expr"]
    assert notes["useValueForTime"] is True  # the decision's time, not the scrape's
    assert "{{note}}" in notes["textFormat"]
    # Every query is scoped by the job and instance variables.
    for expr in dashboard_queries(board):
        if not expr.startswith("label_values(progress_completions_total, job)"):
            assert 'job=~"$job"' in expr, (name, expr)
    # The stage comes from the plan, never from numbers written into the dashboard.
    assert '"10 %"' not in raw
    for panel in panels(board):
        if "stage" in panel["title"]:
            assert not panel["fieldConfig"]["defaults"].get("mappings"), panel["title"]


def test_grafana_provisioning_points_at_the_dashboards_and_the_datasource():
    provisioning = GRAFANA_DIR / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", PROVISIONED_UID)
    assert "${PROMETHEUS_URL}" in source["url"]
    providers = yaml.safe_load((provisioning / "dashboards" / "progress.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/progress"


# --- The metrics the files use are the service's ----------------------------------------


def test_every_metric_used_by_dashboards_and_alerts_is_exported(exported):
    names, _ = exported
    queries = used_queries()
    assert queries
    for where, expr in queries.items():
        used = {normalise(name) for name in METRIC_NAME.findall(expr)}
        assert used or SCRAPE_SERIES.search(expr), f"{where} uses no progress_ metric: {expr}"
        missing = used - names
        assert not missing, f"{where} uses metrics /metrics does not export: {sorted(missing)}"


def test_every_label_value_used_by_dashboards_and_alerts_is_exported(exported):
    _, pairs = exported
    for where, expr in used_queries().items():
        for label, operator, value in MATCHER.findall(expr):
            if label in TARGET_LABELS or label == "status":  # HTTP status patterns, e.g. 5..
                continue
            values = value.split("|") if operator == "=~" else [value]
            for one in values:
                assert re.fullmatch(r"[a-z_]+", one), f"{where}: {label}{operator}{value!r}"
                assert (label, one) in pairs, f"{where}: no series with {label}={one!r}"


def test_every_design_metric_family_is_drawn_by_a_dashboard_panel(exported):
    names, _ = exported
    drawn = {
        normalise(name)
        for board_name in DASHBOARDS
        for panel in panels(dashboard(board_name))
        for target in panel["targets"]
        for name in METRIC_NAME.findall(target["expr"])
    }
    for family in DESIGN_FAMILIES:
        assert family in names, f"{family} is not exported by /metrics"
        assert family in drawn, f"{family} is not drawn by any dashboard panel"


# --- Grafana's published dashboard schema ----------------------------------------------------

SCHEMA_DIR = ROOT / "devtools" / "grafana-schema"


def schema_compiler() -> Path:
    """The TypeScript compiler beside @grafana/schema (pinned in devtools/grafana-schema),
    installed with `npm ci` on first use."""
    tsc = SCHEMA_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    if not (SCHEMA_DIR / "node_modules" / "@grafana" / "schema" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            unavailable("npm is not installed")
        lock = SCHEMA_DIR / ".npm-ci.lock"
        with open(lock, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # two runs of this checkout install one at a time
            if not tsc.exists():
                subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=SCHEMA_DIR,
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
    return tsc


def typecheck(tmp_path: Path, boards: dict[str, dict[str, Any]]) -> subprocess.CompletedProcess:
    """Each dashboard as a TypeScript literal that must satisfy Grafana's Dashboard type."""
    tsc = schema_compiler()
    for name, board in boards.items():
        (tmp_path / f"{name}.ts").write_text(
            f'import type {{ DashboardFile }} from "{SCHEMA_DIR / "schema"}";\n\n'
            f"export const dashboard = {json.dumps(board, indent=2)} satisfies DashboardFile;\n"
        )
    options = {
        "strict": True,
        "noEmit": True,
        "module": "esnext",
        "moduleResolution": "bundler",
        "target": "es2022",
        "skipLibCheck": True,
        "types": [],
        "baseUrl": str(SCHEMA_DIR),
        "paths": {"@grafana/schema": ["node_modules/@grafana/schema/dist/types/index.d.ts"]},
    }
    (tmp_path / "tsconfig.json").write_text(
        json.dumps({"compilerOptions": options, "include": ["*.ts"]})
    )
    node = shutil.which("node") or "node"
    return subprocess.run(
        [node, str(tsc), "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_dashboards_satisfy_grafanas_published_dashboard_schema(tmp_path):
    result = typecheck(tmp_path, {Path(n).stem: dashboard(n) for n in DASHBOARDS})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_malformed_dashboard(tmp_path):
    board = json.loads(json.dumps(dashboard("requests.json")))
    board["panels"][0]["gridPos"]["w"] = "6"  # a string where Grafana wants a number
    board["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["mode"] = "relative"
    board["panels"][2]["gridPoss"] = {}  # a field Grafana doesn't know
    result = typecheck(tmp_path, {"broken": board})
    assert result.returncode != 0
    assert "not assignable to type 'number'" in result.stdout
    assert '"relative"\' is not assignable to type \'"absolute" | "percentage"\'' in result.stdout
    assert "'\"gridPoss\"' does not exist" in result.stdout
