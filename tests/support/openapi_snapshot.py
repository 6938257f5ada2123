"""Write the service's OpenAPI document to tests/data/openapi.json (the reviewed copy that
tests/test_openapi_document.py compares with): `.venv/bin/python -m tests.support.openapi_snapshot`.
Run it only when a change to the document is intended, and review the diff."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "openapi.json"


def render(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="openapi-snapshot-")
    os.environ["PROGRESS_INSTANCE_PATH"] = tmp
    from progress import create_app

    app = create_app(
        {
            "PROGRESS_ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp}/progress.db",
            "PROGRESS_JWT_SECRET": "snapshot-" + "x" * 40,
            "PROGRESS_LOG_LEVEL": "ERROR",
        }
    )
    SNAPSHOT.write_text(render(app.test_client().get("/api/v1/openapi.json").get_json()))
    print(f"wrote {SNAPSHOT}")


if __name__ == "__main__":
    main()
