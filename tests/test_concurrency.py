"""Concurrent completions by one learner: nothing acknowledged is lost, nothing counted twice."""

import threading

import sqlalchemy as sa

from progress.extensions import db
from progress.models import LessonProgress, ProgressVersion

LESSONS = ["greetings", "introductions", "numbers-1-10", "colours", "polite-phrases"]
COMPLETE = "/api/v1/modules/basics/lessons/{}/complete"


def run_together(app, learner, plans):
    """Run each plan (a list of lesson ids) in its own thread, all released at once."""
    barrier = threading.Barrier(len(plans))
    answers: list[tuple[str, int, int | None]] = []
    lock = threading.Lock()

    def device(plan):
        client = app.test_client()
        barrier.wait()
        for lesson in plan:
            response = client.post(COMPLETE.format(lesson), headers=learner.headers)
            body = response.get_json()
            with lock:
                answers.append((lesson, response.status_code, body.get("version")))

    threads = [threading.Thread(target=device, args=(plan,)) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


def stored(app, learner):
    with app.app_context():
        lessons = set(
            db.session.scalars(
                sa.select(LessonProgress.lesson_id).where(LessonProgress.user_id == learner.id)
            )
        )
        version = db.session.scalar(
            sa.select(ProgressVersion.version).where(ProgressVersion.user_id == learner.id)
        )
    return lessons, version


def test_two_devices_completing_the_same_lessons_at_once_keep_each_lesson_once(app, auth):
    learner = auth.learner()
    answers = run_together(app, learner, [LESSONS, LESSONS])
    assert sorted(status for _, status, _ in answers) == [200] * 10
    lessons, version = stored(app, learner)
    assert len(lessons) == 5
    assert version == 5  # each lesson bumped the version exactly once


def test_two_lessons_completed_at_once_are_both_kept_and_both_counted(app, auth):
    """Thread A completes lesson 2 while thread B completes lessons 2 and 3: every
    completion that was acknowledged is stored, and the version counts each one."""
    learner = auth.learner()
    client = app.test_client()
    assert client.post(COMPLETE.format(LESSONS[0]), headers=learner.headers).status_code == 200
    for round_start in (1, 3):
        pair = LESSONS[round_start : round_start + 2]
        answers = run_together(app, learner, [pair[:1], pair])
        acknowledged = {lesson for lesson, status, _ in answers if status == 200}
        assert acknowledged == set(pair)
        assert {status for _, status, _ in answers} == {200}
    lessons, version = stored(app, learner)
    assert len(lessons) == 5
    assert version == 5
    progress = client.get("/api/v1/progress", headers=learner.headers).get_json()
    assert progress["version"] == 5
    assert {c["lessonId"] for c in progress["completed"]} == set(LESSONS)
