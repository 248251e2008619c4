"""Webhook delivery as Pipedrive does it: v2 bodies, HTTP Basic auth, retries.

Lifecycle (the shared `_kit.delivery.QueuedDeliverer`): `submit()` starts a tracked
background task (or queues the message when auto-delivery is off) → each message is
POSTed until a 2xx, pausing `retry_delays[i]` before retry i+1; every attempt carries
the same `meta.id` and `meta.attempt` counts up → `close()` stops retry pauses, gives
in-flight POSTs a short grace, cancels the rest and closes the one `ClientSession`.
There is no signature: a receiver authenticates the `Authorization: Basic` header of
the webhook's `http_auth_user` / `http_auth_password`.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from crmsync.sim._kit.delivery import QueuedDeliverer, is_success


def basic_auth(user: str, password: str) -> str:
    """The `Authorization` header value of HTTP Basic credentials."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one webhook; `body["meta"]["attempt"]` is set per attempt."""

    webhook_id: int
    url: str
    authorization: str | None
    event_id: str
    action: str
    entity_id: str
    body: dict[str, Any]

    def encoded(self, attempt: int) -> bytes:
        body = copy.copy(self.body)
        body["meta"] = {**self.body["meta"], "attempt": attempt}
        return msgspec.json.encode(body)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """What happened to one POST (status None: connection error or timeout)."""

    webhook_id: int
    event_id: str
    action: str
    entity_id: str
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return is_success(self.status)


class PipedriveHooks(QueuedDeliverer[Delivery, DeliveryAttempt]):
    """Sends deliveries and records every attempt; owns its tasks and HTTP session."""

    def __init__(
        self,
        *,
        auto: bool,
        retry_delays: tuple[float, ...],
        timeout: float,
        on_attempt: Callable[[DeliveryAttempt], None] | None = None,
    ) -> None:
        super().__init__(auto=auto, timeout=timeout)
        self.retry_delays = retry_delays
        self._on_attempt = on_attempt

    async def drain(self) -> None:
        """Send everything queued and wait until every delivery (with retries) is done."""
        await self.send_pending()

    def acknowledged(self) -> list[DeliveryAttempt]:
        return [a for a in self.attempts if a.ok]

    def _task_name(self, delivery: Delivery) -> str:
        return f"pipedrive-sim-webhook-{delivery.webhook_id}-{delivery.event_id}"

    async def _deliver(self, delivery: Delivery) -> None:
        self.sent.append(delivery)
        for attempt in range(1, len(self.retry_delays) + 2):
            if await self._attempt(delivery, attempt):
                return
            if attempt > len(self.retry_delays) or self._http.closing:
                return
            await self._http.pause(self.retry_delays[attempt - 1])

    async def _attempt(self, delivery: Delivery, attempt: int) -> bool:
        headers = {"Content-Type": "application/json", "User-Agent": "Pipedrive Webhooks"}
        if delivery.authorization is not None:
            headers["Authorization"] = delivery.authorization
        outcome = await self._http.post(delivery.url, delivery.encoded(attempt), headers)
        result = DeliveryAttempt(
            delivery.webhook_id, delivery.event_id, delivery.action, delivery.entity_id,
            attempt, outcome.status, outcome.error,
        )
        self.attempts.append(result)
        if self._on_attempt is not None:
            self._on_attempt(result)
        return result.ok
