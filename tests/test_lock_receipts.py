"""Lock receipts: a "locked" access answer carries a receipt the service signed; a lock-screen
report counts only with a genuine, fresh receipt of this learner for this lesson, only if
the primary held the lesson open when the lock was answered, and only once per receipt."""

import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeSerializer
from prometheus_client import REGISTRY

from progress import receipts, store
from progress.api.schemas import LockScreenIn
from progress.extensions import db
from progress.models import LockScreenReport
from progress.worker import worker_state

from .support.apps import SECRET

ACCESS = "/api/v1/modules/{}/lessons/{}/access"
COMPLETE = "/api/v1/modules/{}/lessons/{}/complete"
REPORT = "/api/v1/events/lock-screen"
INTRO = {"moduleId": "basics", "lessonId": "introductions"}


def counter(path: str, detected_by: str = "client_report") -> float:
    labels = {"path": path, "detected_by": detected_by}
    return REGISTRY.get_sample_value("progress_false_lock_screens_total", labels) or 0.0


def all_false_locks() -> float:
    return sum(
        counter(path, by)
        for path in ("legacy", "verified")
        for by in ("client_report", "audit", "double_check")
    )


def reports(app) -> list[LockScreenReport]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(LockScreenReport).order_by(LockScreenReport.id)))
        db.session.expunge_all()
        return rows


def locked_answer(
    client, learner, module="basics", lesson="introductions", min_version: int | None = None
) -> dict:
    query = {} if min_version is None else {"minVersion": min_version}
    url = ACCESS.format(module, lesson)
    answer = client.get(url, headers=learner.headers, query_string=query).get_json()
    assert answer["accessible"] is False
    return answer


def complete_elsewhere(app, learner, lesson_slug="greetings") -> int:
    """Another worker's completion: the primary has it, this worker's cache does not. The
    version the learner is told."""
    with app.app_context():
        curriculum = worker_state().curriculum()
        lesson = curriculum.find("basics", lesson_slug)
        return store.mark_lesson_completed(learner.id, lesson, curriculum).version


def test_a_locked_answer_carries_a_receipt_and_an_open_one_carries_null(client, auth):
    learner = auth.learner()
    open_answer = client.get(ACCESS.format("basics", "greetings"), headers=learner.headers)
    assert open_answer.get_json()["lockReceipt"] is None
    receipt = locked_answer(client, learner)["lockReceipt"]
    assert isinstance(receipt, str)
    assert len(receipt) > 40


def test_a_true_lock_reported_is_kept_as_true_and_counts_nothing(app, client, auth):
    learner = auth.learner()
    receipt = locked_answer(client, learner)["lockReceipt"]
    before = all_false_locks()
    answer = client.post(REPORT, headers=learner.headers, json={**INTRO, "lockReceipt": receipt})
    assert (answer.status_code, answer.get_json()) == (202, {"falseLock": False})
    assert all_false_locks() == before
    (row,) = reports(app)
    assert (row.learner_id, row.module_id, row.lesson_id) == (learner.id, "basics", "introductions")
    assert (row.path, row.answered_version, row.min_version) == ("legacy", 0, None)
    assert row.judgement == "true_lock"
    assert row.read_began_at <= row.shown_at <= row.reported_at


def test_a_lesson_completed_after_the_lock_was_shown_makes_no_false_lock(app, client, auth):
    learner = auth.learner()
    receipt = locked_answer(client, learner)["lockReceipt"]
    time.sleep(0.01)  # the completion's time is after the lock's, whatever the clock's grain
    client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    before = all_false_locks()
    answer = client.post(REPORT, headers=learner.headers, json={**INTRO, "lockReceipt": receipt})
    assert answer.get_json() == {"falseLock": False}
    assert all_false_locks() == before


def test_a_genuine_legacy_false_lock_with_its_receipt_counts_exactly_once(app, client, auth):
    """An older copy in this worker answers "locked" to a learner who holds the completion's
    version from another worker; the report with its receipt counts once, however often it
    is sent."""
    learner = auth.learner()
    locked_answer(client, learner)  # this worker caches progress at version 0
    stale = locked_answer(client, learner, min_version=complete_elsewhere(app, learner))
    assert (stale["source"], stale["path"]) == ("cache", "legacy")
    before = counter("legacy")
    body = {**INTRO, "lockReceipt": stale["lockReceipt"]}
    first = client.post(REPORT, headers=learner.headers, json=body)
    assert (first.status_code, first.get_json()) == (202, {"falseLock": True})
    again = client.post(REPORT, headers=learner.headers, json=body)
    assert (again.status_code, again.get_json()) == (202, {"falseLock": True})
    assert counter("legacy") == before + 1
    (row,) = reports(app)
    assert (row.path, row.judgement) == ("legacy", "false_lock")


def test_one_receipt_sent_to_many_workers_at_once_counts_once(pg_app, make_pg_app, auth):
    """Each receipt counts once across workers and instances: the table is unique on it."""
    learner = auth.learner()
    client = pg_app.test_client()
    locked_answer(client, learner)
    told = complete_elsewhere(pg_app, learner)
    body = {**INTRO, "lockReceipt": locked_answer(client, learner, min_version=told)["lockReceipt"]}
    workers = [pg_app, make_pg_app(), make_pg_app(), make_pg_app()]
    before = counter("legacy")
    answers: list[tuple[int, dict]] = []
    start = threading.Barrier(len(workers) * 2)

    def send(worker) -> None:
        start.wait(10)
        response = worker.test_client().post(REPORT, headers=learner.headers, json=body)
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=send, args=(w,)) for w in workers * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [(202, {"falseLock": True})] * len(threads)
    # every app in this process shares the registry: the total is exact
    assert counter("legacy") == before + 1
    assert len(reports(pg_app)) == 1


def forged_bodies(genuine: str, other_learners: str, other_lesson: str, expired: str) -> dict:
    """Every way a report can lie about a lock screen, by name."""
    signer = URLSafeSerializer("not-the-service-secret" + "x" * 30, salt=receipts.SALT)
    claim = [2, "n", "0" * 32, "basics", "introductions", "verified", 0, None, 0, 0]
    head, _, signature = genuine.rpartition(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return {
        "no receipt": {**INTRO},
        "null receipt": {**INTRO, "lockReceipt": None},
        "empty receipt": {**INTRO, "lockReceipt": ""},
        "garbage": {**INTRO, "lockReceipt": "not-a-receipt"},
        "tampered signature": {**INTRO, "lockReceipt": f"{head}.{flipped}"},
        "signed with another key": {
            **INTRO,
            "lockReceipt": signer.dumps(claim),
        },
        "another learner's": {**INTRO, "lockReceipt": other_learners},
        "another lesson's": {**INTRO, "lockReceipt": other_lesson},
        "expired": {**INTRO, "lockReceipt": expired},
        "path claimed": {**INTRO, "lockReceipt": genuine, "path": "verified"},
        "path claimed without a receipt": {**INTRO, "path": "verified"},
    }


def test_forged_reports_are_400_invalid_receipt_and_change_nothing(app, client, auth):
    learner, other = auth.learner(), auth.learner()
    client.post(COMPLETE.format("basics", "greetings"), headers=learner.headers)
    # Genuine receipts of the wrong kind: another learner's, another lesson's, an old one.
    other_learners = locked_answer(client, other)["lockReceipt"]
    other_lesson = locked_answer(client, learner, "basics", "numbers-1-10")["lockReceipt"]
    long_ago = datetime.now(UTC) - timedelta(seconds=601)
    expired = receipts.issue(
        SECRET, learner.id, "basics", "introductions", "verified", 0,
        read_began_at=long_ago, answered_at=long_ago,
    )  # fmt: skip
    genuine = receipts.issue(
        SECRET,
        learner.id,
        "basics",
        "introductions",
        "verified",
        0,
        read_began_at=datetime.now(UTC),
    )
    before = all_false_locks()
    for name, body in forged_bodies(genuine, other_learners, other_lesson, expired).items():
        answer = client.post(REPORT, headers=learner.headers, json=body)
        assert answer.status_code == 400, name
        error = answer.get_json()["error"]
        expected = "path" if name == "path claimed" else "lockReceipt"
        assert error["field"] == expected, (name, error)
        if expected == "lockReceipt":
            assert error["code"] == "invalid_receipt", (name, error)
    assert all_false_locks() == before
    assert reports(app) == []


def test_receipts_are_signed_over_every_field_and_expire():
    learner = uuid.uuid4()
    began = datetime.now(UTC)
    receipt = receipts.issue(
        SECRET, learner, "basics", "introductions", "legacy", 7, read_began_at=began, min_version=5
    )
    read = receipts.verify(
        receipt,
        secret=SECRET,
        max_age_s=600,
        learner_id=learner,
        module_id="basics",
        lesson_id="introductions",
    )
    assert (read.learner_id, read.path, read.version, read.min_version) == (learner, "legacy", 7, 5)
    assert abs(read.read_began_at - began) < timedelta(milliseconds=1)
    assert abs(read.answered_at.timestamp() - time.time()) < 5
    expect = {"learner_id": learner, "module_id": "basics", "lesson_id": "introductions"}
    with pytest.raises(receipts.InvalidReceipt, match="expired"):
        receipts.verify(receipt, secret=SECRET, max_age_s=600, now=time.time() + 601, **expect)
    with pytest.raises(receipts.InvalidReceipt, match="signed"):
        receipts.verify(receipt, secret=SECRET + "y", max_age_s=600, **expect)
    # A payload changed (the path) with the signature kept: refused.
    serializer = receipts._serializer(SECRET)
    payload = serializer.loads(receipt)
    payload[5] = "verified"
    forged_payload = serializer.dump_payload(payload).decode()
    forged = forged_payload + "." + receipt.rpartition(".")[2]
    with pytest.raises(receipts.InvalidReceipt, match="signed"):
        receipts.verify(forged, secret=SECRET, max_age_s=600, **expect)
    again = receipts.issue(
        SECRET, learner, "basics", "introductions", "legacy", 7, read_began_at=began, min_version=5
    )
    assert again != receipt


@pytest.mark.parametrize(
    ("module_id", "lesson_id", "version"),
    [("basics", "greetings", 0), ("m" * 64, "l" * 64, 2**63 - 1), ("a", "b", 1)],
)
def test_every_receipt_the_service_issues_fits_the_documented_schema(module_id, lesson_id, version):
    """The OpenAPI document states the receipt's alphabet and length: whatever the ids (up to
    their 64 characters) and the version, a genuine receipt fits, with room to spare."""
    for path in ("legacy", "verified"):
        receipt = receipts.issue(
            SECRET,
            uuid.uuid4(),
            module_id,
            lesson_id,
            path,
            version,
            read_began_at=datetime.now(UTC),
            min_version=version,
        )
        assert re.fullmatch(receipts.PATTERN, receipt), receipt
        assert receipts.MIN_LENGTH <= len(receipt) <= receipts.MAX_LENGTH // 2, len(receipt)
        LockScreenIn.model_validate(
            {"moduleId": module_id, "lessonId": lesson_id, "lockReceipt": receipt}
        )


@pytest.mark.parametrize("receipt", ["x" * 100, "a.b", "é" * 80 + "." + "s" * 43, "." * 200])
def test_a_receipt_outside_the_format_is_refused_by_the_schema(client, auth, receipt):
    learner = auth.learner()
    body = {"moduleId": "basics", "lessonId": "introductions", "lockReceipt": receipt}
    answer = client.post(REPORT, headers=learner.headers, json=body)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "lockReceipt"
