"""How a CRM adapter reaches its API: the options it is built with, and its transports.

Every adapter is built as `Adapter(session, api_key=..., **options)` (`HttpOptions`:
`build_adapter` passes them all, a test only what it cares about) and reaches its API
through one `Transport` per budget of the token, built by `crm_transport`: the CRM's
own base URL unless the tenant sets one, the token's limiters from the process's
registry (without one, in tests, the adapter's limits are its own), the CRM's error
kinds, and the tenant's timeout, retries and longest pause.
"""

from __future__ import annotations

from typing import TypedDict

import aiohttp

from crmsync.adapters.errors import CRM_ERRORS
from crmsync.net.errors import ErrorKinds
from crmsync.net.ratelimit import LimiterRegistry, Limits
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import DEFAULT_MAX_PAUSE, Transport


class HttpOptions(TypedDict, total=False):
    """What an adapter's constructor takes besides the session and the key."""

    base_url: str | None  # None: the CRM's own
    timeout: float
    limiters: LimiterRegistry | None  # None: limits of the adapter's own (tests)
    retry: RetryPolicy | None
    max_pause: float


def crm_transport(
    session: aiohttp.ClientSession,
    *,
    api: str,
    api_key: str,
    limits: Limits,
    headers: dict[str, str],
    default_base_url: str,
    errors: ErrorKinds = CRM_ERRORS,
    base_url: str | None = None,
    timeout: float = 30.0,
    limiters: LimiterRegistry | None = None,
    retry: RetryPolicy | None = None,
    max_pause: float = DEFAULT_MAX_PAUSE,
) -> Transport:
    """The transport of `api_key`'s budget `limits` at `api` (the limiter label)."""
    registry = limiters or LimiterRegistry()
    return Transport(
        session, api=api, base_url=base_url or default_base_url, headers=headers,
        limiters=registry.for_account(api, api_key, limits), errors=errors,
        timeout=timeout, retry=retry, max_pause=max_pause,
    )
