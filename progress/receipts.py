"""Lock receipts: a locked access answer hands the client a receipt, signed by the service,
so that a lock screen reported later names exactly the answer that showed it: the learner,
the lesson, the path that answered, the version it answered from, and when.

The receipt is opaque to clients. It is signed with HMAC-SHA256 under a key derived from
the service's secret (itsdangerous), so no one without the secret can make or change one.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .exceptions import ProgressError
from .path_names import PATHS

FORMAT = 1
SALT = "progress.lock-receipt"
# What `issue` makes, as the OpenAPI document states it: itsdangerous' URL-safe base64 of the
# payload (with a leading "." when zlib made it shorter), ".", and the HMAC-SHA256 signature
# (32 bytes: 43 characters).
PATTERN = r"^\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$"
# Receipts are 150-350 characters today; the bounds leave room for fields to come.
MIN_LENGTH, MAX_LENGTH = 64, 1024


class InvalidReceipt(ProgressError):
    """A receipt that is missing, malformed, tampered with, expired, or not this report's."""

    status, code = 400, "invalid_receipt"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="lockReceipt")


@dataclass(frozen=True, slots=True)
class LockReceipt:
    receipt_id: str  # a random nonce: each receipt counts once
    learner_id: uuid.UUID
    module_id: str
    lesson_id: str
    path: str
    version: int
    answered_at: datetime


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(
        secret,
        salt=SALT,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def issue(
    secret: str,
    learner_id: uuid.UUID,
    module_id: str,
    lesson_id: str,
    path: str,
    version: int,
    answered_at: datetime | None = None,
) -> str:
    """Sign a receipt for a "locked" answer given now (or at `answered_at`)."""
    at = answered_at or datetime.now(UTC)
    payload = [
        FORMAT,
        secrets.token_urlsafe(12),
        learner_id.hex,
        module_id,
        lesson_id,
        path,
        version,
        _micros(at),
    ]
    return _serializer(secret).dumps(payload)


def _parse(payload: Any) -> LockReceipt:
    if not isinstance(payload, list) or len(payload) != 8 or payload[0] != FORMAT:
        raise InvalidReceipt("The lock receipt has an unknown format.")
    _, nonce, learner, module_id, lesson_id, path, version, micros = payload
    if not all(isinstance(v, str) for v in (nonce, learner, module_id, lesson_id, path)):
        raise InvalidReceipt("The lock receipt has an unknown format.")
    if path not in PATHS or not isinstance(version, int) or not isinstance(micros, int):
        raise InvalidReceipt("The lock receipt has an unknown format.")
    return LockReceipt(
        receipt_id=nonce,
        learner_id=uuid.UUID(hex=learner),
        module_id=module_id,
        lesson_id=lesson_id,
        path=path,
        version=version,
        answered_at=datetime.fromtimestamp(micros / 1_000_000, UTC),
    )


def verify(
    receipt: str,
    *,
    secret: str,
    max_age_s: int,
    learner_id: uuid.UUID,
    module_id: str,
    lesson_id: str,
    now: float | None = None,
) -> LockReceipt:
    """The receipt's contents, if the service signed it for this learner and lesson within
    `max_age_s`; InvalidReceipt (with a message for the client) otherwise."""
    try:
        parsed = _parse(_serializer(secret).loads(receipt))
    except BadSignature:
        raise InvalidReceipt("The lock receipt is not one this service signed.") from None
    except (ValueError, TypeError):
        raise InvalidReceipt("The lock receipt has an unknown format.") from None
    age_s = (time.time() if now is None else now) - parsed.answered_at.timestamp()
    if age_s > max_age_s:
        raise InvalidReceipt(f"The lock receipt has expired (older than {max_age_s} s).")
    if parsed.learner_id != learner_id:
        raise InvalidReceipt("The lock receipt was given to another learner.")
    if (parsed.module_id, parsed.lesson_id) != (module_id, lesson_id):
        raise InvalidReceipt("The lock receipt is for another lesson.")
    return parsed
