"""Learners as the identity provider makes them: a signed token, nothing stored yet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from progress.auth import issue_token

from .apps import SECRET


@dataclass
class Learner:
    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class AuthActions:
    """Make learners with the tests' secret (or another one)."""

    def __init__(self, secret: str = SECRET):
        self.secret = secret

    def learner(self, *, verified: bool = True, admin: bool = False, ttl_s: int = 600) -> Learner:
        user_id = uuid.uuid4()
        email = f"{user_id.hex[:8]}@example.com"
        token = issue_token(
            user_id, email, secret=self.secret, email_verified=verified, admin=admin, ttl_s=ttl_s
        )
        return Learner(user_id, email, token)
