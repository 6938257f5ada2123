"""/metrics: every family at zero from the start, and under gunicorn the sum of all workers."""

import os
import re
import signal

import requests
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from harness.service import running_service

from .support.apps import SECRET, set_rollout
from .support.learners import AuthActions
from .support.service import service_env
from .support.waiting import wait_until

FAMILIES = {
    "progress_completions": "counter",
    "progress_cache_updates": "counter",
    "progress_cache_update_seconds": "histogram",
    "progress_cache_lookups": "counter",
    "progress_cache_staleness_incidents": "counter",
    "progress_access_checks": "counter",
    "progress_false_lock_screens": "counter",
    "progress_cache_mismatches": "counter",
    "progress_circuit_breaker_open": "gauge",
    "progress_db_retries": "counter",
    "progress_rollout_percentage": "gauge",
    "progress_rollout_stage": "gauge",
    "progress_rollout_guard_decisions": "counter",
    "progress_rollout_stage_percentage": "gauge",
    "progress_http_requests": "counter",
    "progress_http_request_duration_seconds": "histogram",
}


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_family_is_exported_at_zero_before_any_traffic(client):
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert families.get(name) == kind, name
    samples = parse(text)
    for path in ("legacy", "verified"):
        assert (
            "progress_false_lock_screens_total",
            frozenset({("path", path), ("detected_by", "audit")}),
        ) in samples
    histogram_buckets = {dict(labels)["le"] for name, labels in samples if name.endswith("_bucket")}
    assert {"0.001", "5.0"} <= histogram_buckets  # 1 ms to 5 s
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-|user_id", text)  # no ids in labels
    # Every route is a template of the app's (never a raw URL), each with its histogram.
    rules = {rule.rule for rule in client.application.url_map.iter_rules()}
    routes = {dict(labels).get("route") for _, labels in samples} - {None}
    assert routes - {"unmatched"} == rules  # "unmatched": a 404 an earlier test asked for
    assert ("GET", "/api/v1/modules/<moduleId>/lessons/<lessonId>/access") in {
        (dict(labels)["method"], dict(labels)["route"])
        for name, labels in samples
        if name == "progress_http_request_duration_seconds_count"
    }


def test_metrics_answer_exactly_prometheus_clients_content_type(client):
    """One charset parameter, as prometheus-client names it: Prometheus 3 refuses a scrape
    whose Content-Type repeats a parameter."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers.get_all("Content-Type") == [CONTENT_TYPE_LATEST]
    assert answer.headers["Content-Type"].count("charset") == 1


def test_under_gunicorn_metrics_sum_every_worker_and_survive_a_killed_worker(
    pg_app, pg_database, tmp_path
):
    set_rollout(pg_app, 100)
    env = service_env(pg_database, tmp_path / "metrics")
    learners = [AuthActions(SECRET).learner() for _ in range(12)]
    with running_service(env, tmp_path, workers=2) as service:
        session = requests.Session()
        for learner in learners:  # spread over both workers by the kernel
            answer = session.post(
                service.url + "/api/v1/modules/basics/lessons/greetings/complete",
                headers=learner.headers,
                timeout=10,
            )
            assert answer.json()["path"] == "verified"
        for _ in range(4):  # whichever worker answers the scrape, the totals are the same
            samples = parse(requests.get(service.url + "/metrics", timeout=10).text)
            assert value(
                samples, "progress_completions_total", path="verified", outcome="success"
            ) == len(learners)
            assert value(samples, "progress_rollout_percentage") == 100

        killed = service.worker_pids()[0]
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: len(pids := service.worker_pids()) == 2 and killed not in pids,
            30,
            "gunicorn to replace the killed worker",
        )
        samples = parse(requests.get(service.url + "/metrics", timeout=10).text)
        assert value(
            samples, "progress_completions_total", path="verified", outcome="success"
        ) == len(learners)
        assert value(samples, "progress_circuit_breaker_open") == 0


def test_request_metrics_under_gunicorn_count_every_request_once_across_workers(
    pg_app, pg_database, tmp_path
):
    """Requests by method, route template and status, and the latency histogram per route,
    summed over both workers (multiprocess mode), whichever worker answers the scrape."""
    env = service_env(pg_database, tmp_path / "metrics")
    learner = AuthActions(SECRET).learner()
    access = "/api/v1/modules/basics/lessons/{}/access"
    template = "/api/v1/modules/<moduleId>/lessons/<lessonId>/access"
    with running_service(env, tmp_path, workers=2) as service:
        for lesson in ("greetings", "introductions") * 5:  # a new connection each time
            answer = requests.get(
                service.url + access.format(lesson), headers=learner.headers, timeout=10
            )
            assert answer.status_code == 200
        for _ in range(3):
            assert requests.get(service.url + access.format("nope"), timeout=10).status_code == 401
            assert requests.get(service.url + "/no/such/page", timeout=10).status_code == 404
        answered = set()
        for _ in range(4):
            samples = parse(requests.get(service.url + "/metrics", timeout=10).text)
            count = {
                (dict(labels)["route"], dict(labels)["status"]): v
                for (name, labels), v in samples.items()
                if name == "progress_http_requests_total" and dict(labels)["method"] == "GET"
            }
            assert count[(template, "200")] == 10
            assert count[(template, "401")] == 3
            assert count[("unmatched", "404")] == 3
            assert (
                value(
                    samples,
                    "progress_http_request_duration_seconds_count",
                    method="GET",
                    route=template,
                )
                == 13
            )
            answered.add(count.get(("/metrics", "200"), 0))
        assert len(answered) == 4  # every scrape counted once, by whichever worker answered
