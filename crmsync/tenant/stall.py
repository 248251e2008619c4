"""Progress tracking per tenant: stall detection, and the quiet point a drain waits for.

`Progress` watches a tenant's sync passes from the outside, through the two doors every
record passes: the adapter's `fetch_page` (records handed to the pipeline) and the
pipeline's `on_settled` callback (a record written, mapped or dead-lettered). The
difference is the work in flight; every fetch and every settle is progress.

- Drain (shutdown, or a tenant stopped by a reload): `drain()` holds every *new* page
  fetch; pages already fetched run to their committed checkpoint, and `wait_quiet()`
  returns once nothing is in flight. At worst the last page is redone after a restart
  (its records are then unchanged: no Quo request).
- Stall: `StallDetector.check()` flags a stage whose work is pending but made no
  progress for `STALL_SECONDS`: `sync` (records in flight or a fetch outstanding) and
  `inbox` (pending webhook events while the tenant is live, whose oldest stayed the
  same). A stall sets `crmsync_stalled{tenant,stage}` to 1, adds a readiness reason and
  logs once; it clears itself when progress resumes.

If a pass crashes and its supervisor restarts it, the in-flight records are lost; a
fetch that does not continue where the last page ended marks that restart and resets
the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import Gauge

from crmsync.adapters.base import CrmAdapter, CrmPage
from crmsync.store import Store
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


class Progress:
    """Records fetched vs settled in the tenant's current pass; the drain gate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.fetching = 0
        self.in_flight = 0
        self.last_progress = clock()
        # (object, next cursor) of the last page handed out: where a pass continues.
        self._last_page: tuple[str, str | None] | None = None
        self._draining = False
        self._held = asyncio.Event()  # never set: held fetches wait here until cancelled
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._observers: list[Callable[[str], None]] = []

    def observe(self, on_settled: Callable[[str], None]) -> None:
        """Also call `on_settled(action)` for every settled record (progress displays)."""
        self._observers.append(on_settled)

    @property
    def busy(self) -> bool:
        return self.fetching > 0 or self.in_flight > 0

    def _changed(self) -> None:
        self.last_progress = self._clock()
        if self.busy:
            self._quiet.clear()
        else:
            self._quiet.set()

    def new_pass(self) -> None:
        """A pass starts from the top: nothing of an earlier one is in flight."""
        self.in_flight = 0
        self._last_page = None
        self._changed()

    def settled(self, action: str) -> None:
        """The pipeline's `on_settled`: one record reached its end."""
        self.in_flight = max(0, self.in_flight - 1)
        self._changed()
        for observer in self._observers:
            observer(action)

    def _continues(self, crm_object: str, cursor: str | None) -> bool:
        if self._last_page is None:
            return True
        last_object, next_cursor = self._last_page
        if next_cursor is None:  # that object is done; the next one starts
            return crm_object != last_object
        return (crm_object, cursor) == (last_object, next_cursor)

    async def fetch_page(
        self, adapter: CrmAdapter, crm_object: str, cursor: str | None, page_size: int
    ) -> CrmPage:
        if self._draining:
            await self._held.wait()
        if not self._continues(crm_object, cursor):
            self.in_flight = 0  # the pass was restarted from its checkpoint
        self.fetching += 1
        self._changed()
        try:
            page = await adapter.fetch_page(crm_object, cursor, page_size)
            self.in_flight += len(page.records)
            self._last_page = (crm_object, page.next_cursor)
        finally:
            self.fetching -= 1
            self._changed()
        return page

    def watch(self, adapter: CrmAdapter) -> CrmAdapter:
        """`adapter` with its `fetch_page` counted (and held while draining)."""
        return cast(CrmAdapter, _WatchedAdapter(adapter, self))

    def drain(self) -> None:
        """Fetch no new page; what was fetched goes on to its checkpoint."""
        self._draining = True

    async def wait_quiet(self) -> None:
        """Until no fetch is outstanding and every fetched record settled."""
        await self._quiet.wait()


class _WatchedAdapter:
    """Delegates everything to the adapter; `fetch_page` goes through `Progress`."""

    def __init__(self, adapter: CrmAdapter, progress: Progress) -> None:
        self._adapter = adapter
        self._progress = progress

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        return await self._progress.fetch_page(self._adapter, crm_object, cursor, page_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


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
        stalled.labels(self.tenant, stage).set(1 if is_stalled else 0)
        key = f"{self.tenant}/{stage}"
        if is_stalled:
            self._health.set_reason(key, f"stalled: {detail}")
            if stage not in self.stalled:
                self.stalled.add(stage)
                log.warning("%s stalled: %s", stage, detail, extra={"tenant": self.tenant})
        else:
            self._health.set_reason(key, None)
            if stage in self.stalled:
                self.stalled.discard(stage)
                log.info("%s progressing again", stage, extra={"tenant": self.tenant})

    def close(self) -> None:
        for stage in self.STAGES:
            self._health.forget(f"{self.tenant}/{stage}")
            with contextlib.suppress(KeyError):
                stalled.remove(self.tenant, stage)
        self.stalled.clear()
