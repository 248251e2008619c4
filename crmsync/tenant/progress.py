"""`Progress`: what one tenant's sync passes have in flight, and the drain gate.

It watches a tenant's passes from the outside, through the two doors every record
passes: the adapter's `fetch_page` (records handed to the pipeline) and the pipeline's
`on_settled` callback (a record written, mapped or dead-lettered). The difference is the
work in flight; every fetch and every settle is progress (stall detection reads it).

Drain (shutdown, or a tenant stopped by a reload): `drain()` holds every *new* page
fetch; pages already fetched run to their committed checkpoint, and `wait_quiet()`
returns once nothing is in flight. At worst the last page is redone after a restart
(its records are then unchanged: no Quo request). A foreground `crmsync sync` stopped
by Ctrl-C waits with `wait_settled()`, which does not wait for a fetch in progress.

If a pass crashes and its supervisor restarts it, the in-flight records are lost; a
fetch that does not continue where the last page ended marks that restart and resets
the count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from crmsync.adapters.base import CrmAdapter, CrmPage


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
        self._settled = asyncio.Event()  # every fetched record settled
        self._settled.set()
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
        if self.in_flight:
            self._settled.clear()
        else:
            self._settled.set()

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

    async def wait_settled(self) -> None:
        """Until every fetched record settled; a fetch still outstanding is not waited
        for (a foreground stop: what it would bring is fetched again next time, and a
        CRM that does not answer must not hold up Ctrl-C)."""
        await self._settled.wait()


class _WatchedAdapter:
    """Delegates everything to the adapter; `fetch_page` goes through `Progress`."""

    def __init__(self, adapter: CrmAdapter, progress: Progress) -> None:
        self._adapter = adapter
        self._progress = progress

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        return await self._progress.fetch_page(self._adapter, crm_object, cursor, page_size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)
