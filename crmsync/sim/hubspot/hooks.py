"""The private app's webhooks: events batched into JSON arrays, v3-signed, retried.

Lifecycle of an event: `emit()` stamps it (eventId, subscriptionId, portal, app) and,
when the app has a target URL, queues it → after `batch_seconds` (or at once when
`max_batch` are waiting) the queue is cut into batches, each POSTed as one JSON array
→ a batch that fails (connection error, timeout, 5xx, 429, any status but
400/401/403/404/405) is sent again after each delay of `retry_schedule`, with the same
eventIds and `attemptNumber` one higher (so re-signed with a fresh timestamp) →
`close()` stops retries, gives in-flight POSTs a grace period and closes the session
(the HTTP side is the shared `_kit.delivery.WebhookClient`). `drain()` sends what is
queued and waits until every batch is acknowledged or out of attempts.

Signature v3: base64(HMAC-SHA256(app secret, method + target URL + body + timestamp)).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from dataclasses import dataclass

import msgspec

from crmsync.sim._kit.delivery import DeliveryFaults, WebhookClient, is_success
from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.model import JSONObject, now_ms

NOT_RETRIED = frozenset({400, 401, 403, 404, 405})
FIRST_EVENT_ID = 1000
#: subscription ids of the app's subscriptions (propertyChange: one per property)
SUBSCRIPTIONS = {"contact.creation": 1201, "contact.deletion": 1202, "contact.merge": 1203,
                 "contact.restore": 1204, "contact.privacyDeletion": 1205}
PROPERTY_SUBSCRIPTION_BASE = 1300
USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/) - crmsync simulator"


def sign_v3(secret: str, method: str, uri: str, body: bytes | str, timestamp_ms: int) -> str:
    """`X-HubSpot-Signature-v3` of a request (`uri`: the full URL as delivered)."""
    raw = body.encode() if isinstance(body, str) else body
    message = method.encode() + uri.encode() + raw + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True, slots=True)
class HookBatch:
    """One array of events for one target; identical (but for attemptNumber) on retries."""

    number: int
    url: str
    events: tuple[JSONObject, ...]

    @property
    def event_ids(self) -> tuple[int, ...]:
        return tuple(e["eventId"] for e in self.events)


@dataclass(frozen=True, slots=True)
class HookAttempt:
    """What happened to one POST of a batch (status None: connection error or timeout)."""

    batch: int
    url: str
    event_ids: tuple[int, ...]
    attempt_number: int  # 0 for the first attempt, as in the events' attemptNumber
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return is_success(self.status)


class HookDeliverer(DeliveryFaults):
    """Batches, signs and sends the app's events; keeps every event, batch and attempt.

    Its webhook faults (`mode`, `drop_next`) lose whole batches.
    """

    def __init__(self, config: HubSpotSimConfig) -> None:
        super().__init__()
        self.portal_id, self.app_id = config.portal_id, config.app_id
        self.secret = config.app_secret
        self.target_url = config.webhook_target_url
        self.subscribed = tuple(config.subscribed_properties)
        self.batch_seconds = config.webhook_batch_seconds
        self.max_batch = config.webhook_max_batch
        self.retry_schedule = tuple(config.webhook_retry_schedule)
        self.timestamp_skew_ms = 0  # added to X-HubSpot-Request-Timestamp (stale clocks)
        self.events: list[JSONObject] = []  # every event, delivered or not
        self.pending: list[JSONObject] = []
        self.batches: list[HookBatch] = []
        self.dropped: list[HookBatch] = []
        self.attempts: list[HookAttempt] = []
        self._next_event_id = FIRST_EVENT_ID
        self._http = WebhookClient(config.webhook_timeout_seconds)
        self._concurrency = asyncio.Semaphore(config.webhook_max_concurrent)
        self._timer: asyncio.TimerHandle | None = None

    def subscription_id(self, subscription_type: str, property_name: str | None) -> int | None:
        """The app's subscription for this event, or None when it has none."""
        if subscription_type == "contact.propertyChange":
            if property_name not in self.subscribed:
                return None
            return PROPERTY_SUBSCRIPTION_BASE + self.subscribed.index(property_name)
        return SUBSCRIPTIONS.get(subscription_type)

    def emit(self, subscription_type: str, object_id: int, occurred_ms: int,
             **fields: object) -> JSONObject | None:
        """Stamp and queue one event; None when the app is not subscribed to it."""
        name = fields.get("propertyName")
        subscription = self.subscription_id(subscription_type,
                                             name if isinstance(name, str) else None)
        if subscription is None:
            return None
        event: JSONObject = {
            "eventId": self._next_event_id, "subscriptionId": subscription,
            "portalId": self.portal_id, "appId": self.app_id, "occurredAt": occurred_ms,
            "subscriptionType": subscription_type, "attemptNumber": 0,
            "objectId": object_id, **fields,
        }
        self._next_event_id += 1
        self.events.append(event)
        if self.target_url is not None:  # no target URL: HubSpot sends nothing
            self.pending.append(event)
            self._schedule()
        return event

    def flush(self) -> None:
        """Cut the queue into batches and start sending them now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        url = self.target_url
        if self._http.closing:  # the app is shutting down: nothing new goes out
            return
        while self.pending and url is not None:
            chunk, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
            batch = HookBatch(len(self.batches) + len(self.dropped) + 1, url, tuple(chunk))
            if self.take_drop():
                self.dropped.append(batch)
                continue
            self.batches.append(batch)
            self._http.spawn(self._deliver(batch), name=f"hubspot-sim-hook-{batch.number}")

    async def drain(self) -> None:
        """Send everything queued; wait until every batch is acknowledged or given up."""
        self.flush()
        await self._http.drain()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._http.close()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): `drain()` sends them
            return
        if len(self.pending) >= self.max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.batch_seconds, self.flush)

    async def _deliver(self, batch: HookBatch) -> None:
        for attempt in range(len(self.retry_schedule) + 1):
            if attempt:
                await self._http.pause(self.retry_schedule[attempt - 1])
                if self._http.closing:
                    return
            async with self._concurrency:
                result = await self._post(batch, attempt)
            if result.ok or result.status in NOT_RETRIED:
                return

    async def _post(self, batch: HookBatch, attempt: int) -> HookAttempt:
        body = msgspec.json.encode([{**e, "attemptNumber": attempt} for e in batch.events])
        timestamp = now_ms() + self.timestamp_skew_ms
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-HubSpot-Signature-v3": sign_v3(self.secret, "POST", batch.url, body, timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Signature-Version": "v3",
        }
        outcome = await self._http.post(batch.url, body, headers)
        result = HookAttempt(batch.number, batch.url, batch.event_ids, attempt,
                             outcome.status, outcome.error)
        self.attempts.append(result)
        return result
