"""Signed webhook delivery, with Attio's retry and idempotency behaviour scaled down.

Lifecycle: `submit()` queues a message (or starts a tracked background task when
auto-delivery is on) → each message is POSTed up to `max_attempts` times with
exponential backoff, keeping the same body and `Idempotency-Key` → `close()` stops
retry backoffs, gives in-flight requests a short grace, cancels the rest and closes the
single lazily created `ClientSession` (that HTTP side is the shared
`_kit.delivery.WebhookClient`).

Signature (Attio's documented scheme): `Attio-Signature` and `X-Attio-Signature` both
carry hex HMAC-SHA256 over the raw body, keyed with the webhook secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from crmsync.sim._kit.delivery import CLOSE_GRACE_SECONDS, WebhookClient, is_success


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one webhook; identical on every attempt and redelivery."""

    webhook_id: str
    target_url: str
    secret: str
    body: bytes
    idempotency_key: str
    event_type: str
    record_id: str | None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """What happened to one POST (status None: connection error or timeout)."""

    webhook_id: str
    idempotency_key: str
    event_type: str
    record_id: str | None
    attempt: int
    status: int | None
    error: str | None = None
    redelivery: bool = False

    @property
    def ok(self) -> bool:
        return is_success(self.status)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDeliverer:
    """Sends deliveries and records every attempt; owns its tasks and HTTP session."""

    def __init__(
        self,
        *,
        auto: bool,
        max_attempts: int,
        retry_delay: float,
        timeout: float,
        on_exhausted: Callable[[str], None] | None = None,
    ) -> None:
        self.auto = auto
        self.max_attempts = max(1, max_attempts)
        self.retry_delay = retry_delay
        self.mode: Literal["send", "drop"] = "send"
        self.drop_next = 0
        self.pending: list[Delivery] = []
        self.dropped: list[Delivery] = []
        self.sent: list[Delivery] = []
        self.attempts: list[DeliveryAttempt] = []
        self._on_exhausted = on_exhausted
        self._http = WebhookClient(timeout, grace=CLOSE_GRACE_SECONDS)

    @property
    def timeout(self) -> float:
        """Seconds one POST may take, connection included."""
        return self._http.timeout

    def submit(self, delivery: Delivery) -> None:
        """Queue or start one delivery; lost on purpose when dropping is switched on."""
        if self.mode == "drop" or self.drop_next > 0:
            self.drop_next = max(0, self.drop_next - 1)
            self.dropped.append(delivery)
        elif self.auto and not self._http.closing:
            self._start(delivery)
        else:
            self.pending.append(delivery)

    async def deliver_pending(self) -> None:
        """Send everything queued and wait until every delivery (with retries) is done."""
        pending, self.pending = self.pending, []
        for delivery in pending:
            self._start(delivery)
        await self._http.drain()

    async def redeliver_last(self) -> DeliveryAttempt | None:
        """POST the most recent sent message again, once (a duplicate delivery)."""
        if not self.sent:
            return None
        return await self._attempt(self.sent[-1], attempt=1, redelivery=True)

    def unacknowledged(self) -> list[Delivery]:
        """Messages sent whose attempts all failed (a retry may still be under way)."""
        acked = {a.idempotency_key for a in self.attempts if a.ok}
        return [d for d in self.sent if d.idempotency_key not in acked]

    async def redeliver_failed(self) -> list[DeliveryAttempt]:
        """POST every unacknowledged message once more, concurrently."""
        return list(await asyncio.gather(*(
            self._attempt(d, attempt=1, redelivery=True) for d in self.unacknowledged()
        )))

    async def close(self) -> None:
        await self._http.close()

    def _start(self, delivery: Delivery) -> None:
        self._http.spawn(
            self._deliver(delivery), name=f"attio-sim-webhook-{delivery.idempotency_key}"
        )

    async def _deliver(self, delivery: Delivery) -> None:
        self.sent.append(delivery)
        delay = self.retry_delay
        for attempt in range(1, self.max_attempts + 1):
            result = await self._attempt(delivery, attempt=attempt)
            if result.ok:
                return
            if attempt < self.max_attempts:
                await self._http.pause(delay)
                delay *= 2
            if self._http.closing:
                return
        if self._on_exhausted is not None:
            self._on_exhausted(delivery.webhook_id)

    async def _attempt(
        self, delivery: Delivery, *, attempt: int, redelivery: bool = False
    ) -> DeliveryAttempt:
        headers = {
            "Content-Type": "application/json",
            "Attio-Signature": sign(delivery.secret, delivery.body),
            "X-Attio-Signature": sign(delivery.secret, delivery.body),
            "Idempotency-Key": delivery.idempotency_key,
            "User-Agent": "Attio-Webhooks (crmsync simulator)",
        }
        outcome = await self._http.post(delivery.target_url, delivery.body, headers)
        result = DeliveryAttempt(
            delivery.webhook_id, delivery.idempotency_key, delivery.event_type,
            delivery.record_id, attempt, outcome.status, outcome.error, redelivery,
        )
        self.attempts.append(result)
        return result
