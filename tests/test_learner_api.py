"""The learner routes end to end on the legacy path, on PostgreSQL and on SQLite."""

import sqlalchemy as sa
from prometheus_client import REGISTRY

from progress.extensions import db
from progress.models import LessonProgress, ProgressVersion

from .support.apps import settle_background

COMPLETE = "/api/v1/modules/{}/lessons/{}/complete"
ACCESS = "/api/v1/modules/{}/lessons/{}/access"
# A receipt of the right alphabet and length (the schema's), so the check under test is reached.
WELL_FORMED_RECEIPT = "r" * 80 + "." + "s" * 43


def stored_lessons(app, learner) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(sa.func.count()).where(LessonProgress.user_id == learner.id)
        )


def stored_version(app, learner) -> int:
    with app.app_context():
        return db.session.scalar(
            sa.select(ProgressVersion.version).where(ProgressVersion.user_id == learner.id)
        )


def test_curriculum_lists_modules_and_lessons_in_order(client):
    body = client.get("/api/v1/curriculum").get_json()
    assert [m["id"] for m in body["modules"]] == ["basics", "food", "travel", "daily-life"]
    assert [lesson["id"] for lesson in body["modules"][0]["lessons"]][:2] == [
        "greetings",
        "introductions",
    ]
    assert all(len(m["lessons"]) >= 5 for m in body["modules"])


def test_a_new_learner_completes_the_first_lesson_and_the_next_opens(app, client, auth):
    learner = auth.learner()
    before = client.get(ACCESS.format("basics", "introductions"), headers=learner.headers)
    assert before.get_json()["accessible"] is False

    done = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    assert done.status_code == 200
    body = done.get_json()
    # Where the commit reached in PostgreSQL's WAL; the embedded SQLite has none.
    position = body.pop("position")
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert position is None
    else:
        assert isinstance(position, int)
        assert position > 0
    assert body == {
        "success": True,
        "dbUpdated": True,
        "cacheUpdated": False,
        "version": 1,
        "path": "legacy",
        "xpEarned": 10,
        "xpTotal": 10,
    }
    assert done.headers["X-Progress-Path"] == "legacy"

    # The legacy cache patch is fire-and-forget; a client a moment later sees it landed.
    # (Asking before it lands is the false lock the audit test below counts.)
    settle_background(app)
    after = client.get(ACCESS.format("basics", "introductions"), headers=learner.headers)
    assert after.status_code == 200
    assert after.get_json()["accessible"] is True
    assert after.headers["X-Progress-Path"] == "legacy"


def test_completing_twice_changes_nothing_and_still_succeeds(app, client, auth):
    learner = auth.learner()
    first = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    second = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    assert first.status_code == second.status_code == 200
    assert first.get_json()["version"] == second.get_json()["version"] == 1
    assert stored_lessons(app, learner) == 1
    assert stored_version(app, learner) == 1


def test_completing_a_locked_lesson_is_409_and_writes_nothing(app, client, auth):
    learner = auth.learner()
    response = client.post(COMPLETE.format("food", "at-the-cafe"), headers=learner.headers)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "lesson_locked"
    assert stored_lessons(app, learner) == 0
    assert stored_version(app, learner) == 0


def test_progress_lists_completions_and_open_lessons_across_a_module_boundary(client, auth):
    learner = auth.learner()
    basics = client.get("/api/v1/curriculum").get_json()["modules"][0]["lessons"]
    for lesson in basics:
        response = client.post(COMPLETE.format("basics", lesson["id"]), headers=learner.headers)
        assert response.status_code == 200, response.get_json()
    progress = client.get("/api/v1/progress?minVersion=5", headers=learner.headers).get_json()
    assert progress["version"] == len(basics)
    assert [c["lessonId"] for c in progress["completed"]] == [lesson["id"] for lesson in basics]
    open_lessons = [(x["moduleId"], x["lessonId"]) for x in progress["lessons"] if x["accessible"]]
    assert open_lessons[-1] == ("food", "at-the-cafe")
    assert len(open_lessons) == len(basics) + 1


def test_unknown_module_and_lesson_are_404_naming_the_field(client, auth):
    learner = auth.learner()
    module = client.get(ACCESS.format("klingon", "greetings"), headers=learner.headers)
    lesson = client.post(COMPLETE.format("basics", "nope"), headers=learner.headers)
    assert module.status_code == lesson.status_code == 404
    assert module.get_json()["error"]["field"] == "moduleId"
    assert lesson.get_json()["error"]["field"] == "lessonId"


def test_bad_min_version_is_400_naming_the_field(client, auth):
    learner = auth.learner()
    for bad in ("x", "-1", "1.5", "99999999999999999999"):
        response = client.get(
            ACCESS.format("basics", "greetings") + f"?minVersion={bad}", headers=learner.headers
        )
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["field"] == "minVersion"


def test_malformed_json_and_wrong_types_are_400_naming_the_field(client, auth):
    learner = auth.learner()
    url = "/api/v1/events/lock-screen"
    malformed = client.post(
        url, headers=learner.headers, data="{nope", content_type="application/json"
    )
    assert malformed.status_code == 400
    assert malformed.get_json()["error"] == {
        "code": "malformed_json",
        "message": "The body is not valid JSON.",
        "field": "body",
    }
    wrong_type = client.post(
        url, headers=learner.headers, json={"moduleId": 1, "lessonId": "greetings"}
    )
    assert wrong_type.status_code == 400
    assert wrong_type.get_json()["error"]["field"] == "moduleId"
    missing = client.post(
        url,
        headers=learner.headers,
        json={"moduleId": "basics", "lockReceipt": WELL_FORMED_RECEIPT},
    )
    assert missing.get_json()["error"]["field"] == "lessonId"
    extra = client.post(
        url,
        headers=learner.headers,
        json={"moduleId": "a", "lessonId": "b", "lockReceipt": WELL_FORMED_RECEIPT, "userId": "c"},
    )
    assert extra.status_code == 400
    assert extra.get_json()["error"]["field"] == "userId"
    form = client.post(url, headers=learner.headers, data={"moduleId": "basics"})
    assert form.status_code == 400
    assert form.get_json()["error"]["field"] == "body"


def test_unknown_route_and_method_keep_the_error_shape(client):
    missing = client.get("/api/v1/nothing-here")
    wrong_method = client.delete("/api/v1/curriculum")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert set(wrong_method.get_json()["error"]) == {"code", "message"}


def counter(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_legacy_trusts_an_older_cache_entry_and_its_audit_counts_the_false_lock(app, client, auth):
    """Another worker committed the completion: this worker's copy is older, the legacy
    path answers locked from it, and the audit finds the primary disagrees."""
    from progress import store
    from progress.worker import worker_state

    learner = auth.learner()
    warm = client.get(ACCESS.format("basics", "introductions"), headers=learner.headers)
    assert warm.get_json()["source"] == "db"
    with app.app_context():  # the other worker's write: DB only, this cache untouched
        lesson = worker_state().curriculum().find("basics", "greetings")
        store.mark_lesson_completed(learner.id, lesson, worker_state().curriculum())

    audits = counter("progress_false_lock_screens_total", path="legacy", detected_by="audit")
    answer = client.get(ACCESS.format("basics", "introductions"), headers=learner.headers)
    assert answer.get_json()["accessible"] is False
    assert answer.get_json()["source"] == "cache"
    assert answer.get_json()["version"] == 0
    assert (
        counter("progress_false_lock_screens_total", path="legacy", detected_by="audit")
        == audits + 1
    )


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["database"] == "ok"
    assert ready.headers["X-Request-ID"]
