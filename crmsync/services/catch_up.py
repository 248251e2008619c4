"""Catching up on Quo deliveries the daemon missed (2026-03-30 webhooks).

Quo retries a delivery 8 times over about 27.6 h and then marks it `failed` for good
(research §2.7); a daemon that was down longer, or whose listener failed meanwhile,
would lose those events. Quo keeps a delivery log with a manual retry, so at start and
at every subscription check `DeliveryCatchUp.run()` lists the webhook's deliveries with
status `failed` or `sending` (still retrying, maybe hours from its next attempt) since
the newest event the inbox holds, and asks Quo to retry each one now. The retries come
in through the listener like any delivery; whatever had arrived after all is a
duplicate there (`webhook-id`, event id, business key), so asking too much costs a
request and nothing else.

The window: the first run starts at the newest Quo event the inbox received *before
this process started* (events arriving while it starts must not hide the gap before
them), later runs where the previous run began; each minus `MARGIN`, which covers clock
skew between Quo and us and deliveries whose early retries (5 s, 5 min) were in
flight. Without any stored event, the whole log is scanned. A run that fails (Quo
unreachable) keeps its window for the next one, and a run that asked for retries keeps
the window open back to the oldest of them, so the next check sees whether they
arrived and asks again if not, up to `MAX_ASKS` times per delivery: one that keeps
failing is not retried every five minutes forever. Retried deliveries are counted in
`crmsync_quo_deliveries_caught_up_total{tenant}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from crmsync import metrics
from crmsync.instants import parse_instant
from crmsync.net.errors import ApiError, AuthError, NotFoundError
from crmsync.quo.webhooks import QuoWebhooksClient
from crmsync.store import Store

log = logging.getLogger(__name__)

#: deliveries dispatched this long before the window still count (clock skew; early
#: retries still in flight)
MARGIN: Final = 600.0
#: the statuses of a delivery that has not (yet) reached the listener
MISSED: Final = ("failed", "sending")
#: how often one delivery is asked for (per process)
MAX_ASKS: Final = 3
#: the most delivery ids remembered as asked for (a bound, not a limit in practice)
MAX_REMEMBERED: Final = 10_000


def rfc3339(epoch: float) -> str:
    """`2026-11-23T10:00:00.000Z`, the form Quo's filters take."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class DeliveryCatchUp:
    """Asks Quo to retry one tenant's missed deliveries (see the module docstring)."""

    def __init__(
        self,
        tenant: str,
        *,
        hooks: QuoWebhooksClient,
        store: Store,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant = tenant
        self._hooks = hooks
        self._store = store
        self._margin = margin
        self._clock = clock
        self._booted = clock()
        self._since: float | None = None  # after a successful run: where the next starts
        self._asks: dict[str, int] = {}  # delivery id -> times asked, oldest first
        metrics.quo_deliveries_caught_up.labels(tenant)  # 0 from the start

    async def window_start(self) -> float | None:
        """Deliveries dispatched after this (epoch seconds) are looked at; None: all."""
        if self._since is not None:
            return self._since
        newest = await self._store.inbox.newest_received_at(
            self.tenant, "quo", before=self._booted
        )
        return None if newest is None else newest - self._margin

    async def run(self, webhook_id: str | None) -> int:
        """Ask Quo to retry the missed deliveries of `webhook_id` (None: no 2026-03-30
        webhook is active, nothing to do); returns how many were asked for. Quo's
        failures are logged, not raised (rejected credentials are raised)."""
        if webhook_id is None:
            return 0
        started = self._clock()
        since = await self.window_start()
        asked = 0
        # where the next run starts: now, or back at a delivery that may need asking again
        next_since = started - self._margin
        try:
            for status in MISSED:
                count, oldest = await self._retry_all(webhook_id, status, since)
                asked += count
                if oldest is not None:
                    next_since = min(next_since, oldest - 1.0)
        except AuthError:
            raise
        except ApiError as exc:
            log.warning("Quo delivery catch-up stopped after %d retries: %s (the next"
                        " subscription check tries again)", asked, exc)
            return asked
        finally:
            if asked:
                metrics.quo_deliveries_caught_up.labels(self.tenant).inc(asked)
        self._since = next_since
        if asked:
            log.info("Quo delivery catch-up: asked Quo to retry %d missed deliveries"
                     " (since %s)", asked, "the start" if since is None else rfc3339(since))
        return asked

    async def _retry_all(
        self, webhook_id: str, status: str, since: float | None
    ) -> tuple[int, float | None]:
        """Retry the deliveries in `status` since `since`; returns how many, and when the
        oldest of them that may be asked for again was dispatched."""
        asked = 0
        oldest: float | None = None
        after = None if since is None else rfc3339(since)
        # The listing first, then the retries: a retried delivery changes status, and the
        # listing's cursor must not shift under it.
        missed = [d async for page in self._hooks.deliveries(
            webhook_id, status=status, created_after=after) for d in page]
        for delivery in missed:
            times = self._asks.get(delivery.id, 0)
            if times >= MAX_ASKS:
                continue
            try:
                await self._hooks.retry_delivery(webhook_id, delivery.id)
            except NotFoundError:
                continue  # gone from the log meanwhile
            self._remember(delivery.id, times + 1)
            asked += 1
            created = parse_time(delivery.created_at)
            if times + 1 < MAX_ASKS and created is not None:
                oldest = created if oldest is None else min(oldest, created)
        return asked, oldest

    def _remember(self, delivery_id: str, times: int) -> None:
        self._asks.pop(delivery_id, None)
        self._asks[delivery_id] = times
        if len(self._asks) > MAX_REMEMBERED:
            del self._asks[next(iter(self._asks))]


def parse_time(value: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time from Quo, None if absent or unreadable."""
    moment = parse_instant(value)
    return None if moment is None else moment.timestamp()
