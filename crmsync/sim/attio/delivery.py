"""Signed webhook delivery, with Attio's retry and idempotency behaviour scaled down.

Lifecycle (the shared `_kit.delivery.QueuedDeliverer`): `submit()` queues a message (or
starts a tracked background task when auto-delivery is on) → each message is POSTed up
to `max_attempts` times with exponential backoff, keeping the same body and
`Idempotency-Key` → `close()` stops retry backoffs, gives in-flight requests a short
grace, cancels the rest and closes the single lazily created `ClientSession`.

Signature (Attio's documented scheme): `Attio-Signature` and `X-Attio-Signature` both
carry hex HMAC-SHA256 over the raw body, keyed with the webhook secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from crmsync.sim._kit.delivery import QueuedDeliverer, is_success


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


class WebhookDeliverer(QueuedDeliverer[Delivery, DeliveryAttempt]):
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
        super().__init__(auto=auto, timeout=timeout)
        self.max_attempts = max(1, max_attempts)
        self.retry_delay = retry_delay
        self._on_exhausted = on_exhausted

    @property
    def timeout(self) -> float:
        """Seconds one POST may take, connection included."""
        return self._http.timeout

    async def deliver_pending(self) -> None:
        """Send everything queued and wait until every delivery (with retries) is done."""
        await self.send_pending()

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

    def _task_name(self, delivery: Delivery) -> str:
        return f"attio-sim-webhook-{delivery.idempotency_key}"

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
