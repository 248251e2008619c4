"""Poller: the fallback that catches what webhooks missed, every `poll_interval`.

Attio has no record-level `updated_at`, so each poll is a full re-scan in which the
content hash skips unchanged records (no Quo request). A record missing from a scan
is deleted only after two consecutive complete scans miss it and a direct fetch
returns 404. (CRMs that can filter by update time will page from a watermark here.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from crmsync.actors.base import Actor
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store
from crmsync.tenant.pipeline import SyncResult

log = logging.getLogger(__name__)


class Poller(Actor[None]):
    name = "poller"

    def __init__(
        self,
        tenant: str,
        *,
        store: Store,
        run_pass: Callable[[], Awaitable[SyncResult]],
        crm_changes: CrmChangeHandler,
        crm_objects: list[str],
        interval: float,
    ) -> None:
        super().__init__(tenant, None)
        self._store = store
        self._run_pass = run_pass
        self._crm_changes = crm_changes
        self._crm_objects = crm_objects
        self._interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # cancelled at once on stop
            await self.poll_once()

    async def poll_once(self) -> SyncResult:
        started = time.time()
        result = await self._run_pass()
        # The pass reached the end of every object: what it did not see was missed.
        for crm_object in self._crm_objects:
            for mapping in await self._store.mappings.record_scan(
                self.tenant, crm_object, started
            ):
                outcome = await self._crm_changes.apply_deleted(crm_object, mapping.crm_record_id)
                log.info("record %s missed two complete scans: %s", mapping.crm_record_id,
                         outcome)
        return result
