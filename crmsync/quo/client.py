"""Async client for the Quo API v1, one per tenant, sharing the process's HTTP session.

Every call goes through the shared `Transport` (`crmsync.net.transport`): it waits for
the API key's shared `SlidingWindowLimiter`, carries a timeout, retries 429s always and
5xx/transport errors where a repeat is safe, and pauses the whole key on a 429. This
module only knows Quo's routes and payloads, and reports each request to the metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Generic, Literal, TypeVar

import aiohttp
import msgspec
from prometheus_client import Counter, Histogram

from crmsync import metrics
from crmsync.net.errors import ErrorKinds
from crmsync.net.ratelimit import Lane, Limiters, SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import DEFAULT_MAX_PAUSE, Params, Transport
from crmsync.quo.errors import QUO_ERRORS, QuoDecodeError, QuoNotFoundError
from crmsync.quo.models import (
    Call,
    CallSummary,
    CallTranscript,
    Contact,
    ContactInput,
    ContactPage,
    Message,
    PhoneNumber,
    User,
    UserPage,
    Webhook,
    WebhookInput,
)

T = TypeVar("T")
#: a v1 listing page: `data` and `nextPageToken`
PageT = TypeVar("PageT", ContactPage, UserPage)
WebhookFamily = Literal["messages", "calls", "call-summaries", "call-transcripts"]

MAX_EXTERNAL_IDS_PER_LIST = 20  # Quo's query parser turns longer arrays into objects (400)
MAX_RESULTS_PER_PAGE = 50


class Data(msgspec.Struct, Generic[T]):
    """Quo wraps single resources and lists alike in `{"data": ...}`."""

    data: T


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class QuoMetrics:
    """The transport's observations as the `crmsync_quo_*` metrics of one tenant.

    The labelled children are looked up once per (method, route, status) and kept:
    `labels()` builds and checks its key and takes the metric's lock every time, which
    at thousands of requests a second was a measurable share of the loop's time.
    """

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant
        self._waits: dict[Lane, Counter] = {}
        self._answers: dict[tuple[str, str, int | None], tuple[Counter, Histogram]] = {}

    def waited(self, lane: Lane, seconds: float) -> None:
        counter = self._waits.get(lane)
        if counter is None:
            counter = self._waits[lane] = metrics.rate_limit_wait.labels(
                self._tenant, lane.name.lower())
        counter.inc(seconds)

    def answered(self, method: str, route: str, status: int | None, seconds: float) -> None:
        children = self._answers.get((method, route, status))
        if children is None:
            status_label = "error" if status is None else str(status)
            children = self._answers[(method, route, status)] = (
                metrics.quo_requests.labels(self._tenant, method, route, status_label),
                metrics.quo_request_duration.labels(self._tenant, route),
            )
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def rate_limited(self) -> None:
        metrics.rate_limited_responses.labels(self._tenant).inc()


def quo_transport(
    session: aiohttp.ClientSession,
    *,
    base_url: str,
    api_key: str,
    limiter: SlidingWindowLimiter,
    tenant: str,
    timeout: float,
    retry: RetryPolicy | None,
    max_pause: float,
    errors: ErrorKinds = QUO_ERRORS,
    headers: Mapping[str, str] | None = None,
) -> Transport:
    """The transport of one tenant's Quo key: every Quo client of that key (v1 REST and
    the 2026-03-30 webhook API) shares `limiter`, as Quo counts both against one limit."""
    return Transport(
        session,
        api="quo",
        base_url=base_url,
        headers={"Authorization": api_key, **(headers or {})},
        limiters=Limiters.shared(limiter),
        errors=errors,
        timeout=timeout,
        retry=retry,
        max_pause=max_pause,
        observer=QuoMetrics(tenant),
    )


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
        max_pause: float = DEFAULT_MAX_PAUSE,
    ) -> None:
        self._http = quo_transport(
            session, base_url=base_url, api_key=api_key, limiter=limiter, tenant=tenant,
            timeout=timeout, retry=retry, max_pause=max_pause,
        )

    def __repr__(self) -> str:
        return f"QuoClient({self._http!r})"

    async def _data(
        self,
        method: str,
        route: str,
        path: str,
        kind: type[T],
        *,
        lane: Lane,
        body: object = None,
        idempotent: bool | None = None,
    ) -> T:
        response: Data[T] = await self._http.call_as(
            Data[kind],  # type: ignore[valid-type]
            method, path, route=route, json=body, lane=lane, idempotent=idempotent,
        )
        return response.data

    async def _get_data(self, route: str, path: str, kind: type[T], lane: Lane) -> T:
        return await self._data("GET", route, path, kind, lane=lane)

    # -- contacts ---------------------------------------------------------------------

    async def create_contact(self, contact: ContactInput, *, lane: Lane = Lane.BACKFILL) -> Contact:
        # A repeat after an unanswered create is safe: Quo refuses a second contact with
        # the same externalId (409), which the caller resolves by looking it up.
        return await self._data(
            "POST", "/contacts", "/contacts", Contact, lane=lane, body=contact, idempotent=True
        )

    async def get_contact(self, contact_id: str, *, lane: Lane = Lane.BACKFILL) -> Contact:
        return await self._get_data("/contacts/{id}", f"/contacts/{contact_id}", Contact, lane)

    async def update_contact(
        self, contact_id: str, contact: ContactInput, *, lane: Lane = Lane.BACKFILL
    ) -> Contact:
        """PATCH replaces emails, phones and custom fields: `contact` must be complete."""
        # Always the whole payload: a repeated PATCH leaves the same contact.
        return await self._data(
            "PATCH", "/contacts/{id}", f"/contacts/{contact_id}", Contact,
            lane=lane, body=contact, idempotent=True,
        )

    async def delete_contact(self, contact_id: str, *, lane: Lane = Lane.BACKFILL) -> None:
        await self._http.request(
            "DELETE", f"/contacts/{contact_id}", route="/contacts/{id}", lane=lane
        )

    async def bulk_create_contacts(
        self, contacts: Sequence[ContactInput], *, lane: Lane = Lane.BACKFILL
    ) -> None:
        """Partner-only endpoint: 202 with an empty body; contacts appear seconds later.

        Not repeated after a 5xx: whether Quo de-duplicates externalIds within bulk is
        not documented. The writer has logged an intent per contact, so the next pass
        looks them up before creating any again.
        """
        await self._http.request(
            "POST", "/contacts/bulk", json={"contacts": list(contacts)}, lane=lane
        )

    async def _contact_pages(
        self, base_params: Params, lane: Lane
    ) -> AsyncIterator[list[Contact]]:
        async for page in self._pages(ContactPage, "/contacts", base_params, lane):
            yield page.data

    async def _pages(
        self, page_type: type[PageT], path: str, base_params: Params, lane: Lane
    ) -> AsyncIterator[PageT]:
        token: str | None = None
        seen: set[str] = set()
        while True:
            params = [*base_params, ("maxResults", str(MAX_RESULTS_PER_PAGE))]
            if token:
                params.append(("pageToken", token))
            page = await self._http.call_as(page_type, "GET", path, params=params, lane=lane)
            yield page
            # totalItems is documented as inaccurate: only a null token ends the listing.
            if not page.next_page_token:
                return
            token = page.next_page_token
            if token in seen:  # a token handed out twice would page forever
                raise QuoDecodeError(
                    "the listing repeated a page token", method="GET", route=path
                )
            seen.add(token)

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
        # Not repeated after a 5xx: a second webhook would be an orphan (`ensure()`
        # removes orphans, but their deliveries would arrive twice until then).
        route = f"/webhooks/{family}"
        return await self._data("POST", route, route, Webhook, lane=lane, body=webhook)

    async def list_webhooks(self, *, lane: Lane = Lane.LIVE) -> list[Webhook]:
        return await self._get_data("/webhooks", "/webhooks", list[Webhook], lane)

    async def delete_webhook(self, webhook_id: str, *, lane: Lane = Lane.LIVE) -> None:
        try:
            await self._http.request(
                "DELETE", f"/webhooks/{webhook_id}", route="/webhooks/{id}", lane=lane
            )
        except QuoNotFoundError:
            return  # already gone: the desired state

    # -- activity ---------------------------------------------------------------------

    async def list_users(self, *, lane: Lane = Lane.LIVE) -> list[User]:
        """The workspace's members (names for notes: who answered, who spoke)."""
        users: list[User] = []
        async for page in self._pages(UserPage, "/users", [], lane):
            users.extend(page.data)
        return users

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
