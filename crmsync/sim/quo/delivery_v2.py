"""Delivery of 2026-03-30 events: Standard Webhooks signatures, the delivery log, retries.

One `Delivery` per (event, webhook), its id (`msg_…`) sent as `webhook-id` on every
attempt. Each attempt is signed afresh with the webhook's current `whsec_` key by the
`standardwebhooks` package and goes to the webhook's current URL. A non-2xx answer (or
none: `responseStatusCode` 0) schedules the next attempt on
`QuoSimConfig.webhook_retry_schedule`; after the last one the delivery is `failed`.
Statuses, as Quo reports them: `pending` (not attempted yet), `sending` (failed, more
attempts scheduled), `success` (an attempt succeeded), `failed` (retries exhausted).
A manual retry (`triggerType` "manual") is one more attempt now.

Retries are background tasks of the shared `_kit.delivery.WebhookClient`; a deleted
webhook's deliveries stop. A scheduled retry goes out even if the webhook was disabled
meanwhile (Quo does not say; the event happened while it was enabled).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from standardwebhooks.webhooks import Webhook

from crmsync.sim._kit.delivery import WebhookClient
from crmsync.sim.quo.delivery_log_v2 import (
    Attempt,
    Delivery,
    DeliveryCounters,
    HookIds,
    SignOverride,
)
from crmsync.sim.quo.wire_v2 import JsonObject

DELIVERY_TIMEOUT_SECONDS = 10.0
RESPONSE_BODY_LIMIT = 2048
__all__ = ["Attempt", "Delivery", "HookDeliverer", "HookIds", "SignOverride"]


class HookDeliverer:
    """The delivery log of every new-system webhook and the attempts behind it."""

    def __init__(
        self,
        webhooks: dict[str, JsonObject],
        ids: HookIds,
        schedule: Sequence[float],
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self.webhooks = webhooks
        self.ids = ids
        self.schedule = tuple(schedule)
        self.http = WebhookClient(timeout)
        self.log: dict[str, dict[str, Delivery]] = {}
        self.counters = DeliveryCounters()
        self._seq = 0

    def create(
        self,
        webhook_id: str,
        event_type: str,
        body: bytes,
        *,
        event_id: str | None,
        resource_id: str | None,
        override: SignOverride | None = None,
    ) -> Delivery:
        """Log a new `pending` delivery (nothing is sent yet)."""
        self._seq += 1
        now = datetime.now(UTC)  # kept to the millisecond, as shown: `createdAt[gt]` is exact
        delivery = Delivery(
            self.ids.random("msg_"), self._seq, webhook_id, event_id, resource_id, event_type,
            now.replace(microsecond=now.microsecond // 1000 * 1000), body, override=override,
        )
        self.log.setdefault(webhook_id, {})[delivery.id] = delivery
        return delivery

    def forget(self, webhook_id: str) -> None:
        """A deleted webhook's log goes with it (its retries stop)."""
        for delivery in self.log.pop(webhook_id, {}).values():
            delivery.next_attempt_at = None
            delivery.settled.set()

    async def deliver(self, delivery: Delivery) -> None:
        """The first attempt, awaited when the schedule starts at 0; retries go on after."""
        if self.schedule[0] > 0:
            self._schedule(delivery, 0)
        elif not await self._scheduled_attempt(delivery):
            self._after_failure(delivery, 0)

    def start(self, delivery: Delivery) -> None:
        """Run `delivery`'s schedule entirely in the background."""
        self.http.spawn(self.deliver(delivery), name=f"quo-sim-delivery-{delivery.id}")

    def _schedule(self, delivery: Delivery, index: int) -> None:
        delay = self.schedule[index]
        delivery.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
        self.http.spawn(self._later(delivery, index), name=f"quo-sim-retry-{delivery.id}")

    async def _later(self, delivery: Delivery, index: int) -> None:
        await self.http.pause(self.schedule[index])
        if not await self._scheduled_attempt(delivery):
            self._after_failure(delivery, index)

    async def _scheduled_attempt(self, delivery: Delivery) -> bool:
        """True when there is nothing more to schedule (success, or the log is gone)."""
        if self.http.closing or delivery.ok or not self._alive(delivery):
            return True
        return await self.attempt(delivery, "scheduled")

    def _after_failure(self, delivery: Delivery, index: int) -> None:
        if delivery.ok:  # a manual retry succeeded meanwhile
            return
        if index + 1 < len(self.schedule):
            delivery.status = "sending"
            self._schedule(delivery, index + 1)
            return
        delivery.status = "failed"
        delivery.next_attempt_at = None
        delivery.settled.set()

    def retry(self, delivery: Delivery) -> None:
        """A manual retry: one attempt now, in the background; the schedule is untouched."""
        self.counters.manual += 1
        self.http.spawn(self._manual(delivery), name=f"quo-sim-manual-{delivery.id}")

    async def _manual(self, delivery: Delivery) -> None:
        if self._alive(delivery):
            await self.attempt(delivery, "manual")

    def _alive(self, delivery: Delivery) -> bool:
        return delivery.id in self.log.get(delivery.webhook_id, {})

    def headers(self, delivery: Delivery, key: str, *, first: bool) -> dict[str, str]:
        """Standard Webhooks headers for one attempt (`override` only on the first)."""
        override = delivery.override if first else None
        now = int(time.time()) if override is None or override.timestamp is None else (
            override.timestamp
        )
        headers = {
            "Content-Type": "application/json", "User-Agent": "crmsync-quo-sim",
            "webhook-id": delivery.id, "webhook-timestamp": str(now),
        }
        if override is None or not override.omit:
            signer = Webhook(override.key if override and override.key else key)
            headers["webhook-signature"] = signer.sign(
                delivery.id, datetime.fromtimestamp(now, UTC), delivery.body
            )
        return headers

    async def attempt(self, delivery: Delivery, trigger: str) -> bool:
        """POST once to the webhook's current URL and log the attempt; True on 2xx."""
        webhook = self.webhooks[delivery.webhook_id]
        headers = self.headers(delivery, webhook["key"], first=not delivery.attempts)
        started = time.monotonic()
        outcome = await self.http.post(webhook["url"], delivery.body, headers)
        elapsed = int((time.monotonic() - started) * 1000)
        self.counters.attempts += 1
        status = "success" if outcome.ok else "failed"
        delivery.attempts.append(Attempt(
            self.ids.random("atmpt_"), datetime.now(UTC), status, outcome.status or 0,
            (outcome.body or outcome.error or "")[:RESPONSE_BODY_LIMIT], elapsed, trigger,
            webhook["url"], headers,
        ))
        if outcome.ok:
            self.counters.succeeded += 1
            delivery.status = "success"
            delivery.next_attempt_at = None
            delivery.settled.set()
        else:
            self.counters.failed += 1
        return outcome.ok

    def by_status(self) -> dict[str, int]:
        counts = {"pending": 0, "sending": 0, "success": 0, "failed": 0}
        for deliveries in self.log.values():
            for delivery in deliveries.values():
                counts[delivery.status] += 1
        return counts

    async def close(self) -> None:
        await self.http.close()
