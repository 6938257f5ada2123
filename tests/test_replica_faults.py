"""A read replica that hangs or is down: both paths answer from the primary, the replica is
set aside for PROGRESS_REPLICA_RECHECK_S with one warning per interval, /readyz shows it,
and reads go back to it once it answers. And a minVersion above anything the primary holds
is answered from the primary at once, without replica retries or staleness counted."""

from __future__ import annotations

import logging
import time

from prometheus_client import REGISTRY

from .support.apps import set_rollout
from .support.tcp_proxy import TcpProxy

ACCESS = "/api/v1/modules/basics/lessons/{}/access"
COMPLETE = "/api/v1/modules/basics/lessons/{}/complete"


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def warnings(caplog) -> int:
    return sum("read replica unavailable" in r.getMessage() for r in caplog.records)


def test_a_hung_then_down_replica_is_set_aside_and_the_primary_answers(
    pg_app, pg_database, make_pg_app, auth, caplog
):
    learner = auth.learner()
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        app = make_pg_app(
            DATABASE_REPLICA_URL=pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
            PROGRESS_REPLICA_RECHECK_S=2,
            PROGRESS_DB_TIMEOUT_MS=1000,
        )
        client = app.test_client()
        assert client.post(COMPLETE.format("greetings"), headers=learner.headers).status_code == 200
        assert client.get("/readyz").get_json()["checks"]["replica"] == "ok"

        proxy.pause()  # hung: connections stay open, nothing answers
        with caplog.at_level(logging.WARNING, logger="progress.replica"):
            for rollout in (0, 100):  # the legacy path, then the verified path
                set_rollout(app, rollout)
                for _ in range(3):
                    answer = client.get(ACCESS.format("introductions"), headers=learner.headers)
                    assert answer.status_code == 200, answer.get_json()
                    assert answer.get_json()["accessible"] is True
            assert warnings(caplog) == 1  # once per interval, not on every read
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.get_json()["checks"]["replica"].startswith("degraded")

            proxy.resume()
            time.sleep(2.2)  # the interval: the next read tries the replica again
            progress = client.get("/api/v1/progress", headers=learner.headers)  # reads the DB
            assert progress.status_code == 200
            assert client.get("/readyz").get_json()["checks"]["replica"] == "ok"

            proxy.stop()  # down: refused at once
            time.sleep(2.2)  # the interval again
            progress = client.get("/api/v1/progress", headers=learner.headers)
            assert progress.status_code == 200
            assert progress.get_json()["version"] == 1
            assert warnings(caplog) == 2
            assert client.get("/readyz").get_json()["checks"]["replica"].startswith("degraded")


def test_a_min_version_nobody_holds_is_answered_from_the_primary_at_once(
    pg_app, pg_database, make_pg_app, auth
):
    learner = auth.learner()
    app = make_pg_app(DATABASE_REPLICA_URL=pg_database)  # a replica that is never behind
    set_rollout(app, 100)
    client = app.test_client()
    client.post(COMPLETE.format("greetings"), headers=learner.headers)
    client.get(ACCESS.format("introductions"), headers=learner.headers)  # cached at version 1
    retries = counter("progress_db_retries_total", reason="replica_lag")
    stale = counter("progress_cache_staleness_incidents_total", path="verified")
    answer = client.get(
        ACCESS.format("introductions") + "?minVersion=999999", headers=learner.headers
    )
    assert answer.status_code == 200
    body = answer.get_json()
    assert (body["accessible"], body["version"], body["source"]) == (True, 1, "db")
    assert counter("progress_db_retries_total", reason="replica_lag") == retries
    assert counter("progress_cache_staleness_incidents_total", path="verified") == stale
