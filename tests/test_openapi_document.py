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
