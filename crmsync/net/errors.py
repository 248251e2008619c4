"""Typed failures of an HTTP API call, classified once for Quo and every CRM.

The transport turns every failed call into one of these kinds; each API subclasses
them (`QuoAuthError(QuoError, AuthError)`, `CrmAuthError`, …) so a caller can still
tell which side failed, while code that does not care catches the kind (the tenant
supervisor parks on any `AuthError`). `category` is the dead-letter / API error
category of INTERFACE §9. Messages name the call (method and route), never its headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import msgspec


class ApiError(Exception):
    """A call of an HTTP API failed; the message says which call and why."""

    category: ClassVar[str] = "remote"

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


class AuthError(ApiError):
    """401/403: the key is wrong, revoked, not active yet or lacks a scope."""

    category = "auth"


class NotFoundError(ApiError):
    """404."""

    category = "not_found"


class ConflictError(ApiError):
    """409."""

    category = "conflict"


class RejectedError(ApiError):
    """Any other 4xx: the request itself is wrong, and repeating it cannot help."""

    category = "validation"


class RateLimitedError(ApiError):
    """429; `retry_after` is set when the API said how long to wait."""

    category = "rate_limited"
    retry_after: float | None = None


class ServerError(ApiError):
    """5xx: the API failed; the request may or may not have taken effect."""


class TransportError(ApiError):
    """Connection refused or reset, timeout, DNS: no answer came back."""

    category = "transport"


class DecodeError(ApiError):
    """A 2xx whose body is not what the API documents (not JSON, a field missing)."""


#: `(message, code)` out of an error response body
BodyReader = Callable[[bytes], tuple[str, str | None]]
#: `(body, method, route)` of a 2xx answer → the error it reports all the same, or None
#: (APIs that answer application errors with HTTP 200, e.g. Metakocka's `opr_code`)
OkBodyCheck = Callable[[bytes, str, str], "ApiError | None"]


def body_excerpt(body: bytes) -> tuple[str, str | None]:
    """The first 200 bytes of the body as the message (APIs without an error schema)."""
    return (body[:200].decode(errors="replace") or "no body"), None


@dataclass(frozen=True, slots=True)
class ErrorKinds:
    """One API's error classes, one per kind, and how to read its error bodies."""

    auth: type[AuthError]
    not_found: type[NotFoundError]
    conflict: type[ConflictError]
    rejected: type[RejectedError]
    rate_limited: type[RateLimitedError]
    server: type[ServerError]
    transport: type[TransportError]
    decode: type[DecodeError]
    read_body: BodyReader = body_excerpt
    #: a 2xx answer that is an error: raised, and retried, like the status it stands for
    check_ok: OkBodyCheck | None = None

    def for_status(
        self,
        status: int,
        body: bytes,
        *,
        method: str,
        route: str,
        retry_after: float | None = None,
    ) -> ApiError:
        """The error for a non-2xx answer."""
        kind: type[ApiError]
        if status in (401, 403):
            kind = self.auth
        elif status == 404:
            kind = self.not_found
        elif status == 409:
            kind = self.conflict
        elif status == 429:
            kind = self.rate_limited
        elif status >= 500:
            kind = self.server
        else:
            kind = self.rejected
        message, code = self.read_body(body)
        error = kind(message, status=status, code=code, method=method, route=route)
        if isinstance(error, RateLimitedError):
            error.retry_after = retry_after
        return error


class _JsonErrorBody(msgspec.Struct, kw_only=True):
    message: str | None = None
    code: str | None = None
    title: str | None = None


def json_error_body(body: bytes) -> tuple[str, str | None]:
    """`{"message", "code", "title"}` bodies (Quo's, and Kong's 429), else an excerpt."""
    try:
        parsed = msgspec.json.decode(body, type=_JsonErrorBody) if body else _JsonErrorBody()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body_excerpt(body)
    return (parsed.message or parsed.title or "API error"), parsed.code
