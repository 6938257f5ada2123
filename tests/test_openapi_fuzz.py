"""Schemathesis over the generated OpenAPI document, in process: no 500, and every
answer matches the document (status, content type, body schema)."""

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import missing_required_header, negative_data_rejection
from schemathesis.config import SchemathesisConfig

from .support.apps import SECRET
from .support.learners import AuthActions

# The command line's configuration too (tests/test_schemathesis_cli.py): a well-formed lock
# receipt that the service never signed is rightly refused, 400.
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture
def api_schema(pg_app):
    config = SchemathesisConfig.from_path(CONFIG)
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", pg_app, config=config)


@pytest.fixture
def learner_headers():
    # An admin is a learner too: one token reaches every route.
    return AuthActions(SECRET).learner(admin=True).headers


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_breaks_the_api_or_its_document(case, learner_headers):
    # Every case carries a valid token, so a case generated to lack Authorization doesn't:
    # the two checks built on that premise would judge a request we never sent.
    case.call_and_validate(
        headers=learner_headers,
        excluded_checks=[negative_data_rejection, missing_required_header],
    )


def test_the_document_describes_every_learner_route(pg_app):
    paths = pg_app.test_client().get("/api/v1/openapi.json").get_json()["paths"]
    assert {
        "/api/v1/curriculum",
        "/api/v1/progress",
        "/api/v1/modules/{moduleId}/lessons/{lessonId}/complete",
        "/api/v1/modules/{moduleId}/lessons/{lessonId}/access",
        "/api/v1/events/lock-screen",
    } <= set(paths)
    access = paths["/api/v1/modules/{moduleId}/lessons/{lessonId}/access"]["get"]
    assert access["security"] == [{"bearer": []}]
    assert {"200", "400", "401", "404"} <= set(access["responses"])
