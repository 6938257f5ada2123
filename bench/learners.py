"""The bench's learners: created over HTTP (each completes the first lesson), or written
straight to the database with every lesson complete (for the memory figure)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import requests

from harness.identity import TokenMinter

FIRST_LESSON = "/api/v1/modules/basics/lessons/greetings/complete"
# Open to every learner who completed the first lesson.
ACCESS = "/api/v1/modules/basics/lessons/introductions/access"


@dataclass
class Learner:
    user_id: str
    token: str
    path: str  # the path the flag picked, from the completion's answer


def create_learners(urls: Sequence[str], count: int, minter: TokenMinter) -> list[Learner]:
    """Tokens from `minter` (the lab's and the tests' token maker, in either mode); each
    service at `urls` (on its own database) creates each learner on first use. The path is
    the first service's answer."""
    learners = []
    with requests.Session() as session:
        for i in range(count):
            user_id = uuid.uuid4()
            token = minter.mint(user_id, f"bench-{i}@example.com", ttl_s=24 * 3600)
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


def insert_cached_learners(database_url: str, count: int, minter: TokenMinter) -> list[str]:
    """`count` learners with every lesson complete, written straight to the database in three
    set-based statements (far quicker than 20 completions each over HTTP); their tokens, whose
    identities match the rows, so the service's first sight of each rewrites nothing."""
    ids = [uuid.uuid4() for _ in range(count)]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO users (id, email, email_verified, created_at) "
            "SELECT id, 'cached-' || n || '@example.com', true, now() "
            "FROM unnest(%s::uuid[]) WITH ORDINALITY AS learners(id, n)",
            [ids],
        )
        conn.execute(
            "INSERT INTO progress_versions (user_id, version, updated_at) "
            "SELECT id, (SELECT count(*) FROM lessons), now() "
            "FROM unnest(%s::uuid[]) AS learners(id)",
            [ids],
        )
        conn.execute(
            "INSERT INTO lesson_progress (user_id, lesson_id, completed_at, version, "
            "acknowledged_at) SELECT learners.id, lessons.id, now(), "
            "row_number() OVER (PARTITION BY learners.id ORDER BY lessons.id), now() "
            "FROM unnest(%s::uuid[]) AS learners(id) CROSS JOIN lessons",
            [ids],
        )
    return [
        minter.mint(i, f"cached-{n}@example.com", ttl_s=24 * 3600)
        for n, i in enumerate(ids, start=1)
    ]
