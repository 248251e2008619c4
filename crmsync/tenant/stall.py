"""Stall detection per tenant: pending work that makes no progress is reported.

`StallDetector.check()` (the daemon's monitor calls it every `STALL_CHECK_SECONDS`)
flags a stage whose work is pending but made no progress for `STALL_SECONDS`: `sync`
(records in flight or a fetch outstanding, from `Progress`) and `inbox` (pending
webhook events while the tenant is live, whose oldest stayed the same). A stall sets
`crmsync_stalled{tenant,stage}` to 1, adds a readiness reason and logs once; it clears
itself when progress resumes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from prometheus_client import Gauge

from crmsync import log_context
from crmsync.store import Store
from crmsync.tenant.progress import Progress
from crmsync.web.health import Health

log = logging.getLogger(__name__)

#: pending work with no progress for this long is a stall
STALL_SECONDS = 300.0
#: how often the daemon checks
STALL_CHECK_SECONDS = 10.0

stalled = Gauge(
    "crmsync_stalled",
    f"1 while a stage has work pending but made no progress for {STALL_SECONDS:g}s",
    ["tenant", "stage"],
)


class StallDetector:
    """Checks one tenant's stages; `close()` removes its gauge series and reasons."""

    STAGES = ("sync", "inbox")

    def __init__(
        self,
        tenant: str,
        *,
        progress: Progress,
        store: Store,
        health: Health,
        inbox_active: Callable[[], bool],
        after: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self._progress = progress
        self._store = store
        self._health = health
        self._inbox_active = inbox_active
        self._after = after
        self._clock = clock
        self._inbox_head: int | None = None
        self._inbox_since = clock()
        self.stalled: set[str] = set()

    async def check(self) -> None:
        now = self._clock()
        progress = self._progress
        idle = now - progress.last_progress
        self._report("sync", progress.busy and idle > self._after,
                     f"sync pass made no progress for {idle:.0f}s "
                     f"({progress.in_flight} records in flight)")
        pending = await self._store.inbox.next_pending(self.tenant, 1)
        head = pending[0].id if pending else None
        if head != self._inbox_head:
            self._inbox_head, self._inbox_since = head, now
        waited = now - self._inbox_since
        self._report("inbox", head is not None and self._inbox_active() and waited > self._after,
                     f"webhook inbox made no progress for {waited:.0f}s")

    def _report(self, stage: str, is_stalled: bool, detail: str) -> None:
        with log_context.tenant(self.tenant):  # checked from the daemon's monitor
            self._report_in_context(stage, is_stalled, detail)

    def _report_in_context(self, stage: str, is_stalled: bool, detail: str) -> None:
        stalled.labels(self.tenant, stage).set(1 if is_stalled else 0)
        key = f"{self.tenant}/{stage}"
        if is_stalled:
            self._health.set_reason(key, f"stalled: {detail}")
            if stage not in self.stalled:
                self.stalled.add(stage)
                log.warning("%s stalled: %s", stage, detail)
        else:
            self._health.set_reason(key, None)
            if stage in self.stalled:
                self.stalled.discard(stage)
                log.info("%s progressing again", stage)

    def close(self) -> None:
        for stage in self.STAGES:
            self._health.forget(f"{self.tenant}/{stage}")
            with contextlib.suppress(KeyError):
                stalled.remove(self.tenant, stage)
        self.stalled.clear()
