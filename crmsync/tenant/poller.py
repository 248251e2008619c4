"""Poller: the fallback that catches what webhooks missed, every `poll_interval`.

A CRM that can list the records changed since a time (Pipedrive, HubSpot: the adapter's
`changed_since_cursor`) is polled from a watermark: the start of the last successful
pass, less the adapter's `changes_lag`, stored per CRM object as checkpoint
`watermark` (shown by `crmsync status`). Such a pass lists only what changed, so a
poll costs a few CRM requests however big the CRM is.

A CRM that cannot (Attio has no record-level `updated_at`) is re-scanned in full at
every poll; the content hash skips unchanged records (no Quo request). Watermark CRMs
get a full scan too: at the first poll after start and then every
`FULL_SCAN_SECONDS`, because only a full scan notices a deletion whose webhook was
lost. A record missing from a full scan is deleted only after two consecutive complete
scans miss it and a direct fetch returns 404.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Final, Protocol

from crmsync.actors.base import Actor
from crmsync.adapters.base import CrmAdapter
from crmsync.instants import parse_instant
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store
from crmsync.tenant.pipeline import SyncResult

log = logging.getLogger(__name__)

#: the checkpoint holding, per CRM object, when the last successful pass started
WATERMARK: Final = "watermark"
#: how often a CRM polled from a watermark is still scanned in full (for deletions)
FULL_SCAN_SECONDS: Final = 86400.0


class RunPass(Protocol):
    """A sync pass: `full` forgets saved cursors; `start_cursors` (per CRM object) is
    where an object's listing starts when no cursor of an unfinished pass is saved."""

    def __call__(
        self, *, full: bool = True, start_cursors: Mapping[str, str] | None = None
    ) -> Awaitable[SyncResult]: ...


def format_watermark(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


async def changed_since_cursors(
    store: Store, tenant: str, adapter: CrmAdapter, crm_objects: list[str]
) -> dict[str, str] | None:
    """The start cursors of an incremental pass from the stored watermarks, or None
    when some object has no watermark yet or its CRM cannot list changes."""
    cursors: dict[str, str] = {}
    for crm_object in crm_objects:
        stored = await store.checkpoints.get(tenant, crm_object, WATERMARK)
        instant = parse_instant(stored) if stored else None
        if instant is None:
            return None
        since = instant.timestamp() - adapter.changes_lag
        cursor = adapter.changed_since_cursor(crm_object, since)
        if cursor is None:
            return None
        cursors[crm_object] = cursor
    return cursors


async def advance_watermarks(
    store: Store, tenant: str, crm_objects: list[str], started: float
) -> None:
    """After a successful pass that started at `started`: every change before it was
    listed, so the next incremental pass may start there (less the adapter's lag)."""
    async with store.transaction():
        for crm_object in crm_objects:
            await store.checkpoints.set(tenant, crm_object, WATERMARK,
                                        format_watermark(started))


class Poller(Actor[None]):
    name = "poller"

    def __init__(
        self,
        tenant: str,
        *,
        store: Store,
        run_pass: RunPass,
        crm_changes: CrmChangeHandler,
        crm_objects: list[str],
        interval: float,
        adapter: CrmAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Without `adapter` (or with one that cannot list changes) every poll is a
        full scan."""
        super().__init__(tenant, None)
        self._store = store
        self._run_pass = run_pass
        self._crm_changes = crm_changes
        self._crm_objects = crm_objects
        self._interval = interval
        self._adapter = adapter
        self._clock = clock
        self._last_full_scan: float | None = None  # clock time; None: none since start

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # cancelled at once on stop
            await self.poll_once()

    async def _incremental_cursors(self) -> dict[str, str] | None:
        if self._adapter is None or self._last_full_scan is None \
                or self._clock() - self._last_full_scan >= FULL_SCAN_SECONDS:
            return None
        return await changed_since_cursors(self._store, self.tenant, self._adapter,
                                           self._crm_objects)

    async def poll_once(self) -> SyncResult:
        started = time.time()
        scan_started = self._clock()
        cursors = await self._incremental_cursors()
        if cursors is not None:
            result = await self._run_pass(full=False, start_cursors=cursors)
        else:
            result = await self._run_pass(full=True)
            self._last_full_scan = scan_started
            # The pass reached the end of every object: what it did not see was missed.
            for crm_object in self._crm_objects:
                for mapping in await self._store.mappings.record_scan(
                    self.tenant, crm_object, started
                ):
                    outcome = await self._crm_changes.apply_deleted(
                        crm_object, mapping.crm_record_id)
                    log.info("record %s missed two complete scans: %s",
                             mapping.crm_record_id, outcome)
        if result.ok and self._adapter is not None:
            await advance_watermarks(self._store, self.tenant, self._crm_objects, started)
        return result
