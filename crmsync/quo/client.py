"""Async client for the Quo API v1, one per tenant, sharing the process's HTTP session.

Every request waits for the API key's shared `SlidingWindowLimiter`, carries a timeout,
and is retried on 429, 5xx and transport errors (never on other 4xx). A 429 pauses
the whole key, not just this caller, since every caller of the key would get one too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Literal, TypeVar

import aiohttp
import msgspec

from crmsync import metrics
from crmsync.quo.errors import (
    QuoError,
    QuoNotFoundError,
    QuoRateLimitedError,
    QuoTransportError,
    error_for_status,
)
from crmsync.quo.models import (
    Call,
    CallSummary,
    CallTranscript,
    Contact,
    ContactInput,
    ContactPage,
    Message,
    PhoneNumber,
    Webhook,
    WebhookInput,
)
from crmsync.quo.ratelimit import Lane, SlidingWindowLimiter, Slot
from crmsync.quo.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = list[tuple[str, str]]
WebhookFamily = Literal["messages", "calls", "call-summaries", "call-transcripts"]

MAX_EXTERNAL_IDS_PER_LIST = 20  # Quo's query parser turns longer arrays into objects (400)
MAX_RESULTS_PER_PAGE = 50


class _Data(msgspec.Struct, rename="camel"):
    data: msgspec.Raw


def _decode_data(payload: bytes, kind: type[T]) -> T:
    """Quo wraps single resources and lists alike in `{"data": ...}`."""
    return msgspec.json.decode(msgspec.json.decode(payload, type=_Data).data, type=kind)


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class QuoClient:
    """Typed Quo API calls for one tenant and one API key."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        limiter: SlidingWindowLimiter,
        tenant: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._limiter = limiter
        self._tenant = tenant
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()

    async def _send_once(
        self,
        method: str,
        route: str,
        path: str,
        params: Params | None,
        body: bytes | None,
        slot: Slot,
    ) -> tuple[int, bytes, str | None]:
        headers = {"Authorization": self._api_key}
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            async with self._session.request(
                method,
                self._base_url + path,
                params=params,
                data=body,
                headers=headers,
                timeout=self._timeout,
                trace_request_ctx=slot,
            ) as response:
                payload = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.quo_requests.labels(self._tenant, method, route, "error").inc()
            # str(exc) of aiohttp errors names the URL, never our headers.
            raise QuoTransportError(
                f"{type(exc).__name__}: {exc}", method=method, route=route
            ) from exc
        finally:
            slot.done()
            metrics.quo_request_duration.labels(self._tenant, route).observe(
                time.perf_counter() - started
            )
        metrics.quo_requests.labels(self._tenant, method, route, str(status)).inc()
        return status, payload, retry_after

    async def request(
        self,
        method: str,
        route: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        lane: Lane = Lane.BACKFILL,
    ) -> tuple[int, bytes]:
        """Send with limiter, timeout and retries; return (status, body) of a 2xx."""
        attempt = 0
        while True:
            slot = await self._limiter.acquire(lane)
            if slot.waited:
                metrics.rate_limit_wait.labels(self._tenant, lane.name.lower()).inc(slot.waited)
            try:
                status, payload, retry_after = await self._send_once(
                    method, route, path, params, body, slot
                )
                if status < 300:
                    return status, payload
                raise error_for_status(
                    status,
                    payload,
                    method=method,
                    route=route,
                    retry_after=parse_retry_after(retry_after),
                )
            except QuoError as exc:
                if not exc.retryable or attempt >= self._retry.max_retries:
                    raise
                delay = self._retry.backoff(attempt)
                if isinstance(exc, QuoRateLimitedError):
                    metrics.rate_limited_responses.labels(self._tenant).inc()
                    if exc.retry_after is not None:
                        delay = exc.retry_after
                    # Everyone on this key would get a 429 now: hold them all.
                    self._limiter.pause(delay)
                    delay = 0.0  # the limiter itself makes us wait
                log.warning(
                    "quo %s %s failed (%s), retry %d/%d in %.2fs",
                    method, route, exc, attempt + 1, self._retry.max_retries, delay,
                    extra={"tenant": self._tenant},
                )
                attempt += 1
                if delay:
                    await asyncio.sleep(delay)

    async def _get_data(self, route: str, path: str, kind: type[T], lane: Lane) -> T:
        _, payload = await self.request("GET", route, path, lane=lane)
        return _decode_data(payload, kind)

    # -- contacts ---------------------------------------------------------------------

    async def create_contact(self, contact: ContactInput, *, lane: Lane = Lane.BACKFILL) -> Contact:
        _, payload = await self.request(
            "POST", "/contacts", "/contacts", body=msgspec.json.encode(contact), lane=lane
        )
        return _decode_data(payload, Contact)

    async def get_contact(self, contact_id: str, *, lane: Lane = Lane.BACKFILL) -> Contact:
        return await self._get_data("/contacts/{id}", f"/contacts/{contact_id}", Contact, lane)

    async def update_contact(
        self, contact_id: str, contact: ContactInput, *, lane: Lane = Lane.BACKFILL
    ) -> Contact:
        """PATCH replaces emails, phones and custom fields: `contact` must be complete."""
        _, payload = await self.request(
            "PATCH",
            "/contacts/{id}",
            f"/contacts/{contact_id}",
            body=msgspec.json.encode(contact),
            lane=lane,
        )
        return _decode_data(payload, Contact)

    async def delete_contact(self, contact_id: str, *, lane: Lane = Lane.BACKFILL) -> None:
        await self.request("DELETE", "/contacts/{id}", f"/contacts/{contact_id}", lane=lane)

    async def bulk_create_contacts(
        self, contacts: Sequence[ContactInput], *, lane: Lane = Lane.BACKFILL
    ) -> None:
        """Partner-only endpoint: 202 with an empty body; contacts appear seconds later."""
        body = msgspec.json.encode({"contacts": list(contacts)})
        await self.request("POST", "/contacts/bulk", "/contacts/bulk", body=body, lane=lane)

    async def _contact_pages(
        self, base_params: Params, lane: Lane
    ) -> AsyncIterator[list[Contact]]:
        token: str | None = None
        while True:
            params = [*base_params, ("maxResults", str(MAX_RESULTS_PER_PAGE))]
            if token:
                params.append(("pageToken", token))
            _, payload = await self.request(
                "GET", "/contacts", "/contacts", params=params, lane=lane
            )
            page = msgspec.json.decode(payload, type=ContactPage)
            yield page.data
            # totalItems is documented as inaccurate: only a null token ends the listing.
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def list_contacts_by_external_ids(
        self, external_ids: Sequence[str], *, lane: Lane = Lane.BACKFILL
    ) -> list[Contact]:
        """Contacts whose externalId is in `external_ids` (repeated keys, ≤20 per call)."""
        found: list[Contact] = []
        for chunk in chunked(list(dict.fromkeys(external_ids)), MAX_EXTERNAL_IDS_PER_LIST):
            params = [("externalIds", external_id) for external_id in chunk]
            async for page in self._contact_pages(params, lane):
                found.extend(page)
        return found

    async def find_contact_by_external_id(
        self, external_id: str, *, lane: Lane = Lane.BACKFILL
    ) -> Contact | None:
        matches = await self.list_contacts_by_external_ids([external_id], lane=lane)
        exact = [c for c in matches if c.external_id == external_id]
        return exact[0] if exact else None

    async def iter_contacts(self, *, lane: Lane = Lane.BACKFILL) -> AsyncIterator[list[Contact]]:
        async for page in self._contact_pages([], lane):
            yield page

    # -- webhooks ---------------------------------------------------------------------

    async def create_webhook(
        self, family: WebhookFamily, webhook: WebhookInput, *, lane: Lane = Lane.LIVE
    ) -> Webhook:
        route = f"/webhooks/{family}"
        _, payload = await self.request(
            "POST", route, route, body=msgspec.json.encode(webhook), lane=lane
        )
        return _decode_data(payload, Webhook)

    async def list_webhooks(self, *, lane: Lane = Lane.LIVE) -> list[Webhook]:
        return await self._get_data("/webhooks", "/webhooks", list[Webhook], lane)

    async def delete_webhook(self, webhook_id: str, *, lane: Lane = Lane.LIVE) -> None:
        try:
            await self.request("DELETE", "/webhooks/{id}", f"/webhooks/{webhook_id}", lane=lane)
        except QuoNotFoundError:
            return  # already gone: the desired state

    # -- activity ---------------------------------------------------------------------

    async def list_phone_numbers(self, *, lane: Lane = Lane.LIVE) -> list[PhoneNumber]:
        return await self._get_data("/phone-numbers", "/phone-numbers", list[PhoneNumber], lane)

    async def get_call(self, call_id: str, *, lane: Lane = Lane.LIVE) -> Call:
        return await self._get_data("/calls/{id}", f"/calls/{call_id}", Call, lane)

    async def get_message(self, message_id: str, *, lane: Lane = Lane.LIVE) -> Message:
        return await self._get_data("/messages/{id}", f"/messages/{message_id}", Message, lane)

    async def get_call_summary(self, call_id: str, *, lane: Lane = Lane.LIVE) -> CallSummary:
        return await self._get_data(
            "/call-summaries/{id}", f"/call-summaries/{call_id}", CallSummary, lane
        )

    async def get_call_transcript(
        self, call_id: str, *, lane: Lane = Lane.LIVE
    ) -> CallTranscript:
        return await self._get_data(
            "/call-transcripts/{id}", f"/call-transcripts/{call_id}", CallTranscript, lane
        )
