"""The OpenAPI document is a contract: work on the request path (a lighter validation path,
faster serialization) must leave it exactly as reviewed in tests/data/openapi.json."""

import json

from .support.openapi_snapshot import SNAPSHOT, render


def test_the_openapi_document_is_the_reviewed_one(client):
    served = client.get("/api/v1/openapi.json").get_json()
    assert render(served) == SNAPSHOT.read_text(), (
        "the OpenAPI document changed; if that is intended, run "
        "`.venv/bin/python -m tests.support.openapi_snapshot` and review the diff"
    )
    assert json.loads(SNAPSHOT.read_text()) == served


def test_every_operation_that_takes_a_body_documents_413_and_rollout_changes_409(client):
    """A body over PROGRESS_MAX_BODY_BYTES is 413 on any operation that takes one, and a
    rollout change can meet another holding the lock (409 rollout_busy): a client reading
    the document learns both."""
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    operations = {
        operation["operationId"]: operation
        for methods in paths.values()
        for operation in methods.values()
    }
    with_body = {name for name, operation in operations.items() if "requestBody" in operation}
    assert {"reportLockScreen", "setRollout", "updateRolloutPlan"} <= with_body
    for name in with_body:
        assert "413" in operations[name]["responses"], name
    for name in ("setRollout", "updateRolloutPlan", "advanceRollout"):
        assert "409" in operations[name]["responses"], name
