"""HTTP plumbing shared by CRM adapters: auth headers, limits, timeouts and retries.

CRMs rate-limit reads and writes separately (Attio: 100 reads/s and 25 writes/s), so
each adapter gets two sliding-window limiters. 429 and 5xx are retried with jittered
backoff, honouring `Retry-After` (seconds or an HTTP date); other 4xx are raised.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec

from crmsync.quo.ratelimit import SlidingWindowLimiter
from crmsync.quo.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)


class CrmApiError(Exception):
    """A CRM call failed; the message names the call, never the credentials."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CrmAuthError(CrmApiError):
    """401/403: the CRM key is wrong or lacks a scope."""


class CrmNotFoundError(CrmApiError):
    """404."""


class CrmHttp:
    """One CRM account's HTTP access: `await http.call("POST", "/path", json=...)`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        headers: dict[str, str],
        read_limiter: SlidingWindowLimiter,
        write_limiter: SlidingWindowLimiter,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._headers = headers
        self._read_limiter = read_limiter
        self._write_limiter = write_limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: list[tuple[str, str]] | None = None,
        is_read: bool | None = None,
    ) -> Any:
        """Send and decode the JSON response (None for an empty body)."""
        read = method == "GET" if is_read is None else is_read
        # A write that failed with a 5xx or a dropped connection may have happened:
        # repeating it could duplicate it (a note twice). Only reads are retried then;
        # a 429 is always retried (the CRM processed nothing).
        retry_unsure = read or method in ("PUT", "DELETE")
        limiter = self._read_limiter if read else self._write_limiter
        body = None if json is None else msgspec.json.encode(json)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self._retry.max_retries + 1):
            slot = await limiter.acquire()
            delay: float | None = None
            try:
                async with self._session.request(
                    method, self._base_url + path, data=body, params=params,
                    headers=headers, timeout=self._timeout, trace_request_ctx=slot,
                ) as response:
                    payload = await response.read()
                    status = response.status
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                slot.done()
                problem = f"{type(exc).__name__}: {exc}"
                if not retry_unsure:
                    raise CrmApiError(f"{method} {path}: {problem}") from exc
            else:
                slot.done()
                if status < 300:
                    return msgspec.json.decode(payload) if payload else None
                problem = f"HTTP {status}: {payload[:200].decode(errors='replace')}"
                if status in (401, 403):
                    raise CrmAuthError(f"{method} {path}: {problem}", status=status)
                if status == 404:
                    raise CrmNotFoundError(f"{method} {path}: {problem}", status=status)
                if status != 429 and status < 500:
                    raise CrmApiError(f"{method} {path}: {problem}", status=status)
                if status != 429 and not retry_unsure:
                    raise CrmApiError(f"{method} {path}: {problem}", status=status)
                if status == 429:
                    # The whole account is limited: hold every caller, then retry at once.
                    limiter.pause(
                        retry_after if retry_after is not None else self._retry.backoff(attempt)
                    )
                    delay = 0.0
            if attempt == self._retry.max_retries:
                break
            wait = self._retry.backoff(attempt) if delay is None else delay
            log.warning("crm %s %s failed (%s), retrying in %.2fs", method, path, problem, wait)
            if wait:
                await asyncio.sleep(wait)
        raise CrmApiError(f"{method} {path}: gave up after retries: {problem}")
