"""Async client for Quo's 2026-03-30 webhook API, one per tenant (research §1, §2).

    hooks = QuoWebhooksClient(session, base_url="https://api.quo.com", api_key=key,
                              limiter=limiter, tenant="acme")
    created = await hooks.create(VersionedWebhookInput(url=..., events=[...], status="disabled"))

The paths are unprefixed (`/webhooks`, `/webhooks/{id}/events`, …) on
`quo.webhooks_base_url`, and every request carries `Quo-Api-Version: 2026-03-30`
(Quo answers 400 without it). Quo's limit is per API key across v1 and 2026-03-30
("10 requests per second across both surfaces"), so the tenant's v1 client and this
one are built on the same `SlidingWindowLimiter`: the same `Transport` rules apply
(429 pauses the key, 5xx retried where a repeat is safe). Errors come in the 2026
envelope `{title, message, docs, trace?, errors?: [{path, message, …}], code?}` and
are raised as the usual `QuoError` kinds (`QuoNotFoundError`, `QuoAuthError`, …) with
`errors[].path` in the message. Routes are reported to the metrics with a
` (2026-03-30)` suffix, so `/webhooks` of v1 and of 2026-03-30 stay apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Final, TypeVar

import aiohttp
import msgspec

from crmsync.net.errors import body_excerpt
from crmsync.net.ratelimit import Lane, SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import DEFAULT_MAX_PAUSE, Params
from crmsync.quo.client import Data, quo_transport
from crmsync.quo.errors import (
    QUO_ERRORS,
    QuoDecodeError,
    QuoNotFoundError,
)
from crmsync.quo.models import (
    DeliveryPage,
    RotatedKey,
    SentTestEvent,
    VersionedWebhook,
    VersionedWebhookInput,
    VersionedWebhookPatch,
    WebhookDelivery,
    WebhookDeliveryDetail,
)

T = TypeVar("T")

API_VERSION: Final = "2026-03-30"
VERSION_HEADER: Final = "Quo-Api-Version"
DELIVERIES_PER_PAGE: Final = 50  # Quo's maximum `limit`
#: error entries quoted in an exception's message (the rest are counted)
MAX_QUOTED_ERRORS: Final = 3


class _FieldError(msgspec.Struct, kw_only=True):
    path: str | None = None
    message: str | None = None


class _Envelope(msgspec.Struct, kw_only=True):
    """Quo's 2026-03-30 error envelope (research §5.2): the structure is the contract."""

    title: str | None = None
    message: str | None = None
    code: str | None = None
    trace: str | None = None
    errors: list[_FieldError] = msgspec.field(default_factory=list)


def envelope_error_body(body: bytes) -> tuple[str, str | None]:
    """`(message, code)` of a 2026-03-30 error body: the message, then `path: why` of
    the first field errors (the trace id too, for Quo's support); an excerpt otherwise."""
    try:
        parsed = msgspec.json.decode(body, type=_Envelope) if body else _Envelope()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body_excerpt(body)
    text = parsed.message or parsed.title or "API error"
    fields = [f"{e.path or '?'}: {e.message or 'invalid'}" for e in parsed.errors]
    if fields:
        more = len(fields) - MAX_QUOTED_ERRORS
        text += " (" + "; ".join(fields[:MAX_QUOTED_ERRORS]) + (
            f"; {more} more" if more > 0 else "") + ")"
    if parsed.trace:
        text += f" [trace {parsed.trace}]"
    return text, parsed.code


#: Quo's error classes, with the 2026-03-30 envelope's reader
QUO_2026_ERRORS: Final = dataclasses.replace(QUO_ERRORS, read_body=envelope_error_body)


def _route(template: str) -> str:
    return f"{template} ({API_VERSION})"


class QuoWebhooksClient:
    """The 2026-03-30 webhook calls of one tenant's API key (see the module docstring)."""

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
            timeout=timeout, retry=retry, max_pause=max_pause, errors=QUO_2026_ERRORS,
            headers={VERSION_HEADER: API_VERSION},
        )

    def __repr__(self) -> str:
        return f"QuoWebhooksClient({self._http!r})"

    async def _data(
        self,
        kind: type[T],
        method: str,
        path: str,
        *,
        route: str,
        body: object = None,
        params: Params | None = None,
        idempotent: bool | None = None,
    ) -> T:
        response: Data[T] = await self._http.call_as(
            Data[kind],  # type: ignore[valid-type]
            method, path, route=_route(route), json=body, params=params, lane=Lane.LIVE,
            idempotent=idempotent,
        )
        return response.data

    # -- webhooks ------------------------------------------------------------------------

    async def create(self, webhook: VersionedWebhookInput) -> VersionedWebhook:
        """201 with the signing `key`, which no later call returns.

        Not repeated after a 5xx: a second webhook would be an orphan whose key nobody
        knows (the subscription check adopts such orphans by rotating their key).
        """
        return await self._data(VersionedWebhook, "POST", "/webhooks", route="/webhooks",
                                body=webhook, idempotent=False)

    async def list_all(self) -> list[VersionedWebhook]:
        """The workspace's webhooks of this system (not paginated; no legacy ones)."""
        return await self._data(list[VersionedWebhook], "GET", "/webhooks", route="/webhooks")

    async def get(self, webhook_id: str) -> VersionedWebhook:
        return await self._data(VersionedWebhook, "GET", f"/webhooks/{webhook_id}",
                                route="/webhooks/{id}")

    async def update(self, webhook_id: str, patch: VersionedWebhookPatch) -> VersionedWebhook:
        """PATCH: the fields set replace Quo's (`events` as a whole); the same PATCH
        twice leaves the same webhook, so it is repeated after a 5xx."""
        return await self._data(VersionedWebhook, "PATCH", f"/webhooks/{webhook_id}",
                                route="/webhooks/{id}", body=patch, idempotent=True)

    async def delete(self, webhook_id: str) -> None:
        """204; an unknown id is already the desired state."""
        try:
            await self._http.request("DELETE", f"/webhooks/{webhook_id}",
                                     route=_route("/webhooks/{id}"), lane=Lane.LIVE)
        except QuoNotFoundError:
            return

    async def rotate(self, webhook_id: str) -> str:
        """A new signing key (`whsec_…`); events, URL and version stay.

        Repeated after a 5xx: a rotation whose answer was lost is followed by another,
        and the key this returns is the current one either way.
        """
        rotated = await self._data(RotatedKey, "POST", f"/webhooks/{webhook_id}/rotate",
                                   route="/webhooks/{id}/rotate", idempotent=True)
        return rotated.key

    # -- test events and the delivery log --------------------------------------------------

    async def send_test_event(self, webhook_id: str, event_type: str) -> SentTestEvent:
        """Quo sends a signed sample of `event_type` to the webhook's URL, asynchronously
        (also to a disabled webhook); its delivery shows up in the log."""
        return await self._http.call_as(
            SentTestEvent, "POST", f"/webhooks/{webhook_id}/events/test",
            route=_route("/webhooks/{id}/events/test"), json={"eventType": event_type},
            lane=Lane.LIVE, idempotent=True,  # a second sample is as harmless as the first
        )

    async def delivery_page(
        self,
        webhook_id: str,
        *,
        status: str | None = None,
        created_after: str | None = None,
        event_type: str | None = None,
        cursor: str | None = None,
        page_size: int = DELIVERIES_PER_PAGE,
    ) -> DeliveryPage:
        """One page of the webhook's deliveries, newest first.

        `status`: success | pending | sending | failed; `created_after` (RFC 3339):
        dispatched strictly after it (`createdAt[gt]`); `cursor`: a page's `nextCursor`.
        """
        params: Params = [("limit", str(page_size))]
        if status is not None:
            params.append(("status", status))
        if created_after is not None:
            params.append(("createdAt[gt]", created_after))
        if event_type is not None:
            params.append(("eventType", event_type))
        if cursor is not None:
            params.append(("after", cursor))
        return await self._http.call_as(
            DeliveryPage, "GET", f"/webhooks/{webhook_id}/events",
            route=_route("/webhooks/{id}/events"), params=params, lane=Lane.LIVE,
        )

    async def deliveries(
        self,
        webhook_id: str,
        *,
        status: str | None = None,
        created_after: str | None = None,
        event_type: str | None = None,
    ) -> AsyncIterator[list[WebhookDelivery]]:
        """Every page of `delivery_page`'s listing, walked until `nextCursor` is null."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = await self.delivery_page(
                webhook_id, status=status, created_after=created_after,
                event_type=event_type, cursor=cursor,
            )
            yield page.data
            if not page.next_cursor or not page.data:
                return
            if page.next_cursor in seen:  # a cursor handed out twice would page forever
                raise QuoDecodeError("the listing repeated a cursor", method="GET",
                                     route=_route("/webhooks/{id}/events"))
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    async def get_delivery(self, webhook_id: str, delivery_id: str) -> WebhookDeliveryDetail:
        """One delivery with every attempt (newest first) and the exact body sent."""
        return await self._data(
            WebhookDeliveryDetail, "GET", f"/webhooks/{webhook_id}/events/{delivery_id}",
            route="/webhooks/{id}/events/{deliveryId}",
        )

    async def retry_delivery(self, webhook_id: str, delivery_id: str) -> None:
        """202: Quo queues one more attempt (`triggerType: manual`). Repeated after a 5xx:
        a second attempt of a delivery is de-duplicated by the listener (`webhook-id`)."""
        await self._http.request(
            "POST", f"/webhooks/{webhook_id}/events/{delivery_id}/retry",
            route=_route("/webhooks/{id}/events/{deliveryId}/retry"), lane=Lane.LIVE,
            idempotent=True,
        )
