"""Inbox processor: applies the tenant's stored webhook events, each exactly once.

The HTTP listener only stores events; this actor claims each pending one (a
conditional UPDATE, so two processes never both take it), applies it, and marks it
processed. Effects are idempotent (CRM changes re-fetch the record, notes are keyed
per call and person), so an event applied again after a crash changes nothing.
A failure leaves the event pending for a retry with backoff; after `max_attempts`
it is marked failed and dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from multidict import CIMultiDict

from crmsync import metrics
from crmsync.actors.base import Actor
from crmsync.adapters.base import CrmAdapter, WebhookFormatError
from crmsync.net.retry import RetryPolicy
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store
from crmsync.store.inbox import InboxEvent

log = logging.getLogger(__name__)

BATCH = 50


class QuoEventHandler(Protocol):
    async def handle(self, event_type: str, body: bytes) -> str: ...


class InboxProcessor(Actor[None]):
    name = "inbox_processor"

    def __init__(
        self,
        tenant: str,
        *,
        store: Store,
        adapter: CrmAdapter,
        crm_changes: CrmChangeHandler,
        quo_events: QuoEventHandler | None,
        wake: asyncio.Event,
        max_attempts: int = 8,
        idle_poll_seconds: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(tenant, None)
        self._store = store
        self._adapter = adapter
        self._crm_changes = crm_changes
        self._quo_events = quo_events
        self._wake = wake
        self._max_attempts = max_attempts
        self._idle_poll_seconds = idle_poll_seconds
        self._retry = retry or RetryPolicy(base_delay=1.0, max_delay=300.0)
        self._not_before: dict[int, float] = {}

    async def setup(self) -> None:
        requeued = await self._store.inbox.requeue_interrupted(self.tenant)
        if requeued:
            log.info("requeued %d events interrupted by a stop", requeued)

    async def run(self) -> None:
        while True:
            if await self.process_available() == 0:
                self._wake.clear()
                # Woken by the listener; the timeout picks up retries and replays.
                try:
                    async with asyncio.timeout(self._idle_poll_seconds):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def process_available(self) -> int:
        """Apply every pending event that is due; returns how many were applied."""
        done = 0
        now = time.monotonic()
        pending = await self._store.inbox.next_pending(self.tenant, BATCH)
        # Lag: how long the oldest unapplied change has been waiting.
        metrics.sync_lag.labels(self.tenant).set(
            max(0.0, time.time() - pending[0].received_at) if pending else 0.0
        )
        for event in pending:
            if self._not_before.get(event.id, 0.0) > now:
                continue
            if not await self._store.inbox.claim(self.tenant, event.id):
                continue  # another process took it
            await self._apply(event)
            done += 1
        return done

    async def _apply(self, event: InboxEvent) -> None:
        try:
            outcome = await self._dispatch(event)
        except WebhookFormatError as exc:
            await self._store.inbox.mark_ignored(self.tenant, event.id, str(exc))
            metrics.webhook_events.labels(self.tenant, event.source, "ignored").inc()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the CRM or Quo may be down: retry later
            await self._failed(event, f"{type(exc).__name__}: {exc}")
            return
        self._not_before.pop(event.id, None)
        await self._store.inbox.mark_processed(self.tenant, event.id)
        metrics.webhook_events.labels(self.tenant, event.source, "processed").inc()
        log.debug("event %s (%s) applied: %s", event.event_id, event.event_type, outcome)

    async def _dispatch(self, event: InboxEvent) -> str:
        if event.source == "crm":
            # Stored headers keep the sender's casing; HTTP names are case-insensitive.
            headers = CIMultiDict(event.headers)
            parsed = self._adapter.parse_webhook(headers, event.body)
            return ",".join(await self._crm_changes.handle(parsed)) or "no changes"
        if self._quo_events is None:
            return "ignored"
        return await self._quo_events.handle(event.event_type, event.body)

    async def _failed(self, event: InboxEvent, error: str) -> None:
        attempts = event.attempts + 1  # claim() counted this attempt
        if attempts >= self._max_attempts:
            await self._store.inbox.mark_failed(self.tenant, event.id, error)
            await self._store.dead_letters.add(
                self.tenant, "webhook", event.event_id, "webhook_failed",
                event.body.decode(errors="replace"), error,
            )
            metrics.webhook_events.labels(self.tenant, event.source, "failed").inc()
            log.error("event %s failed %d times, dead-lettered: %s", event.event_id,
                      attempts, error)
            return
        await self._store.inbox.retry_later(self.tenant, event.id, error)
        self._not_before[event.id] = time.monotonic() + self._retry.backoff(attempts)
        metrics.webhook_events.labels(self.tenant, event.source, "retry").inc()
        log.warning("event %s failed (attempt %d), will retry: %s", event.event_id,
                    attempts, error)
