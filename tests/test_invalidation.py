"""LISTEN/NOTIFY: a completion committed by one worker raises the learner's floor in every
other worker; a reconnect clears the cache, since announcements made meanwhile are lost."""

import psycopg
from prometheus_client import REGISTRY

from harness import databases
from progress.worker import worker_state

from .support.apps import set_rollout
from .support.waiting import wait_until

ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


def counter(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_completion_in_one_worker_makes_another_worker_drop_its_older_copy(make_pg_app, auth):
    worker_a, worker_b = make_pg_app(), make_pg_app()
    set_rollout(worker_a, 100)
    with worker_b.app_context():
        from progress.flags import flag_gate

        flag_gate().reload_now()
    learner = auth.learner()
    b = worker_b.test_client()
    assert b.get(ACCESS, headers=learner.headers).get_json()["accessible"] is False
    worker_a.test_client().post(COMPLETE, headers=learner.headers)

    with worker_b.app_context():
        cache = worker_state().cache
        wait_until(lambda: cache.floor(learner.id) == 1, 5, "the announcement", interval=0.02)
    incidents = counter("progress_cache_staleness_incidents_total", path="verified")
    caught = counter(
        "progress_false_lock_screens_total", path="verified", detected_by="double_check"
    )
    answer = b.get(ACCESS, headers=learner.headers).get_json()
    assert answer["accessible"] is True
    assert answer["source"] == "db"
    assert answer["version"] == 1
    # known stale before use: no double check needed, nothing to catch
    assert counter("progress_cache_staleness_incidents_total", path="verified") == incidents + 1
    assert (
        counter("progress_false_lock_screens_total", path="verified", detected_by="double_check")
        == caught
    )


def test_a_lost_listen_connection_reconnects_and_clears_the_cache(make_pg_app, auth):
    worker = make_pg_app()
    learner = auth.learner()
    client = worker.test_client()
    client.get(ACCESS, headers=learner.headers)
    with worker.app_context():
        state = worker_state()
        listener = state.listener.listener
        assert state.cache.get(learner.id) is not None
        with psycopg.connect(databases.ADMIN_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
        wait_until(lambda: listener.connections == 2, 10, "the reconnect", interval=0.02)
        assert state.cache.get(learner.id) is None
    assert client.get("/readyz").get_json()["checks"]["invalidation"] == "ok (listening)"


def test_the_embedded_sqlite_default_needs_no_listener(client, app):
    checks = client.get("/readyz").get_json()["checks"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert checks["invalidation"] == "ok (not needed: one process on SQLite)"
    else:
        assert checks["invalidation"] == "ok (listening)"
