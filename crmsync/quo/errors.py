"""Typed Quo API errors: the transport's kinds (`crmsync.net.errors`), as Quo's.

Quo's error body looks like `{"message", "code", "status", "title", "docs"}`; the rate
limiter's 429 is Kong's `{"message": "API rate limit exceeded"}`. Messages keep Quo's
text but never the request's headers (the API key).
"""

from __future__ import annotations

from crmsync.net.errors import (
    ApiError,
    AuthError,
    ConflictError,
    DecodeError,
    ErrorKinds,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransportError,
    json_error_body,
)


class QuoError(ApiError):
    """Base for every failure of a Quo call."""


class QuoAuthError(QuoError, AuthError):
    """401/403: the key is wrong, revoked, not yet active (~30 s) or lacks access."""


class QuoValidationError(QuoError, RejectedError):
    """400/422: Quo rejected the payload; retrying the same request cannot help."""


class QuoNotFoundError(QuoError, NotFoundError):
    """404."""


class QuoConflictError(QuoError, ConflictError):
    """409: opaque conflict, in practice a duplicate `externalId`."""


class QuoRateLimitedError(QuoError, RateLimitedError):
    """429, after the transport's retries; `retry_after` as Quo sent it."""


class QuoServerError(QuoError, ServerError):
    """5xx."""


class QuoTransportError(QuoError, TransportError):
    """Connection reset, timeout, DNS: nothing usable came back."""


class QuoDecodeError(QuoError, DecodeError):
    """A 2xx body that does not match Quo's documented shape (e.g. a contact without
    `defaultFields.firstName`): that record fails, the sync goes on."""


QUO_ERRORS = ErrorKinds(
    auth=QuoAuthError,
    not_found=QuoNotFoundError,
    conflict=QuoConflictError,
    rejected=QuoValidationError,
    rate_limited=QuoRateLimitedError,
    server=QuoServerError,
    transport=QuoTransportError,
    decode=QuoDecodeError,
    read_body=json_error_body,
)

