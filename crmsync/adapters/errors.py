"""Typed CRM API errors: the transport's kinds (`crmsync.net.errors`), as a CRM's.

Every adapter raises these (through its `Transport`), so the pipeline can tell a CRM
failure from a Quo one: `CrmAuthError` parks the tenant with "check crm_api_key",
`CrmNotFoundError` is the only answer that may mean a record is gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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


class CrmApiError(ApiError):
    """A CRM call failed; the message names the call, never the credentials."""


class CrmAuthError(CrmApiError, AuthError):
    """401/403: the CRM key is wrong or lacks a scope."""


class CrmNotFoundError(CrmApiError, NotFoundError):
    """404."""


class CrmConflictError(CrmApiError, ConflictError):
    """409."""


class CrmRejectedError(CrmApiError, RejectedError):
    """Any other 4xx: the CRM refused the request as it is."""


class CrmRateLimitedError(CrmApiError, RateLimitedError):
    """429, after the transport's retries."""


class CrmServerError(CrmApiError, ServerError):
    """5xx."""


class CrmTransportError(CrmApiError, TransportError):
    """No answer: connection refused or reset, timeout, DNS."""


class CrmDecodeError(CrmApiError, DecodeError):
    """A 2xx the adapter cannot read (not JSON, or not the documented shape)."""


CRM_ERRORS = ErrorKinds(
    auth=CrmAuthError,
    not_found=CrmNotFoundError,
    conflict=CrmConflictError,
    rejected=CrmRejectedError,
    rate_limited=CrmRateLimitedError,
    server=CrmServerError,
    transport=CrmTransportError,
    decode=CrmDecodeError,
)


def read_json_error(
    body: bytes, message: str, code: Callable[[dict[str, Any]], str | None]
) -> tuple[str, str | None]:
    """(message, code) of an error body that is a JSON object with its text at `message`
    (`code` reads the code from the object); any other body: an excerpt, without a code."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, RecursionError):
        parsed = None
    found = parsed if isinstance(parsed, dict) else {}
    text = found.get(message)
    if not isinstance(text, str) or not text.strip():
        return body_excerpt(body)
    return text.strip()[:200], code(found)
