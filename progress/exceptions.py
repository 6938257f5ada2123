"""The service's one error family: every error a client may see is a ProgressError.

A subclass names its HTTP status and error code once; where it is raised it adds the
message and, for bad input, the field. One handler (progress.errors) turns any of them
into the contract's shape: {"error": {"code", "message"[, "field"]}}.
"""

from __future__ import annotations


class ProgressError(Exception):
    """An answer the client should see. Subclasses set `status` and `code`."""

    status: int = 500
    code: str = "internal_error"
    default_message: str = "An unexpected error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)
        self.field = field
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body (none unless a subclass says)."""
        return {}


class RateLimited(ProgressError):
    """A learner went over an abuse limit (progress/rate_limits.py)."""

    status = 429
    code = "rate_limited"
    default_message = "Too many requests; retry later."

    def __init__(self, message: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}
