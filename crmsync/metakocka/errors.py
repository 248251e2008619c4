"""Typed Metakocka errors: the transport's kinds (`crmsync.net.errors`), as Metakocka's.

Metakocka answers its application errors with HTTP 200 and a JSON body carrying
`opr_code` (≠ "0") and `opr_desc` (research `metakocka-api.md` §2); a success has
`opr_code` "0" or, on `add_partner`, none at all. `MetakockaErrorKinds.check_ok` reads
a 200 body so the transport raises, and retries, these like the status they stand for:

| `opr_code` / `opr_desc`                        | error                        | category     |
|------------------------------------------------|------------------------------|--------------|
| "No partner with such properties."             | `MetakockaNotFoundError`     | not_found    |
| 3 (bad secret_key/company_id), 4 (IP refused)  | `MetakockaAuthError`         | auth         |
| 5 "Quote exceeds" (call-rate limit)            | `MetakockaRateLimitedError`  | rate_limited |
| 1 (internal error)                             | `MetakockaServerError`       | remote       |
| "… already exist …"                            | `MetakockaConflictError`     | conflict     |
| 2, 6, 8 (parameters, application rejection)    | `MetakockaValidationError`   | validation   |
| any other code                                 | `MetakockaRemoteError`       | remote       |

The text decides before the code (Metakocka's codes are used loosely). An HTTP 404 is
a wrong endpoint (family), an HTML page, never a missing record: `MetakockaEndpointError`
(category remote), deliberately not a `NotFoundError`, so a misconfigured `base_url`
can never read as "every partner is gone".

Credentials travel in the request body: messages are built from the answer only, and
`metakocka_errors(secret_key)` scrubs the key from them should an answer ever echo it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import msgspec

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
    body_excerpt,
)

#: `opr_desc` of a `get_partner` that matched nothing (an error, not an empty list)
NO_PARTNER: Final = "No partner with such properties."
REDACTED: Final = "[redacted]"


class MetakockaError(ApiError):
    """Base for every failure of a Metakocka call; `code` is the `opr_code`, if any."""


class MetakockaAuthError(MetakockaError, AuthError):
    """`opr_code` 3 (wrong secret_key / company_id), 4 (caller's IP not allowed), 401/403."""


class MetakockaValidationError(MetakockaError, RejectedError):
    """Metakocka refused the request (`opr_code` 2, 6, 8, …): repeating it cannot help."""


class MetakockaNotFoundError(MetakockaError, NotFoundError):
    """"No partner with such properties." (`opr_code` 2)."""


class MetakockaConflictError(MetakockaError, ConflictError):
    """The record already exists (or HTTP 409)."""


class MetakockaRateLimitedError(MetakockaError, RateLimitedError):
    """`opr_code` 5 "Quote exceeds" or HTTP 429: too many calls for the company."""


class MetakockaServerError(MetakockaError, ServerError):
    """`opr_code` 1 or HTTP 5xx; the request may or may not have taken effect."""


class MetakockaTransportError(MetakockaError, TransportError):
    """Connection refused or reset, timeout, DNS: no answer came back."""


class MetakockaDecodeError(MetakockaError, DecodeError):
    """An answer that is not the JSON Metakocka documents."""


class MetakockaEndpointError(MetakockaError):
    """HTTP 404 (an HTML page): the endpoint does not exist at this URL (the `json/`
    family is per endpoint; a wrong `base_url`). A setup fault, not a missing record."""


class MetakockaRemoteError(MetakockaError):
    """An `opr_code` this client does not know."""


# -- reading answers ------------------------------------------------------------------------


def _scrub(message: str, secret: str | None) -> str:
    if secret and secret in message:
        return message.replace(secret, REDACTED)
    return message


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _code(raw: dict[str, Any]) -> str | None:
    code = raw.get("opr_code")
    if code is None or isinstance(code, bool):
        return None
    text = str(code).strip()
    return text or None


def _description(raw: dict[str, Any]) -> str:
    for key in ("opr_desc", "error_desc", "opr_desc_app"):
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "Metakocka error"


def kind_for(code: str, description: str) -> type[MetakockaError]:
    """The error class of an `opr_code` and its `opr_desc` (the text first)."""
    text = description.lower()
    if text.startswith(NO_PARTNER.lower().rstrip(".")):
        return MetakockaNotFoundError
    if "quote exceed" in text or "quota exceed" in text:
        return MetakockaRateLimitedError
    if "secret_key" in text or "is not allowed for company" in text:
        return MetakockaAuthError
    if "already exist" in text:
        return MetakockaConflictError
    by_code: dict[str, type[MetakockaError]] = {
        "1": MetakockaServerError,
        "2": MetakockaValidationError,
        "3": MetakockaAuthError,
        "4": MetakockaAuthError,
        "5": MetakockaRateLimitedError,
        "6": MetakockaValidationError,
        "8": MetakockaValidationError,
    }
    return by_code.get(code, MetakockaRemoteError)


def read_error_body(body: bytes, secret: str | None = None) -> tuple[str, str | None]:
    """`(message, opr_code)` of an error answer: `opr_desc` when the body is Metakocka's
    JSON, a note for an HTML page, else an excerpt; the secret scrubbed."""
    raw = _json_object(body)
    if raw is not None:
        return _scrub(_description(raw), secret), _code(raw)
    head = body[:200].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page instead of Metakocka's JSON (wrong endpoint or family?)", None
    message, code = body_excerpt(body)
    return _scrub(message, secret), code


def check_ok_body(
    body: bytes, method: str, route: str, secret: str | None = None
) -> MetakockaError | None:
    """The error a 200 answer reports (`opr_code` ≠ "0"), or None: a success, or not
    JSON at all (the decoder reports that)."""
    raw = _json_object(body)
    if raw is None:
        return None
    code = _code(raw)
    if code is None or code == "0":
        return None
    description = _scrub(_description(raw), secret)
    return kind_for(code, description)(
        f"{description} (opr_code {code})", code=code, method=method, route=route
    )


@dataclass(frozen=True, slots=True)
class MetakockaErrorKinds(ErrorKinds):
    """`ErrorKinds` with an HTTP 404 that is an endpoint fault, not a missing record."""

    def for_status(
        self,
        status: int,
        body: bytes,
        *,
        method: str,
        route: str,
        retry_after: float | None = None,
    ) -> ApiError:
        if status == 404:
            message, _ = self.read_body(body)
            return MetakockaEndpointError(
                f"no such endpoint: {message}", status=status, method=method, route=route
            )
        return ErrorKinds.for_status(
            self, status, body, method=method, route=route, retry_after=retry_after
        )


METAKOCKA_ERRORS: Final = MetakockaErrorKinds(
    auth=MetakockaAuthError,
    not_found=MetakockaNotFoundError,
    conflict=MetakockaConflictError,
    rejected=MetakockaValidationError,
    rate_limited=MetakockaRateLimitedError,
    server=MetakockaServerError,
    transport=MetakockaTransportError,
    decode=MetakockaDecodeError,
    read_body=read_error_body,
    check_ok=check_ok_body,
)


def metakocka_errors(secret_key: str) -> MetakockaErrorKinds:
    """`METAKOCKA_ERRORS` whose messages never show `secret_key`."""

    def read_body(body: bytes) -> tuple[str, str | None]:
        return read_error_body(body, secret_key)

    def check_ok(body: bytes, method: str, route: str) -> ApiError | None:
        return check_ok_body(body, method, route, secret_key)

    return dataclasses.replace(METAKOCKA_ERRORS, read_body=read_body, check_ok=check_ok)
