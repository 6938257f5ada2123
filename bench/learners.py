"""The bench's learners: created over HTTP (each completes the first lesson), or written
straight to the database with every lesson complete (for the memory figure)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import requests

from progress.auth import issue_token

FIRST_LESSON = "/api/v1/modules/basics/lessons/greetings/complete"


@dataclass
class Learner:
    user_id: str
    token: str
    path: str  # the path the flag picked, from the completion's answer


def create_learners(urls: Sequence[str], count: int, secret: str) -> list[Learner]:
    """Tokens from the repo's own issuer; each service at `urls` (on its own database)
    creates each learner on first use. The path is the first service's answer."""
    learners = []
    with requests.Session() as session:
        for i in range(count):
            user_id = uuid.uuid4()
            token = issue_token(user_id, f"bench-{i}@example.com", secret=secret, ttl_s=24 * 3600)
            paths = []
            for url in urls:
                response = session.post(
                    url + FIRST_LESSON, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
                if response.status_code != 200 or not response.json().get("success"):
                    raise RuntimeError(
                        f"completing the first lesson failed at {url}: "
                        f"{response.status_code} {response.text}"
                    )
                paths.append(response.json()["path"])
            learners.append(Learner(str(user_id), token, paths[0]))
    return learners


def insert_cached_learners(database_url: str, count: int, secret: str) -> list[str]:
    """`count` learners with all 20 lessons complete, written straight to the database (far
    quicker than 20 completions each over HTTP); their tokens."""
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (id, email, email_verified, created_at) "
                "VALUES (%s, %s, true, now())",
                [(i, f"cached-{n}@example.com") for n, i in enumerate(ids)],
            )
        conn.execute(
            "INSERT INTO progress_versions (user_id, version, updated_at) "
            "SELECT id, 20, now() FROM users WHERE email LIKE 'cached-%%'"
        )
        conn.execute(
            "INSERT INTO lesson_progress (user_id, lesson_id, completed_at) "
            "SELECT u.id, l.id, now() FROM users u CROSS JOIN lessons l "
            "WHERE u.email LIKE 'cached-%%'"
        )
    return [
        issue_token(i, f"cached-{n}@example.com", secret=secret, ttl_s=24 * 3600)
        for n, i in enumerate(ids)
    ]
