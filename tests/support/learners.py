"""Learners as the identity provider makes them: a signed token, nothing stored yet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .apps import SECRET
from .tokens import token_minter


@dataclass
class Learner:
    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class AuthActions:
    """Make learners with the tests' secret (or another one), in TEST_TOKEN_MODE's mode."""

    def __init__(self, secret: str = SECRET):
        self.minter = token_minter(secret)

    def learner(self, *, verified: bool = True, admin: bool = False, ttl_s: int = 600) -> Learner:
        user_id = uuid.uuid4()
        email = f"{user_id.hex[:8]}@example.com"
        token = self.minter.mint(user_id, email, email_verified=verified, admin=admin, ttl_s=ttl_s)
        return Learner(user_id, email, token)
