"""Typed Quo API errors, mapped from HTTP status and Quo's error bodies.

Quo's error body looks like `{"message", "code", "status", "title", "docs"}`; the rate
limiter's 429 is Kong's `{"message": "API rate limit exceeded"}`. Messages keep Quo's
text but never the request's headers (the API key).
"""

from __future__ import annotations

import msgspec


class QuoErrorBody(msgspec.Struct, kw_only=True):
    message: str | None = None
    code: str | None = None
    title: str | None = None


class QuoError(Exception):
    """Base for every failure of a Quo call; `retryable` drives the retry loop."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        method: str = "",
        route: str = "",
    ) -> None:
        where = f"{method} {route}: " if method else ""
        super().__init__(f"{where}{message}" + (f" (HTTP {status})" if status else ""))
        self.status = status
        self.code = code
        self.method = method
        self.route = route


class QuoAuthError(QuoError):
    """401/403: the key is wrong, revoked, not yet active (~30 s) or lacks access."""


class QuoValidationError(QuoError):
    """400/422: Quo rejected the payload; retrying the same request cannot help."""


class QuoNotFoundError(QuoError):
    """404."""


class QuoConflictError(QuoError):
    """409: opaque conflict, in practice a duplicate `externalId`."""


class QuoRateLimitedError(QuoError):
    """429; `retry_after` is set when Quo sent a usable `Retry-After`."""

    retryable = True
    retry_after: float | None = None


class QuoServerError(QuoError):
    retryable = True


class QuoTransportError(QuoError):
    """Connection reset, timeout, DNS: nothing usable came back."""

    retryable = True


def _class_for_status(status: int) -> type[QuoError]:
    if status in (401, 403):
        return QuoAuthError
    if status == 404:
        return QuoNotFoundError
    if status == 409:
        return QuoConflictError
    if status == 429:
        return QuoRateLimitedError
    if status >= 500:
        return QuoServerError
    return QuoValidationError


def error_for_status(
    status: int,
    body: bytes,
    *,
    method: str,
    route: str,
    retry_after: float | None = None,
) -> QuoError:
    try:
        parsed = msgspec.json.decode(body, type=QuoErrorBody) if body else QuoErrorBody()
    except msgspec.DecodeError:
        parsed = QuoErrorBody()
    message = parsed.message or parsed.title or "Quo API error"
    error = _class_for_status(status)(
        message, status=status, code=parsed.code, method=method, route=route
    )
    if isinstance(error, QuoRateLimitedError):
        error.retry_after = retry_after
    return error
