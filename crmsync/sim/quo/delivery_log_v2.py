"""The records of the 2026-03-30 delivery log: deliveries, attempts, and their ids.

A `Delivery` is one event sent to one webhook (`msg_…`, the `webhook-id` header of
every attempt); its `Attempt`s are kept oldest first and shown newest first.
`wire()` / `detail()` are the shapes of `GET /webhooks/{id}/events[/{deliveryId}]`.
`HookIds` draws every id of the new system from its own seeded generator, so the
legacy part's ids do not move when new-system traffic is added to a test.
"""

from __future__ import annotations

import asyncio
import base64
import random
import string
from dataclasses import dataclass, field
from datetime import datetime

from crmsync.sim.quo.wire_v2 import JsonObject

ALPHABET = string.ascii_letters + string.digits


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignOverride:
    """Sign a delivery's first attempt wrongly (negative tests); retries sign properly.

    `key`: another `whsec_` key; `timestamp`: Unix seconds to claim (a stale one);
    `omit`: send no `webhook-signature` at all.
    """

    key: str | None = None
    timestamp: int | None = None
    omit: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    timestamp: datetime
    status: str
    response_status_code: int
    response_body: str
    response_duration_ms: int
    trigger_type: str
    url: str
    headers: dict[str, str]

    def wire(self) -> JsonObject:
        return {
            "id": self.id, "timestamp": iso(self.timestamp), "status": self.status,
            "responseStatusCode": self.response_status_code,
            "responseBody": self.response_body,
            "responseDurationMs": self.response_duration_ms,
            "triggerType": self.trigger_type, "url": self.url,
        }


@dataclass(slots=True, eq=False)
class Delivery:
    """One event sent to one webhook, with every attempt made (oldest first)."""

    id: str
    seq: int
    webhook_id: str
    event_id: str | None
    resource_id: str | None
    event_type: str
    created_at: datetime
    body: bytes
    status: str = "pending"
    next_attempt_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    override: SignOverride | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def wire(self) -> JsonObject:
        """The item of `GET /webhooks/{id}/events`."""
        return {
            "id": self.id, "eventId": self.event_id, "resourceId": self.resource_id,
            "eventType": self.event_type, "status": self.status,
            "nextAttemptAt": None if self.next_attempt_at is None else iso(self.next_attempt_at),
            "createdAt": iso(self.created_at),
        }

    def detail(self) -> JsonObject:
        """`GET /webhooks/{id}/events/{deliveryId}`: attempts newest first."""
        return {
            "id": self.id, "eventId": self.event_id, "resourceId": self.resource_id,
            "eventType": self.event_type, "createdAt": iso(self.created_at),
            "requestBody": self.body.decode(),
            "attempts": [a.wire() for a in reversed(self.attempts)],
        }

    async def wait_settled(self, within: float = 5.0) -> None:
        """Until `success` or `failed` (TimeoutError after `within` seconds)."""
        async with asyncio.timeout(within):
            await self.settled.wait()


@dataclass(slots=True)
class DeliveryCounters:
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    manual: int = 0


class HookIds:
    """Seeded ids of the new system, from their own generator (legacy ids stay put)."""

    def __init__(self, rng: random.Random, first_webhook: int = 101) -> None:
        self._rng = rng
        self._next_webhook = first_webhook

    def random(self, prefix: str, length: int = 27) -> str:
        return prefix + "".join(self._rng.choices(ALPHABET, k=length))

    def event(self) -> str:
        return f"EV{self._rng.getrandbits(128):032x}"

    def webhook(self) -> str:
        """A stringified integer, never reused."""
        self._next_webhook += 1
        return str(self._next_webhook - 1)

    def key(self) -> str:
        """A Standard Webhooks signing key: `whsec_` and 24 random bytes in base64."""
        return "whsec_" + base64.b64encode(self._rng.randbytes(24)).decode()
