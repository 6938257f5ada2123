"""LISTEN/NOTIFY: a completion committed by one worker raises the learner's floor in every
other worker; a reconnect clears the cache, since announcements made meanwhile are lost."""

import uuid

import psycopg
from prometheus_client import REGISTRY

from harness import databases
from progress.cache import ProgressCache
from progress.invalidation import VersionListener, libpq_dsn
from progress.worker import worker_state

from .support import replay_position
from .support.apps import set_rollout
from .support.tcp_proxy import TcpProxy
from .support.waiting import wait_until

ACCESS = "/api/v1/modules/basics/lessons/introductions/access"
COMPLETE = "/api/v1/modules/basics/lessons/greetings/complete"


def counter(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_completion_in_one_worker_makes_another_worker_drop_its_older_copy(
    make_pg_app, auth, pg_database
):
    worker_a, worker_b = make_pg_app(), make_pg_app()
    set_rollout(worker_a, 100)
    with worker_b.app_context():
        from progress.flags import flag_gate

        flag_gate().reload_now()
    learner = auth.learner()
    b = worker_b.test_client()
    assert b.get(ACCESS, headers=learner.headers).get_json()["accessible"] is False
    with psycopg.connect(libpq_dsn(pg_database), autocommit=True) as conn:
        before = replay_position.insert_position(conn)
    worker_a.test_client().post(COMPLETE, headers=learner.headers)

    with worker_b.app_context():
        cache = worker_state().cache
        wait_until(lambda: cache.floor(learner.id) == 1, 5, "the announcement", interval=0.02)
        # and beside it the primary's insert position read after it arrived: past the commit
        wait_until(lambda: cache.known(learner.id).position, 5, "its position", interval=0.02)
        assert cache.known(learner.id).position > before
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


def test_a_hung_listen_connection_is_cut_at_the_deadline_and_the_cache_cleared(pg_database):
    """A server that stops answering (a hung proxy: the socket stays open) looks to a mere
    listener like one with nothing to say; under the database deadline the listener notices
    within a quiet second plus the deadline, reconnects once the server answers, and clears
    the cache, since whatever was announced meanwhile is lost."""
    cache = ProgressCache(maxsize=10, ttl_s=60)
    learner = uuid.uuid4()
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        dsn = libpq_dsn(pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        listener = VersionListener(dsn, cache, timeout_ms=1000, quiet_s=0.5)
        listener.start()
        try:
            wait_until(listener.connected.is_set, 10, "the listener to listen", interval=0.02)
            cache.raise_floor(learner, 3)
            proxy.pause()
            # Noticed within a quiet 0.5 s plus the 1 s deadline: waited for 3x that.
            wait_until(
                lambda: not listener.connected.is_set(),
                4.5,
                "the hung LISTEN connection to be noticed",
                interval=0.02,
            )
            assert listener.deadline_cuts >= 1  # cut by the deadline, not by the server
            proxy.resume()
            wait_until(lambda: listener.connections == 2, 15, "the reconnect", interval=0.02)
            assert cache.floor(learner) == 0  # cleared on the new connection
        finally:
            listener.stop()


def test_the_embedded_sqlite_default_needs_no_listener(client, app):
    checks = client.get("/readyz").get_json()["checks"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        assert checks["invalidation"] == "ok (not needed: one process on SQLite)"
    else:
        assert checks["invalidation"] == "ok (listening)"
