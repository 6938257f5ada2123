"""A database that hangs (not down: hung) under gunicorn: requests that need it answer 503
database_unavailable within a bounded time, /healthz keeps answering, nothing acknowledged
is lost, and the service recovers by itself when the database answers again.

The hang is real: PostgreSQL is reached through a TCP proxy (tests/support/tcp_proxy.py)
that stops forwarding while keeping every connection open, so the kernel still
acknowledges and only a client-side deadline can end a call. Run with -s for the figures.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from harness import databases
from harness.service import running_service

from .support.apps import SECRET
from .support.learners import AuthActions
from .support.service import service_env
from .support.tcp_proxy import TcpProxy

BASE = "/api/v1/modules/basics/lessons/"
LESSONS = ["greetings", "introductions", "numbers-1-10", "colours", "polite-phrases"]
TIMEOUT_MS = 3000  # PROGRESS_DB_TIMEOUT_MS' default: the figures are the default's
# A hung call: the deadline, then at most a fresh connection's connect_timeout (libpq
# counts whole seconds), then the answer: 7.5 s by design.
BOUND_S = 2 * TIMEOUT_MS / 1000 + 1.5
# The test allows 3x the design's bound; a call with no bound runs into the client's 30 s
# timeout and fails as an exception.
ALLOWED_S = 3 * BOUND_S
# /healthz touches no database: tens of ms even during the hang. 1.5 s allowed: over 10x
# that, and half the 3 s deadline a /healthz queued behind the hung calls would take.
HEALTHZ_ALLOWED_S = 1.5

pytestmark = pytest.mark.slow


def proxied_url(database_url: str, port: int) -> str:
    return database_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")


def stored_lessons(database_url: str, learner_id) -> set[str]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT l.slug FROM lesson_progress p JOIN lessons l ON l.id = p.lesson_id"
            " WHERE p.user_id = %s",
            (learner_id,),
        ).fetchall()
    return {slug for (slug,) in rows}


def timed(call) -> tuple[float, requests.Response | Exception]:
    started = time.monotonic()
    try:
        result = call()
    except requests.RequestException as exc:
        result = exc
    return time.monotonic() - started, result


def test_a_hung_primary_is_a_bounded_503_healthz_answers_and_nothing_acknowledged_is_lost(
    pg_app, pg_database, tmp_path
):
    auth = AuthActions(SECRET)
    learners = [auth.learner() for _ in range(3)]
    with (
        TcpProxy(("127.0.0.1", 5432)) as proxy,
        running_service(
            service_env(
                proxied_url(pg_database, proxy.port),
                tmp_path / "metrics",
                PROGRESS_DB_TIMEOUT_MS=str(TIMEOUT_MS),
            ),
            tmp_path,
            workers=2,
        ) as service,
    ):
        url = service.url
        acknowledged: dict[str, list[str]] = {}
        for learner in learners:  # one acknowledged completion each before the hang
            done = requests.post(
                url + BASE + "greetings/complete", headers=learner.headers, timeout=10
            )
            assert done.status_code == 200, done.text
            acknowledged[str(learner.id)] = ["greetings"]

        proxy.pause()
        hung_at = time.monotonic()
        healthz: list[float] = []
        stop = threading.Event()

        def probe_health() -> None:
            while not stop.is_set():
                took, answer = timed(lambda: requests.get(url + "/healthz", timeout=10))
                assert not isinstance(answer, Exception), answer
                assert answer.status_code == 200
                healthz.append(took)
                time.sleep(0.1)

        prober = threading.Thread(target=probe_health, daemon=True)
        prober.start()

        def complete(learner) -> tuple[float, requests.Response | Exception]:
            return timed(
                lambda: requests.post(
                    url + BASE + "introductions/complete", headers=learner.headers, timeout=30
                )
            )

        def access(learner) -> tuple[float, requests.Response | Exception]:
            return timed(
                lambda: requests.get(
                    url + BASE + "numbers-1-10/access", headers=learner.headers, timeout=30
                )
            )

        with ThreadPoolExecutor(6) as pool:
            completions = list(pool.map(complete, learners))
            accesses = list(pool.map(access, learners))
        stop.set()
        prober.join(15)
        hang_lasted = time.monotonic() - hung_at

        for took, answer in completions + accesses:
            assert not isinstance(answer, Exception), answer
            if answer.status_code == 200:  # answered before the hang reached it: kept below
                continue
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert took < ALLOWED_S, f"{took:.2f} s to a 503 (bound {BOUND_S} s)"
        assert any(answer.status_code == 503 for _, answer in completions)
        for learner, (_, answer) in zip(learners, completions, strict=True):
            if answer.status_code == 200:
                acknowledged[str(learner.id)].append("introductions")
        assert healthz, "no /healthz answer during the hang"
        assert max(healthz) < HEALTHZ_ALLOWED_S, f"/healthz took {max(healthz):.3f} s in the hang"

        proxy.resume()
        recovered_at = time.monotonic()

        def answers_again() -> bool:
            response = requests.post(
                url + BASE + "introductions/complete", headers=learners[0].headers, timeout=30
            )
            return response.status_code == 200

        while not answers_again():
            assert time.monotonic() - recovered_at < 30, "the service did not recover"
            time.sleep(0.5)
        recovery_s = time.monotonic() - recovered_at
        acknowledged[str(learners[0].id)] = ["greetings", "introductions"]
        for learner in learners:
            done = requests.post(
                url + BASE + "introductions/complete", headers=learner.headers, timeout=10
            )
            assert done.status_code == 200, done.text
            acknowledged[str(learner.id)] = ["greetings", "introductions"]

        # A refused connection (the database down, not hung) is a 503 too, and sooner.
        proxy.stop()
        refused_s, refused = timed(
            lambda: requests.post(
                url + BASE + "numbers-1-10/complete", headers=learners[1].headers, timeout=30
            )
        )
        assert not isinstance(refused, Exception), refused
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert refused_s < BOUND_S  # refused at once: well under a second, 7.5 s allowed
        assert requests.get(url + "/healthz", timeout=5).status_code == 200

    direct = databases.database_url(pg_database.rsplit("/", 1)[1])
    for learner in learners:
        assert set(acknowledged[str(learner.id)]) <= stored_lessons(direct, learner.id)
    times_to_503 = [t for t, a in completions + accesses if a.status_code == 503]
    print(
        f"\nhung primary (PROGRESS_DB_TIMEOUT_MS={TIMEOUT_MS}): request -> 503 in "
        f"median {statistics.median(times_to_503):.2f} s, max {max(times_to_503):.2f} s "
        f"({len(times_to_503)} requests); /healthz during the hang: median "
        f"{statistics.median(healthz) * 1000:.1f} ms, max {max(healthz) * 1000:.1f} ms "
        f"({len(healthz)} probes over {hang_lasted:.1f} s); recovered "
        f"{recovery_s:.1f} s after the database answered again; refused: 503 in {refused_s:.2f} s"
    )
