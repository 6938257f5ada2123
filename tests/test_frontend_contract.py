"""What a frontend on another origin relies on: CORS, the operation ids and examples of the
OpenAPI document, the committed TypeScript declarations (regenerating them changes nothing,
and `tsc` accepts the client's types and a typed usage example), and pages that run under a
Content-Security-Policy without inline scripts."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask

from progress.api.examples import EXAMPLES
from progress.config import ConfigError, load_settings
from tests.support.apps import SECRET, build_app, dispose, migrate_and_seed
from tests.support.availability import unavailable
from tests.support.learners import AuthActions

REPO = Path(__file__).resolve().parent.parent
TS_TOOLS = REPO / "devtools" / "typescript"
DECLARATIONS = REPO / "progress" / "static" / "progress-api.d.ts"
FRONTEND = "http://app.example.test:5173"
LEARNER_OPERATIONS = {
    "getCurriculum",
    "getProgress",
    "completeLesson",
    "checkAccess",
    "reportLockScreen",
}


@pytest.fixture(scope="module")
def cors_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    tmp = tmp_path_factory.mktemp("cors")
    app = build_app(
        f"sqlite:///{tmp / 'progress.db'}",
        tmp,
        PROGRESS_CORS_ORIGINS=f"{FRONTEND}, https://other.example.test",
    )
    migrate_and_seed(app)
    yield app
    dispose(app)


def preflight(app: Flask, path: str, origin: str = FRONTEND, method: str = "POST"):
    return app.test_client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


# -- CORS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/modules/basics/lessons/greetings/complete", "POST"),
        ("/api/v1/progress", "GET"),
        ("/api/v1/events/lock-screen", "POST"),
        ("/api/v1/admin/rollout", "PUT"),
    ],
)
def test_a_preflight_from_an_allowed_origin_is_granted_without_a_token(
    cors_app: Flask, path: str, method: str
):
    answer = preflight(cors_app, path, method=method)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == FRONTEND
    allowed = answer.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert method in answer.headers["Access-Control-Allow-Methods"]
    assert "Origin" in answer.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in answer.headers  # bearer tokens, no cookies


def test_answers_to_an_allowed_origin_expose_the_path_and_request_id_headers(cors_app: Flask):
    learner = AuthActions(SECRET).learner()
    answer = cors_app.test_client().get(
        "/api/v1/modules/basics/lessons/greetings/access",
        headers={**learner.headers, "Origin": FRONTEND},
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == FRONTEND
    exposed = {
        h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert exposed == {"x-progress-path", "x-request-id"}
    assert answer.headers["X-Progress-Path"] in ("legacy", "verified")


def test_an_error_answer_carries_the_grant_so_the_frontend_can_read_it(cors_app: Flask):
    answer = cors_app.test_client().get("/api/v1/progress", headers={"Origin": FRONTEND})
    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] == FRONTEND
    assert answer.get_json()["error"]["code"]


def test_another_origin_gets_no_grant(cors_app: Flask):
    answer = preflight(cors_app, "/api/v1/progress", origin="https://evil.example.test")
    assert "Access-Control-Allow-Origin" not in answer.headers
    learner = AuthActions(SECRET).learner()
    answer = cors_app.test_client().get(
        "/api/v1/progress", headers={**learner.headers, "Origin": "http://app.example.test"}
    )
    assert answer.status_code == 200  # the server answers; the browser keeps it from the page
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_a_request_naming_no_origin_gets_no_grant(cors_app: Flask):
    """Only a browser's cross-origin call (which always sends Origin) needs the grant."""
    learner = AuthActions(SECRET).learner()
    for path in ("/api/v1/modules/basics/lessons/greetings/access", "/api/v1/progress"):
        answer = cors_app.test_client().get(path, headers=learner.headers)
        assert answer.status_code == 200, path
        assert not [n for n, _ in answer.headers.items() if n.startswith("Access-Control-")], path


@pytest.fixture(scope="module")
def one_origin_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """One origin: flask-cors alone would not say Vary (it varies only among several)."""
    tmp = tmp_path_factory.mktemp("cors-one")
    app = build_app(f"sqlite:///{tmp / 'progress.db'}", tmp, PROGRESS_CORS_ORIGINS=FRONTEND)
    migrate_and_seed(app)
    yield app
    dispose(app)


@pytest.mark.parametrize("origin", [FRONTEND, "https://evil.example.test", None])
@pytest.mark.parametrize(
    "path",
    ["/api/v1/modules/basics/lessons/greetings/access", "/api/v1/progress", "/api/v1/nowhere"],
)
@pytest.mark.parametrize("which", ["cors_app", "one_origin_app"])
def test_every_api_answer_says_it_varies_by_origin_whatever_the_request_named(
    request: pytest.FixtureRequest, which: str, path: str, origin: str | None
):
    """A shared cache must not hand a grant-less answer (to a request without Origin, or
    from another origin) to the frontend, nor the frontend's to anyone else: every answer of
    /api/v1, the fast path's access check and errors too, carries exactly one Vary: Origin."""
    app = request.getfixturevalue(which)
    learner = AuthActions(SECRET).learner()
    headers = {**learner.headers, **({"Origin": origin} if origin else {})}
    answer = app.test_client().get(path, headers=headers)
    assert answer.status_code in (200, 404), answer.get_data(as_text=True)
    varies = [value.strip() for line in answer.headers.get_all("Vary") for value in line.split(",")]
    assert varies.count("Origin") == 1, answer.headers


def test_without_origins_configured_no_answer_varies_by_origin(pg_app: Flask):
    learner = AuthActions(SECRET).learner()
    answer = pg_app.test_client().get("/api/v1/progress", headers=learner.headers)
    assert answer.status_code == 200
    assert "Origin" not in answer.headers.get("Vary", "")


def test_pages_and_other_routes_get_no_grant(cors_app: Flask):
    for path in ("/", "/metrics", "/healthz"):
        answer = cors_app.test_client().get(path, headers={"Origin": FRONTEND})
        assert "Access-Control-Allow-Origin" not in answer.headers, path


def test_without_the_setting_no_origin_is_granted(pg_app: Flask):
    answer = preflight(pg_app, "/api/v1/progress", method="GET")
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("*", "list the origins"),
        ("https://app.example.com/path", "is not an origin"),
        ("app.example.com", "is not an origin"),
        ("https://*.example.com", "is not an origin"),  # flask-cors would take it as a regex
    ],
)
def test_a_malformed_origin_list_refuses_to_start(tmp_path: Path, value: str, problem: str):
    env = {"PROGRESS_ENV": "test", "PROGRESS_JWT_SECRET": SECRET, "PROGRESS_CORS_ORIGINS": value}
    with pytest.raises(ConfigError, match=problem):
        load_settings(tmp_path, env)


def test_the_origin_list_is_read_comma_separated(tmp_path: Path):
    env = {
        "PROGRESS_ENV": "test",
        "PROGRESS_JWT_SECRET": SECRET,
        "PROGRESS_CORS_ORIGINS": " https://a.example.com/, http://localhost:5173 ,",
    }
    origins = load_settings(tmp_path, env)["PROGRESS_CORS_ORIGINS"]
    assert origins == ["https://a.example.com", "http://localhost:5173"]
    assert (
        load_settings(tmp_path, {**env, "PROGRESS_CORS_ORIGINS": ""})["PROGRESS_CORS_ORIGINS"] == []
    )


# -- the OpenAPI document ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def document(cors_app: Flask) -> dict:
    return cors_app.test_client().get("/api/v1/openapi.json").get_json()


def operations(document: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_has_a_readable_operation_id(document: dict):
    ids = [op.get("operationId", "") for _, _, op in operations(document)]
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)*", i) for i in ids), ids
    assert len(ids) == len(set(ids))
    assert set(ids) >= LEARNER_OPERATIONS
    assert {"getRollout", "setRollout", "getRolloutHistory", "getPathFigures"} <= set(ids)


def referenced_models(document: dict) -> set[str]:
    names: set[str] = set()
    text = json.dumps([op for _, _, op in operations(document)])
    names.update(re.findall(r'"#/components/schemas/([A-Za-z0-9_]+)"', text))
    return names


def test_every_request_and_response_model_has_an_example(document: dict):
    schemas = document["components"]["schemas"]
    missing = [
        name for name in sorted(referenced_models(document)) if not schemas[name].get("examples")
    ]
    assert missing == []
    query_models = {"AccessQuery", "ProgressQuery", "GuardEvaluationsQuery"}
    assert all(schemas[name].get("examples") for name in query_models & set(schemas))


@pytest.mark.parametrize("model", list(EXAMPLES), ids=lambda model: model.__name__)
def test_each_example_is_valid_for_its_model(model: type):
    # As a client would send or receive it: JSON text (datetimes as ISO 8601 strings).
    model.model_validate_json(json.dumps(EXAMPLES[model]))


# -- TypeScript ------------------------------------------------------------------------------


def node_tool(name: str) -> Path:
    tool = TS_TOOLS / "node_modules" / ".bin" / name
    if not tool.exists():
        reason = f"{tool} is missing: run `make typescript-tools` (npm ci in {TS_TOOLS})"
        unavailable(reason)
    return tool


def test_the_committed_typescript_declarations_match_the_openapi_document(
    document: dict, tmp_path: Path
):
    generator = node_tool("openapi-typescript")
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    generated = tmp_path / "progress-api.d.ts"
    subprocess.run(
        [str(generator), str(source), "--output", str(generated)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert generated.read_text() == DECLARATIONS.read_text(), (
        "progress/static/progress-api.d.ts is out of date: run `make types` and commit it"
    )


def run_tsc(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(node_tool("tsc")), "--noEmit", "-p", str(project)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_tsc_accepts_the_client_types_and_the_typed_example():
    result = run_tsc(TS_TOOLS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_refuses_a_use_the_api_would_refuse(tmp_path: Path):
    """The types constrain: a lesson id that is a number, a path the API never names."""
    (tmp_path / "wrong.ts").write_text(
        "export async function wrong(client: ProgressClient) {\n"
        '  const answer = await client.access("basics", "colours");\n'
        '  const path: "fast" = answer.path;\n'
        "  return path;\n"
        "}\n"
    )
    config = json.loads((TS_TOOLS / "tsconfig.json").read_text())
    config["files"] = [str(REPO / "progress/static/progress-client.d.ts"), "wrong.ts"]
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    result = run_tsc(tmp_path)
    assert result.returncode != 0
    assert "wrong.ts(3," in result.stdout, result.stdout


# -- pages under a Content-Security-Policy -------------------------------------------------------


class _InlineCode(HTMLParser):
    """Inline <script> bodies and on* handler attributes: what `script-src 'self'` blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.found += [f"<{tag} {name}=...>" for name in names if name.startswith("on")]
        self._script_without_src = tag == "script" and not names.get("src")
        if any((value or "").strip().lower().startswith("javascript:") for value in names.values()):
            self.found.append(f"<{tag}> with a javascript: URL")

    def handle_data(self, data: str) -> None:
        if self._script_without_src and data.strip():
            self.found.append("an inline <script>")

    def handle_endtag(self, tag: str) -> None:
        self._script_without_src = False


def test_the_learner_page_has_no_inline_script_or_handler(cors_app: Flask):
    html = cors_app.test_client().get("/").get_data(as_text=True)
    parser = _InlineCode()
    parser.feed(html)
    assert parser.found == []
    assert 'src="/static/lesson-map.js"' in html
    scripts = (REPO / "progress" / "static" / "lesson-map.js").read_text()
    assert "innerHTML" not in scripts  # every node is built with createElement
