"""The flag's decision per learner is memoised for the features document the client holds:
a rollout change reaches every learner at once all the same, and the memo stays bounded."""

import time
import uuid

import pytest

from progress import flags
from progress.flags import flag_gate
from progress.paths import path_for_learner

from .support.apps import set_rollout

# Time passing is the behaviour here: decisions are memoised only once the document has
# been unchanged for SETTLE_S, so the tests let that window pass (a sleep is never shorter).
PAST_SETTLE_S = flags.SETTLE_S + 0.2
LEARNERS = [uuid.uuid5(uuid.NAMESPACE_URL, f"memo-learner-{n}") for n in range(200)]


def paths(app) -> list[str]:
    with app.app_context():
        return [path_for_learner(learner) for learner in LEARNERS]


def test_memoised_decisions_follow_a_rollout_change_at_once(pg_app, make_pg_app):
    other = make_pg_app(PROGRESS_FLAG_REFRESH_S=1)  # learns of changes by its refresh only
    set_rollout(pg_app, 0)
    time.sleep(PAST_SETTLE_S)
    for _ in range(2):  # the second round answers from the memo
        assert set(paths(pg_app)) == {"legacy"}
    deadline = time.monotonic() + 10
    while set(paths(other)) != {"legacy"}:
        assert time.monotonic() < deadline, "the other instance never saw 0%"
        time.sleep(0.2)
    time.sleep(PAST_SETTLE_S)
    assert set(paths(other)) == {"legacy"}  # memoised there too

    set_rollout(pg_app, 100)
    assert set(paths(pg_app)) == {"verified"}  # the worker that made the change: at once
    deadline = time.monotonic() + 10
    while set(paths(other)) != {"verified"}:  # the other: by its next refresh
        assert time.monotonic() < deadline, "a memoised decision outlived the change"
        time.sleep(0.2)
    time.sleep(PAST_SETTLE_S)
    assert set(paths(other)) == {"verified"}

    set_rollout(pg_app, 50)
    split = paths(pg_app)
    assert 0 < split.count("verified") < len(split)
    time.sleep(PAST_SETTLE_S)
    assert paths(pg_app) == split  # memoised answers are the flag's answers


def test_the_memo_is_bounded(make_pg_app, monkeypatch):
    monkeypatch.setattr(flags, "DECISIONS_MAXSIZE", 16)
    app = make_pg_app()
    set_rollout(app, 50)
    time.sleep(PAST_SETTLE_S)
    first = paths(app)
    with app.app_context():
        held = flag_gate().decisions_held
    assert 0 < held <= 16
    assert paths(app) == first


def test_a_reload_that_cannot_read_the_flag_keeps_the_client_that_can(make_pg_app, monkeypatch):
    app = make_pg_app()
    set_rollout(app, 100)
    with app.app_context():
        gate = flag_gate()
        client = gate.client()
        monkeypatch.setattr(flags.DatabaseFeatureCache, "get", lambda self, key, default=None: None)
        with pytest.raises(RuntimeError, match="could not read the flag"):
            gate.reload_now()
        assert gate.client() is client
        assert gate.percentage() == 100
