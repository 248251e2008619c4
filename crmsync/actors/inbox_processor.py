"""Inbox processor: applies the tenant's stored webhook events, each exactly once.

The HTTP listener only stores events; this actor claims each pending one that is due
(a conditional UPDATE, so two processes never both take it), applies it, and marks it
processed. Effects are idempotent (CRM changes re-fetch the record, notes are keyed
per call and person), so an event applied again after a crash changes nothing.

A failure (the CRM or Quo is down) leaves the event pending with a next-attempt time
on its row, after a capped exponential backoff (`RETRY`: up to 15 minutes apart),
until its retry window (`daemon.inbox_retry_hours`, counted from when it was queued) is
over; the last attempt is made at the end of the window, and if that fails too the
event is marked failed and dead-lettered (`webhook_failed`) in one transaction, for
`crmsync retry` to re-queue. Events backing off never hold up newer ones: the store
returns only due events. When nothing is due the actor sleeps until the earliest
next attempt or a new event (`wake`), and at most `idle_poll_seconds`: a safety net
(the wall clock may jump; another writer may have re-queued events).

Retention: once an hour (and at start) it deletes processed and ignored events older
than `daemon.inbox_retention_days`, and blanks the bodies kept by old resolved webhook
dead letters, in small batches so the store's writer lock is never held for long.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from multidict import CIMultiDict

from crmsync import metrics
from crmsync.actors.base import Actor
from crmsync.adapters.base import CrmAdapter, WebhookFormatError
from crmsync.net.retry import RetryPolicy
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store
from crmsync.store.dead_letters import WEBHOOK_FAILED
from crmsync.store.inbox import PRUNE_BATCH, InboxEvent

log = logging.getLogger(__name__)

BATCH = 50
HOUR: Final = 3600.0
DAY: Final = 86400.0
#: the defaults of `daemon.inbox_retry_hours` and `daemon.inbox_retention_days`
DEFAULT_RETRY_WINDOW: Final = 24 * HOUR
DEFAULT_RETENTION: Final = 30 * DAY
#: backoff between attempts of one event: full jitter, doubling from 2 s to 15 minutes,
#: so a short outage is over-waited by seconds and a long one costs ~8 attempts an hour
RETRY: Final = RetryPolicy(base_delay=1.0, max_delay=15 * 60.0)


class QuoEventHandler(Protocol):
    async def handle(self, event_type: str, body: bytes) -> str: ...


class Prune(Protocol):
    """`Inbox.prune` and `DeadLetters.prune_payloads`: one batch, rows touched."""

    async def __call__(self, tenant_id: str, before: float, limit: int) -> int: ...


def next_attempt(
    policy: RetryPolicy, attempts: int, *, now: float, queued_at: float, window: float
) -> float | None:
    """When to try an event again after its `attempts`-th failure at `now`, or None
    when its retry window (`window` seconds from `queued_at`) is over.

    A backoff that would end past the window is cut to the window's end, so the last
    attempt is made right when the window closes rather than never.
    """
    deadline = queued_at + window
    if now >= deadline:
        return None
    return min(now + policy.backoff(attempts), deadline)


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
        retry_window: float = DEFAULT_RETRY_WINDOW,
        retention: float = DEFAULT_RETENTION,
        idle_poll_seconds: float = 5.0,
        prune_every: float = HOUR,
        retry: RetryPolicy = RETRY,
    ) -> None:
        super().__init__(tenant, None)
        self._store = store
        self._adapter = adapter
        self._crm_changes = crm_changes
        self._quo_events = quo_events
        self._wake = wake
        self._retry_window = retry_window
        self._retention = retention
        self._idle_poll_seconds = idle_poll_seconds
        self._prune_every = prune_every
        self._retry = retry
        self._next_prune = 0.0  # loop time: the first pass prunes

    async def setup(self) -> None:
        requeued = await self._store.inbox.requeue_interrupted(self.tenant)
        if requeued:
            log.info("requeued %d events interrupted by a stop", requeued)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before looking at the inbox: an event stored from here on sets it
            # again, so the wait below cannot miss it.
            self._wake.clear()
            if loop.time() >= self._next_prune:
                await self.prune_expired()
                self._next_prune = loop.time() + self._prune_every
            if await self.process_available() > 0:
                continue
            try:
                async with asyncio.timeout(await self._idle_delay(loop)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _idle_delay(self, loop: asyncio.AbstractEventLoop) -> float:
        """How long nothing is due: until the earliest next attempt or the next prune,
        at most `idle_poll_seconds`."""
        delay = min(self._idle_poll_seconds, self._next_prune - loop.time())
        due = await self._store.inbox.next_attempt_time(self.tenant)
        if due is not None:
            delay = min(delay, due - self._store.now())
        return max(0.0, delay)

    async def process_available(self) -> int:
        """Try every pending event that is due (one batch); returns how many were tried."""
        done = 0
        due = await self._store.inbox.next_pending(self.tenant, BATCH)
        # Lag: how long the oldest due, unapplied change has been waiting.
        metrics.sync_lag.labels(self.tenant).set(
            max(0.0, self._store.now() - due[0].received_at) if due else 0.0
        )
        for event in due:
            if not await self._store.inbox.claim(self.tenant, event.id):
                continue  # another process took it
            await self._apply(event)
            done += 1
        return done

    async def prune_expired(self) -> int:
        """Retention: delete settled events older than `retention` and blank old resolved
        webhook dead letters' bodies, one short batch per statement. Returns the rows
        deleted."""
        before = self._store.now() - self._retention
        deleted = await self._in_batches(self._store.inbox.prune, before)
        await self._in_batches(self._store.dead_letters.prune_payloads, before)
        if deleted:
            log.info("retention: deleted %d webhook events older than %.0f days",
                     deleted, self._retention / DAY)
        return deleted

    async def _in_batches(self, prune: Prune, before: float) -> int:
        """Call `prune` until a batch comes back short; returns the rows it touched."""
        total = 0
        while True:
            batch = await prune(self.tenant, before, PRUNE_BATCH)
            total += batch
            if batch < PRUNE_BATCH:
                return total
            await asyncio.sleep(0)  # a turn for webhooks and other tenants' writes

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
        retry_at = next_attempt(self._retry, attempts, now=self._store.now(),
                                queued_at=event.queued_at, window=self._retry_window)
        if retry_at is None:
            # One transaction: a failed row always has its dead letter, which is what
            # `crmsync retry` re-queues it by.
            async with self._store.transaction():
                await self._store.inbox.mark_failed(self.tenant, event.id, error)
                await self._store.dead_letters.add(
                    self.tenant, "webhook", event.event_id, WEBHOOK_FAILED,
                    event.body.decode(errors="replace"), error,
                )
            metrics.webhook_events.labels(self.tenant, event.source, "failed").inc()
            log.error("event %s failed %d times in %.1f h, dead-lettered: %s", event.event_id,
                      attempts, self._retry_window / HOUR, error)
            return
        await self._store.inbox.retry_later(self.tenant, event.id, error,
                                            next_attempt_at=retry_at)
        metrics.webhook_events.labels(self.tenant, event.source, "retry").inc()
        log.warning("event %s failed (attempt %d), will retry in %.0f s: %s", event.event_id,
                    attempts, retry_at - self._store.now(), error)
