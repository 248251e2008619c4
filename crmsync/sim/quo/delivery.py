"""Signed delivery of v1 webhook events to the URLs registered through the API.

An event is serialised once; each matching webhook gets those exact bytes with an
`openphone-signature` header made with its own key. `SimEvent` keeps the bytes and
the headers sent, so a test can replay the identical delivery (a duplicate) or
re-sign it with a fresh timestamp. Negative tests can sign with a wrong key, a stale
timestamp, or send no signature at all.

The HTTP side (a session created on first use, the POST with its timeout, `close()` at
app cleanup) is the shared `_kit.delivery.WebhookClient`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from crmsync.quo.signature import HEADER, sign
from crmsync.sim._kit.delivery import WebhookClient, is_success
from crmsync.sim.quo.wire import JsonObject

DELIVERY_TIMEOUT_SECONDS = 10.0  # Quo's beta docs ask receivers to answer within ~10 s
HISTORY_SIZE = 1000


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One webhook an event goes to."""

    webhook_id: str
    url: str
    key: str


@dataclass(slots=True)
class SimEvent:
    """One serialised event and the signature header each target last received."""

    id: str
    type: str
    body: bytes
    targets: list[DeliveryTarget]
    headers: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Outcome of one POST: the receiver's status, or the transport error."""

    webhook_id: str
    url: str
    status: int | None
    error: str | None
    event: SimEvent

    @property
    def ok(self) -> bool:
        return is_success(self.status)


@dataclass(slots=True)
class DeliveryCounters:
    sent: int = 0
    succeeded: int = 0
    failed: int = 0


def matches(webhook: JsonObject, event_type: str, resource_id: str | None) -> bool:
    """Enabled, subscribed to the type, and covering the resource (or all of them)."""
    if webhook["status"] != "enabled" or event_type not in webhook["events"]:
        return False
    resources: list[str] = webhook["resourceIds"]
    return resource_id is None or not resources or "*" in resources or resource_id in resources


class Deliverer:
    """POSTs events to webhook URLs with its own lazily created session."""

    def __init__(self, timeout: float = DELIVERY_TIMEOUT_SECONDS) -> None:
        self._http = WebhookClient(timeout)
        self.counters = DeliveryCounters()
        self.history: deque[SimEvent] = deque(maxlen=HISTORY_SIZE)

    async def send(
        self,
        event: SimEvent,
        *,
        resign: bool = True,
        signing_key: str | None = None,
        timestamp_ms: int | None = None,
        omit_signature: bool = False,
    ) -> list[DeliveryResult]:
        """Deliver `event` to all its targets concurrently.

        With `resign=False` each target gets the header it got last time (an exact
        replay); otherwise a header is made now from the webhook's key, or from
        `signing_key` / `timestamp_ms` when a test wants a bad signature.
        """
        for target in event.targets:
            if omit_signature:
                event.headers[target.webhook_id] = None
            elif resign or target.webhook_id not in event.headers:
                key = signing_key if signing_key is not None else target.key
                event.headers[target.webhook_id] = sign(key, event.body, timestamp_ms)
        return list(await asyncio.gather(*(self._post(event, t) for t in event.targets)))

    async def _post(self, event: SimEvent, target: DeliveryTarget) -> DeliveryResult:
        headers = {"Content-Type": "application/json", "User-Agent": "crmsync-quo-sim"}
        signature = event.headers.get(target.webhook_id)
        if signature is not None:
            headers[HEADER] = signature
        self.counters.sent += 1
        outcome = await self._http.post(target.url, event.body, headers)
        if outcome.ok:
            self.counters.succeeded += 1
        else:
            self.counters.failed += 1
        return DeliveryResult(target.webhook_id, target.url, outcome.status, outcome.error, event)

    async def close(self) -> None:
        await self._http.close()
