"""Lock receipts: a locked access answer hands the client a receipt, signed by the service,
so that a lock screen reported later names exactly the answer that showed it: the learner,
the lesson, the path that answered, the version it answered from, the `minVersion` the
request sent, when the read began and when the answer was given.

The receipt is opaque to clients. It is signed with HMAC-SHA256 under a key derived from
the current receipt key (itsdangerous), so no one without a key can make or change one; a
receipt signed with an older key still listed verifies until it expires.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from .exceptions import ProgressError
from .path_names import PATHS

FORMAT = 2  # 1 lacked the read's start and minVersion: refused, as unknown
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
    version: int  # the progress version the answer was read at
    min_version: int | None  # the version the request said the learner held; None if none
    read_began_at: datetime  # stamped before the read
    answered_at: datetime  # stamped after it


def _serializer(secret: str | Sequence[str]) -> URLSafeSerializer:
    """Signs with the first key, verifies with any (itsdangerous wants the newest last)."""
    return URLSafeSerializer(
        [secret] if isinstance(secret, str) else list(reversed(secret)),
        salt=SALT,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def issue(
    secret: str | Sequence[str],
    learner_id: uuid.UUID,
    module_id: str,
    lesson_id: str,
    path: str,
    version: int,
    *,
    read_began_at: datetime,
    min_version: int | None = None,
    answered_at: datetime | None = None,
) -> str:
    """Sign a receipt for a "locked" answer given now (or at `answered_at`), whose read
    began at `read_began_at`, to a request that sent `min_version`."""
    at = answered_at or datetime.now(UTC)
    payload = [
        FORMAT,
        secrets.token_urlsafe(12),
        learner_id.hex,
        module_id,
        lesson_id,
        path,
        version,
        min_version,
        _micros(read_began_at),
        _micros(at),
    ]
    return _serializer(secret).dumps(payload)


def _at(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _parse(payload: Any) -> LockReceipt:
    if not isinstance(payload, list) or len(payload) != 10 or payload[0] != FORMAT:
        raise InvalidReceipt("The lock receipt has an unknown format.")
    _, nonce, learner, module_id, lesson_id, path, version, min_version, began, answered = payload
    if not all(isinstance(v, str) for v in (nonce, learner, module_id, lesson_id, path)):
        raise InvalidReceipt("The lock receipt has an unknown format.")
    if path not in PATHS or not all(isinstance(v, int) for v in (version, began, answered)):
        raise InvalidReceipt("The lock receipt has an unknown format.")
    if not (min_version is None or isinstance(min_version, int)):
        raise InvalidReceipt("The lock receipt has an unknown format.")
    return LockReceipt(
        receipt_id=nonce,
        learner_id=uuid.UUID(hex=learner),
        module_id=module_id,
        lesson_id=lesson_id,
        path=path,
        version=version,
        min_version=min_version,
        read_began_at=_at(began),
        answered_at=_at(answered),
    )


def verify(
    receipt: str,
    *,
    secret: str | Sequence[str],
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
