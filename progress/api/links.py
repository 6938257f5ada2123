"""OpenAPI links: how one answer feeds the next request (a stateful tester follows them, and
they document the flow): the curriculum names the lessons, an access answer's lockReceipt
goes back with the lock-screen report."""

from __future__ import annotations

from typing import Any

LESSON_FROM_PATH = {
    "moduleId": "$request.path.moduleId",
    "lessonId": "$request.path.lessonId",
}
FIRST_LESSON = {
    "moduleId": "$response.body#/modules/0/id",
    "lessonId": "$response.body#/modules/0/lessons/0/id",
}
SECOND_LESSON = {
    "moduleId": "$response.body#/modules/0/id",
    "lessonId": "$response.body#/modules/0/lessons/1/id",
}
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "getCurriculum": {
        "CompleteFirstLesson": {"operationId": "completeLesson", "parameters": FIRST_LESSON},
        "CheckSecondLesson": {"operationId": "checkAccess", "parameters": SECOND_LESSON},
    },
    "completeLesson": {
        "CheckTheLesson": {"operationId": "checkAccess", "parameters": LESSON_FROM_PATH},
    },
    "checkAccess": {
        "ReportTheLockScreen": {
            "operationId": "reportLockScreen",
            "description": "When the answer is locked: report the lock screen with its receipt.",
            "requestBody": {**LESSON_FROM_PATH, "lockReceipt": "$response.body#/lockReceipt"},
        },
    },
}


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """Each operation's links, on its 200 answer."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            links = LINKS.get(operation.get("operationId", ""))
            ok = operation.get("responses", {}).get("200")
            if links and ok is not None:
                ok["links"] = links
    return document
