"""The review set and XP: the course's words and XP, XP granted once inside the completion
(also under 20 concurrent identical completions), and the review set on both paths: never
behind a version the learner holds on the verified path, stale and audited on legacy."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from progress.curriculum import read_curriculum_file
from progress.extensions import db
from progress.flags import flag_gate
from progress.models import LessonProgress, ProgressVersion
from progress.worker import worker_state

from .support.apps import set_rollout, settle_background

COMPLETE = "/api/v1/modules/{}/lessons/{}/complete"
REVIEW = "/api/v1/review"


def counter(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def stored_xp(app, learner) -> tuple[int, int, int]:
    """(the learner's xp_total, the sum of their completions' xp_earned, completions)."""
    with app.app_context():
        total = db.session.scalar(
            sa.select(ProgressVersion.xp_total).where(ProgressVersion.user_id == learner.id)
        )
        earned, count = db.session.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(LessonProgress.xp_earned), 0), sa.func.count()
            ).where(LessonProgress.user_id == learner.id)
        ).one()
    return total, earned, count


def review_terms(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [word["term"] for word in response.get_json()["words"]]


def course_words(module_id: str, lesson_id: str) -> list[str]:
    """A lesson's words as the sample course file has them (not the service's copy)."""
    for module in read_curriculum_file()["modules"]:
        for lesson in module["lessons"]:
            if (module["id"], lesson["id"]) == (module_id, lesson_id):
                return [word["term"] for word in lesson["words"]]
    raise LookupError(lesson_id)


# -- the course -----------------------------------------------------------------------------


def test_the_curriculum_route_gives_every_lesson_its_xp_and_words(client):
    """Every lesson of the sample course has its XP and a handful of words, as seeded."""
    course = read_curriculum_file()
    body = client.get("/api/v1/curriculum").get_json()
    for module, expected in zip(body["modules"], course["modules"], strict=True):
        for lesson, wanted in zip(module["lessons"], expected["lessons"], strict=True):
            assert lesson["xp"] == wanted["xp"] > 0
            assert lesson["words"] == wanted["words"]
            assert 3 <= len(lesson["words"]) <= 10


# -- XP -------------------------------------------------------------------------------------


def test_a_completion_grants_its_xp_once_and_the_progress_route_carries_the_total(
    app, client, auth
):
    """The first completion earns the lesson's XP; repeating it earns nothing and the total
    stays; the progress route answers the same total."""
    learner = auth.learner()
    first = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    assert (first.get_json()["xpEarned"], first.get_json()["xpTotal"]) == (10, 10)
    second = client.post(COMPLETE.format("basics", "introductions"), headers=learner.headers)
    assert (second.get_json()["xpEarned"], second.get_json()["xpTotal"]) == (10, 20)
    again = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    assert again.status_code == 200
    assert (again.get_json()["xpEarned"], again.get_json()["xpTotal"]) == (0, 20)
    settle_background(app)
    progress = client.get("/api/v1/progress?minVersion=2", headers=learner.headers).get_json()
    assert progress["xpTotal"] == 20
    assert stored_xp(app, learner) == (20, 20, 2)


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answers_xp(app, client, auth):
    """A client whose answer was lost retries with its key: it sees the XP the completion
    earned, and nothing is granted again; another key earns nothing."""
    learner = auth.learner()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    url = COMPLETE.format("basics", "greetings")
    first = client.post(url, headers={**learner.headers, **key}).get_json()
    retry = client.post(url, headers={**learner.headers, **key}).get_json()
    other = client.post(url, headers={**learner.headers, "Idempotency-Key": "another"}).get_json()
    assert (first["xpEarned"], first["xpTotal"], first["version"]) == (10, 10, 1)
    assert (retry["xpEarned"], retry["xpTotal"], retry["version"]) == (10, 10, 1)
    assert (other["xpEarned"], other["xpTotal"]) == (0, 10)
    assert stored_xp(app, learner) == (10, 10, 1)


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "é"])
def test_a_malformed_idempotency_key_is_a_400_naming_it_and_writes_nothing(app, client, auth, key):
    learner = auth.learner()
    response = client.post(
        COMPLETE.format("basics", "greetings"), headers={**learner.headers, "Idempotency-Key": key}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "Idempotency-Key"
    assert stored_xp(app, learner)[1:] == (0, 0)  # no completion, no XP


def test_twenty_identical_completions_at_once_grant_the_xp_once(pg_app, auth):
    """Twenty requests completing the same lesson with the same key, released together on
    PostgreSQL: all succeed with the same version and total, one completion and one grant
    are stored."""
    learner = auth.learner()
    headers = {**learner.headers, "Idempotency-Key": str(uuid.uuid4())}
    barrier = threading.Barrier(20)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def device() -> None:
        client = pg_app.test_client()
        barrier.wait()
        response = client.post(COMPLETE.format("basics", "greetings"), headers=headers)
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=device) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [status for status, _ in answers] == [200] * 20
    assert {(a["version"], a["xpEarned"], a["xpTotal"]) for _, a in answers} == {(1, 10, 10)}
    assert stored_xp(pg_app, learner) == (10, 10, 1)


def test_concurrent_completions_without_a_key_grant_once_and_tell_one_of_it(pg_app, auth):
    """Without a key, exactly one of twenty identical completions earned the XP."""
    learner = auth.learner()
    barrier = threading.Barrier(20)
    earned: list[int] = []

    def device() -> None:
        client = pg_app.test_client()
        barrier.wait()
        answer = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
        earned.append(answer.get_json()["xpEarned"])

    threads = [threading.Thread(target=device) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(earned) == [0] * 19 + [10]
    assert stored_xp(pg_app, learner) == (10, 10, 1)


# -- the review set ------------------------------------------------------------------------


@pytest.mark.parametrize("percentage", [0, 100], ids=["legacy", "verified"])
def test_the_review_set_holds_the_words_of_completed_lessons_in_course_order(
    app, client, auth, percentage
):
    set_rollout(app, percentage)
    learner = auth.learner()
    assert review_terms(client.get(REVIEW, headers=learner.headers)) == []
    client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    done = client.post(COMPLETE.format("basics", "introductions"), headers=learner.headers)
    settle_background(app)
    answer = client.get(
        f"{REVIEW}?minVersion={done.get_json()['version']}", headers=learner.headers
    )
    assert answer.headers["X-Progress-Path"] == ("legacy" if percentage == 0 else "verified")
    assert answer.get_json()["version"] == 2
    assert review_terms(answer) == course_words("basics", "greetings") + course_words(
        "basics", "introductions"
    )
    assert {w["lessonId"] for w in answer.get_json()["words"]} == {"greetings", "introductions"}


def test_a_bad_min_version_on_review_is_a_400_naming_it(client, auth):
    response = client.get(f"{REVIEW}?minVersion=-1", headers=auth.learner().headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "minVersion"


def test_review_needs_a_token(client):
    assert client.get(REVIEW).status_code == 401


@pytest.mark.parametrize(
    ("percentage", "has_words", "detected_by"),
    [(0, False, "audit"), (100, True, "double_check")],
    ids=["legacy", "verified"],
)
def test_an_older_review_copy_in_another_worker_is_stale_only_on_legacy(
    make_pg_app, auth, inject, percentage, has_words, detected_by
):
    """Worker B opened review before the completion worker A commits, and A's announcement
    never reaches B; the learner opens review on B without a version. Legacy serves B's old
    set (its audit counts it); verified's double check catches it and answers the words."""
    worker_a, worker_b = make_pg_app(), make_pg_app()
    inject(drop_notifications=True)
    set_rollout(worker_a, percentage)
    with worker_b.app_context():
        flag_gate().reload_now()
    learner = auth.learner()
    b = worker_b.test_client()
    assert review_terms(b.get(REVIEW, headers=learner.headers)) == []  # B keeps version 0
    worker_a.test_client().post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    path = "legacy" if percentage == 0 else "verified"
    stale = counter("progress_stale_review_sets_total", path=path, detected_by=detected_by)

    answer = b.get(REVIEW, headers=learner.headers)
    assert answer.headers["X-Progress-Path"] == path
    assert (review_terms(answer) == course_words("basics", "greetings")) is has_words
    assert (
        counter("progress_stale_review_sets_total", path=path, detected_by=detected_by) == stale + 1
    )


def test_verified_review_with_min_version_skips_an_older_entry_without_the_double_check(
    make_pg_app, auth, inject
):
    """With the double check off, the client's minVersion alone keeps the set current: an
    entry below it is never used."""
    worker_a, worker_b = make_pg_app(), make_pg_app()
    inject(drop_notifications=True, disable_double_check=True)
    set_rollout(worker_a, 100)
    with worker_b.app_context():
        flag_gate().reload_now()
    learner = auth.learner()
    b = worker_b.test_client()
    b.get(REVIEW, headers=learner.headers)  # B caches version 0
    done = worker_a.test_client().post(
        COMPLETE.format("basics", "greetings"), headers=learner.headers
    )
    version = done.get_json()["version"]
    answer = b.get(f"{REVIEW}?minVersion={version}", headers=learner.headers)
    assert answer.get_json()["version"] == version
    assert review_terms(answer) == course_words("basics", "greetings")


def test_verified_review_confirms_on_the_primary_only_for_a_client_without_its_version(
    make_pg_app, auth
):
    """A set read at the version the client sent holds every lesson it was told it
    completed, so it costs no primary read; one for a client that sent no version, or from
    an entry past the staleness fallback (here 0 ms), is confirmed there."""
    fresh, aged = make_pg_app(), make_pg_app(PROGRESS_STALE_AFTER_MS=0)
    set_rollout(fresh, 100)
    with aged.app_context():
        flag_gate().reload_now()

    def confirmations() -> float:
        return counter(
            "progress_reads_total", path="verified", target="primary", reason="review_check"
        )

    for worker, with_version, confirmed in [
        (fresh, True, False),
        (fresh, False, True),
        (aged, True, True),
    ]:
        learner, client = auth.learner(), worker.test_client()
        done = client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
        settle_background(worker)  # the entry is patched to the completion's version
        version = done.get_json()["version"]
        before = confirmations()
        query = f"?minVersion={version}" if with_version else ""
        answer = client.get(REVIEW + query, headers=learner.headers)
        assert review_terms(answer) == course_words("basics", "greetings")
        assert answer.get_json()["source"] == ("db" if confirmed else "cache")
        assert confirmations() == before + confirmed, (with_version, worker.config)


def test_legacy_review_cache_is_cleared_in_the_background_after_a_completion(pg_app, auth, inject):
    """The old app's fire-and-forget clear: until it runs, the same worker serves the old
    set (and the audit counts it); once it ran, the words are there."""
    set_rollout(pg_app, 0)
    client, learner = pg_app.test_client(), auth.learner()
    client.get(REVIEW, headers=learner.headers)  # cached at version 0
    started = threading.Event()
    release = threading.Event()
    with pg_app.app_context():  # hold the legacy pool's threads so the clear waits
        pool = worker_state().background("legacy")
        blockers = [pool.submit(lambda: (started.set(), release.wait(10))) for _ in range(4)]
    try:
        started.wait(5)
        client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
        stale = counter("progress_stale_review_sets_total", path="legacy", detected_by="audit")
        assert review_terms(client.get(REVIEW, headers=learner.headers)) == []
        after = counter("progress_stale_review_sets_total", path="legacy", detected_by="audit")
        assert after == stale + 1
    finally:
        release.set()
        for blocker in blockers:
            blocker.result(timeout=10)
    settle_background(pg_app)
    assert review_terms(client.get(REVIEW, headers=learner.headers)) == course_words(
        "basics", "greetings"
    )
